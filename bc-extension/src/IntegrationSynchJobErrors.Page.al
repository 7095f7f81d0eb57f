namespace D365Kit.Integration;

using Microsoft.Integration.SyncEngine;

/// <summary>
/// Errors of the synchronization log (table 5339): read, and insert for d365kit's own failed operations.
/// Computed fields: sourceRecordId and destinationRecordId are the RecordIds as text (Format, e.g.
/// "Customer: 10000"; parsed back with Evaluate on insert) and exceptionDetail is the BLOB as text.
/// "No." is AutoIncrement, so no is read-only here.
/// </summary>
page 50104 "d365kit Int. Synch. Job Errors"
{
    PageType = API;
    APIPublisher = 'd365kit';
    APIGroup = 'integration';
    APIVersion = 'v1.0';
    EntityName = 'integrationSynchJobError';
    EntitySetName = 'integrationSynchJobErrors';
    EntityCaption = 'Integration Synch. Job Error';
    EntitySetCaption = 'Integration Synch. Job Errors';
    SourceTable = "Integration Synch. Job Errors";
    ODataKeyFields = SystemId;
    DelayedInsert = true;
    InsertAllowed = true;
    ModifyAllowed = false;
    DeleteAllowed = false;
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
                field(no; Rec."No.")
                {
                    Caption = 'No.';
                    Editable = false;
                }
                field(integrationSynchJobId; Rec."Integration Synch. Job ID")
                {
                    Caption = 'Integration Synch. Job ID';
                }
                field(sourceRecordId; SourceRecordIdText)
                {
                    Caption = 'Source Record ID';

                    trigger OnValidate()
                    begin
                        Rec."Source Record ID" := ToRecordId(SourceRecordIdText);
                    end;
                }
                field(destinationRecordId; DestinationRecordIdText)
                {
                    Caption = 'Destination Record ID';

                    trigger OnValidate()
                    begin
                        Rec."Destination Record ID" := ToRecordId(DestinationRecordIdText);
                    end;
                }
                field(message; Rec.Message)
                {
                    Caption = 'Message';
                }
                field(dateTime; Rec."Date/Time")
                {
                    Caption = 'Date/Time';
                }
                field(errorMessage; Rec."Error Message")
                {
                    Caption = 'Error Message';
                }
                field(exceptionDetail; ExceptionDetailText)
                {
                    Caption = 'Exception Detail';

                    trigger OnValidate()
                    var
                        OutStr: OutStream;
                    begin
                        Rec."Exception Detail".CreateOutStream(OutStr, TextEncoding::UTF8);
                        OutStr.WriteText(ExceptionDetailText);
                    end;
                }
            }
        }
    }

    var
        SourceRecordIdText: Text;
        DestinationRecordIdText: Text;
        ExceptionDetailText: Text;
        NotARecordIdErr: Label '''%1'' is not a record id such as ''Customer: 10000''.', Comment = '%1 = the text sent';

    trigger OnAfterGetRecord()
    var
        InStr: InStream;
    begin
        SourceRecordIdText := Format(Rec."Source Record ID");
        DestinationRecordIdText := Format(Rec."Destination Record ID");
        Rec.CalcFields("Exception Detail");
        Rec."Exception Detail".CreateInStream(InStr, TextEncoding::UTF8);
        InStr.Read(ExceptionDetailText);
    end;

    trigger OnNewRecord(BelowxRec: Boolean)
    begin
        Clear(SourceRecordIdText);
        Clear(DestinationRecordIdText);
        Clear(ExceptionDetailText);
    end;

    trigger OnInsertRecord(BelowxRec: Boolean): Boolean
    begin
        Rec.TestField("Integration Synch. Job ID");
        if Rec."Date/Time" = 0DT then
            Rec."Date/Time" := CurrentDateTime();
    end;

    local procedure ToRecordId(Value: Text) Result: RecordId
    begin
        if Value = '' then
            exit;
        if not Evaluate(Result, Value) then
            Error(NotARecordIdErr, Value);
    end;
}
