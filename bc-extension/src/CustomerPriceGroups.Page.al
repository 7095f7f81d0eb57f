namespace D365Kit.Integration;

using Microsoft.Finance.GeneralLedger.Setup;
using Microsoft.Sales.Pricing;

/// <summary>
/// Customer price groups (table 6) for the CUSTPRCGRP-PRICE mapping, which API v2.0 does not expose.
/// currencyCode is computed: the table has no currency, and BC creates the group's Dataverse price list in
/// the local currency (LCY Code of General Ledger Setup), so that is the currency the mapping compares.
/// </summary>
page 50106 "d365kit Customer Price Groups"
{
    PageType = API;
    APIPublisher = 'd365kit';
    APIGroup = 'integration';
    APIVersion = 'v1.0';
    EntityName = 'customerPriceGroup';
    EntitySetName = 'customerPriceGroups';
    EntityCaption = 'Customer Price Group';
    EntitySetCaption = 'Customer Price Groups';
    SourceTable = "Customer Price Group";
    ODataKeyFields = SystemId;
    DelayedInsert = true;
    InsertAllowed = true;
    ModifyAllowed = true;
    DeleteAllowed = true;
    Extensible = false;

    layout
    {
        area(Content)
        {
            repeater(Records)
            {
                field(id; Rec.SystemId)
                {
                    Caption = 'Id';
                    Editable = false;
                }
                field("code"; Rec."Code")
                {
                    Caption = 'Code';
                }
                field(description; Rec.Description)
                {
                    Caption = 'Description';
                }
                field(currencyCode; LocalCurrencyCode)
                {
                    Caption = 'Currency Code';
                    Editable = false;
                }
                field(lastModifiedDateTime; Rec.SystemModifiedAt)
                {
                    Caption = 'Last Modified Date';
                    Editable = false;
                }
            }
        }
    }

    var
        LocalCurrencyCode: Code[10];

    trigger OnOpenPage()
    var
        GeneralLedgerSetup: Record "General Ledger Setup";
    begin
        if GeneralLedgerSetup.Get() then
            LocalCurrencyCode := GeneralLedgerSetup."LCY Code";
    end;
}
