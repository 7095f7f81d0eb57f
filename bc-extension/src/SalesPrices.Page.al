namespace D365Kit.Integration;

using Microsoft.Sales.Pricing;

// Table 7002 "Sales Price" is ObsoleteState = Pending (tag 16.0, replaced by Price List Line in the new
// pricing experience) on the BC versions this app targets; the SALESPRC-PRODPRICE mapping of the legacy
// pricing experience still reads it. Where it is Removed (the CLEAN25 builds, BC 26+), delete this page.
#pragma warning disable AL0432

/// <summary>
/// Sales prices (table 7002, legacy pricing) for the SALESPRC-PRODPRICE mapping, which API v2.0 does not
/// expose. The key fields are editable: changing one renames the price line.
/// </summary>
page 50107 "d365kit Sales Prices"
{
    PageType = API;
    APIPublisher = 'd365kit';
    APIGroup = 'integration';
    APIVersion = 'v1.0';
    EntityName = 'salesPrice';
    EntitySetName = 'salesPrices';
    EntityCaption = 'Sales Price';
    EntitySetCaption = 'Sales Prices';
    SourceTable = "Sales Price";
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
                field(itemNumber; Rec."Item No.")
                {
                    Caption = 'Item No.';
                }
                field(salesType; Rec."Sales Type")
                {
                    Caption = 'Sales Type';
                }
                field(salesCode; Rec."Sales Code")
                {
                    Caption = 'Sales Code';
                }
                field(currencyCode; Rec."Currency Code")
                {
                    Caption = 'Currency Code';
                }
                field(startingDate; Rec."Starting Date")
                {
                    Caption = 'Starting Date';
                }
                field(endingDate; Rec."Ending Date")
                {
                    Caption = 'Ending Date';
                }
                field(unitOfMeasureCode; Rec."Unit of Measure Code")
                {
                    Caption = 'Unit of Measure Code';
                }
                field(minimumQuantity; Rec."Minimum Quantity")
                {
                    Caption = 'Minimum Quantity';
                }
                field(unitPrice; Rec."Unit Price")
                {
                    Caption = 'Unit Price';
                }
                field(lastModifiedDateTime; Rec.SystemModifiedAt)
                {
                    Caption = 'Last Modified Date';
                    Editable = false;
                }
            }
        }
    }
}

#pragma warning restore AL0432
