namespace D365Kit.Integration;

using Microsoft.Integration.SyncEngine;

/// <summary>
/// The tenant's integration table mappings (table 5335), read-only. The temporary copies a full
/// synchronization creates ("Delete After Synchronization") are left out. Computed fields: the BC table
/// caption, the Dataverse table and key/modified-on column names, and the two filters as readable text.
/// The watermark fields keep BC's naming trap: synchModifiedOnFilter holds the latest Dataverse modifiedon,
/// synchIntTblModOnFltr the latest BC SystemModifiedAt.
/// </summary>
page 50101 "d365kit Int. Table Mappings"
{
    PageType = API;
    APIPublisher = 'd365kit';
    APIGroup = 'integration';
    APIVersion = 'v1.0';
    EntityName = 'integrationTableMapping';
    EntitySetName = 'integrationTableMappings';
    EntityCaption = 'Integration Table Mapping';
    EntitySetCaption = 'Integration Table Mappings';
    SourceTable = "Integration Table Mapping";
    SourceTableView = where("Delete After Synchronization" = const(false));
    ODataKeyFields = SystemId;
    DelayedInsert = true;
    Editable = false;
    InsertAllowed = false;
    ModifyAllowed = false;
    DeleteAllowed = false;
    DataAccessIntent = ReadOnly;
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
                }
                field(name; Rec.Name)
                {
                    Caption = 'Name';
                }
                field(tableId; Rec."Table ID")
                {
                    Caption = 'Table ID';
                }
                field(integrationTableId; Rec."Integration Table ID")
                {
                    Caption = 'Integration Table ID';
                }
                field(tableName; TableNameText)
                {
                    Caption = 'Table Name';
                }
                field(integrationTableName; IntegrationTableNameText)
                {
                    Caption = 'Integration Table Name';
                }
                field(direction; Rec.Direction)
                {
                    Caption = 'Direction';
                }
                field(tableFilter; TableFilterText)
                {
                    Caption = 'Table Filter';
                }
                field(integrationTableFilter; IntegrationTableFilterText)
                {
                    Caption = 'Integration Table Filter';
                }
                field(synchOnlyCoupledRecords; Rec."Synch. Only Coupled Records")
                {
                    Caption = 'Synch. Only Coupled Records';
                }
                field(dependencyFilter; Rec."Dependency Filter")
                {
                    Caption = 'Dependency Filter';
                }
                field(deletionConflictResolution; Rec."Deletion-Conflict Resolution")
                {
                    Caption = 'Resolve Deletion Conflicts';
                }
                field(updateConflictResolution; Rec."Update-Conflict Resolution")
                {
                    Caption = 'Resolve Update Conflicts';
                }
                field(createNewInCaseOfNoMatch; Rec."Create New in Case of No Match")
                {
                    Caption = 'Create New in Case of No Match';
                }
                field(synchAfterBulkCoupling; Rec."Synch. After Bulk Coupling")
                {
                    Caption = 'Synch. After Match-Based Coupling';
                }
                field(synchModifiedOnFilter; Rec."Synch. Modified On Filter")
                {
                    Caption = 'Synch. Modified On Filter';
                }
                field(synchIntTblModOnFltr; Rec."Synch. Int. Tbl. Mod. On Fltr.")
                {
                    Caption = 'Synch. Int. Tbl. Mod. On Fltr.';
                }
                field(integrationTableUidFieldName; IntegrationTableUidFieldName)
                {
                    Caption = 'Integration Table UID Field Name';
                }
                field(intTblModifiedOnFieldName; IntTblModifiedOnFieldName)
                {
                    Caption = 'Int. Tbl. Modified On Field Name';
                }
            }
        }
    }

    var
        Metadata: Codeunit "d365kit Metadata";
        TableNameText: Text;
        IntegrationTableNameText: Text;
        TableFilterText: Text;
        IntegrationTableFilterText: Text;
        IntegrationTableUidFieldName: Text;
        IntTblModifiedOnFieldName: Text;

    trigger OnAfterGetRecord()
    begin
        TableNameText := Metadata.TableCaption(Rec."Table ID");
        IntegrationTableNameText := Metadata.TableExternalName(Rec."Integration Table ID");
        TableFilterText := Metadata.FilterText(Rec."Table ID", Rec.GetTableFilter());
        IntegrationTableFilterText := Metadata.FilterText(Rec."Integration Table ID", Rec.GetIntegrationTableFilter());
        IntegrationTableUidFieldName := Metadata.FieldExternalName(Rec."Integration Table ID", Rec."Integration Table UID Fld. No.");
        IntTblModifiedOnFieldName := Metadata.FieldExternalName(Rec."Integration Table ID", Rec."Int. Tbl. Modified On Fld. No.");
    end;
}
