namespace D365Kit.Integration;

using Microsoft.Integration.SyncEngine;

/// <summary>
/// The synchronization log (table 5338 "Integration Synch. Job"): read, and insert for the job rows
/// d365kit writes after its own selective syncs.
/// Keyed by the table's ID, not SystemId: couplings (lastSynchJobId, lastSynchCrmJobId) and job errors
/// (integrationSynchJobId) refer to a job by ID, and BC's own jobs have an ID that differs from their
/// SystemId, so only this key lets a client join them. A client may supply the id on insert.
/// </summary>
page 50103 "d365kit Int. Synch. Jobs"
{
    PageType = API;
    APIPublisher = 'd365kit';
    APIGroup = 'integration';
    APIVersion = 'v1.0';
    EntityName = 'integrationSynchJob';
    EntitySetName = 'integrationSynchJobs';
    EntityCaption = 'Integration Synch. Job';
    EntitySetCaption = 'Integration Synch. Jobs';
    SourceTable = "Integration Synch. Job";
    ODataKeyFields = ID;
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
                field(id; Rec.ID)
                {
                    Caption = 'Id';
                }
                field(startDateTime; Rec."Start Date/Time")
                {
                    Caption = 'Start Date/Time';
                }
                field(finishDateTime; Rec."Finish Date/Time")
                {
                    Caption = 'Finish Date/Time';
                }
                field(message; Rec.Message)
                {
                    Caption = 'Message';
                }
                field(integrationTableMappingName; Rec."Integration Table Mapping Name")
                {
                    Caption = 'Integration Table Mapping Name';
                }
                field(inserted; Rec.Inserted)
                {
                    Caption = 'Inserted';
                }
                field(modified; Rec.Modified)
                {
                    Caption = 'Modified';
                }
                field(deleted; Rec.Deleted)
                {
                    Caption = 'Deleted';
                }
                field(unchanged; Rec.Unchanged)
                {
                    Caption = 'Unchanged';
                }
                field(skipped; Rec.Skipped)
                {
                    Caption = 'Skipped';
                }
                field(failed; Rec.Failed)
                {
                    Caption = 'Failed';
                }
                field(uncoupled; Rec.Uncoupled)
                {
                    Caption = 'Uncoupled';
                }
                field(coupled; Rec.Coupled)
                {
                    Caption = 'Coupled';
                }
                field(synchDirection; Rec."Synch. Direction")
                {
                    Caption = 'Synch. Direction';
                }
                field(type; Rec.Type)
                {
                    Caption = 'Type';
                }
                field(jobQueueLogEntryNo; Rec."Job Queue Log Entry No.")
                {
                    Caption = 'Job Queue Log Entry No.';
                }
            }
        }
    }

    trigger OnInsertRecord(BelowxRec: Boolean): Boolean
    begin
        if IsNullGuid(Rec.ID) then
            Rec.ID := CreateGuid();
    end;
}
