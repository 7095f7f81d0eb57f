namespace D365Kit.Integration;

using Microsoft.Integration.Dataverse;

/// <summary>
/// Couplings (table 5331 "CRM Integration Record"): BC SystemId (integrationId) to Dataverse row id (crmId).
/// Insert and delete couple and uncouple; modify moves the last-sync timestamps and results or clears
/// skipped (what "Retry" does on the Coupled Data Synchronization Errors page).
/// </summary>
page 50100 "d365kit CRM Integr. Records"
{
    PageType = API;
    APIPublisher = 'd365kit';
    APIGroup = 'integration';
    APIVersion = 'v1.0';
    EntityName = 'crmIntegrationRecord';
    EntitySetName = 'crmIntegrationRecords';
    EntityCaption = 'CRM Integration Record';
    EntitySetCaption = 'CRM Integration Records';
    SourceTable = "CRM Integration Record";
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
                // crmId and integrationId come before the timestamps: validating them clears the
                // last-sync fields of their side (table 5331), and API fields are applied in page order.
                field(crmId; Rec."CRM ID")
                {
                    Caption = 'CRM ID';
                }
                field(integrationId; Rec."Integration ID")
                {
                    Caption = 'Integration ID';
                }
                // "Table ID" and Skipped are Editable = false in table 5331: written through variables.
                field(tableId; TableIdValue)
                {
                    Caption = 'Table ID';

                    trigger OnValidate()
                    begin
                        Rec.Validate("Table ID", TableIdValue);
                    end;
                }
                field(lastSynchModifiedOn; Rec."Last Synch. Modified On")
                {
                    Caption = 'Last Synch. Modified On';
                }
                field(lastSynchCrmModifiedOn; Rec."Last Synch. CRM Modified On")
                {
                    Caption = 'Last Synch. CRM Modified On';
                }
                field(lastSynchResult; Rec."Last Synch. Result")
                {
                    Caption = 'Last Synch. Result';
                }
                field(lastSynchCrmResult; Rec."Last Synch. CRM Result")
                {
                    Caption = 'Last Synch. CRM Result';
                }
                field(lastSynchJobId; Rec."Last Synch. Job ID")
                {
                    Caption = 'Last Synch. Job ID';
                }
                field(lastSynchCrmJobId; Rec."Last Synch. CRM Job ID")
                {
                    Caption = 'Last Synch. CRM Job ID';
                }
                field(skipped; SkippedValue)
                {
                    Caption = 'Skipped';

                    trigger OnValidate()
                    begin
                        Rec.Validate(Skipped, SkippedValue);
                    end;
                }
                field(statisticsUploaded; Rec."Statistics Uploaded")
                {
                    Caption = 'Statistics Uploaded';
                }
            }
        }
    }

    var
        TableIdValue: Integer;
        SkippedValue: Boolean;

    trigger OnAfterGetRecord()
    begin
        TableIdValue := Rec."Table ID";
        SkippedValue := Rec.Skipped;
    end;

    trigger OnNewRecord(BelowxRec: Boolean)
    begin
        Clear(TableIdValue);
        Clear(SkippedValue);
    end;

    trigger OnInsertRecord(BelowxRec: Boolean): Boolean
    begin
        // A coupling needs both ids and the BC table; duplicates of a pair are refused by the primary key.
        Rec.TestField("CRM ID");
        Rec.TestField("Integration ID");
        Rec.TestField("Table ID");
    end;
}
