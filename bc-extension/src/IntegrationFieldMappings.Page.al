namespace D365Kit.Integration;

using Microsoft.Integration.SyncEngine;

/// <summary>
/// The tenant's integration field mappings (table 5336), read-only, with the match-based coupling flags.
/// Computed fields: fieldName (the BC field caption, e.g. "Phone No.") and integrationFieldName (the
/// Dataverse attribute logical name); both are blank for a constant written to the other side.
/// </summary>
page 50102 "d365kit Int. Field Mappings"
{
    PageType = API;
    APIPublisher = 'd365kit';
    APIGroup = 'integration';
    APIVersion = 'v1.0';
    EntityName = 'integrationFieldMapping';
    EntitySetName = 'integrationFieldMappings';
    EntityCaption = 'Integration Field Mapping';
    EntitySetCaption = 'Integration Field Mappings';
    SourceTable = "Integration Field Mapping";
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
                field(no; Rec."No.")
                {
                    Caption = 'No.';
                }
                field(integrationTableMappingName; Rec."Integration Table Mapping Name")
                {
                    Caption = 'Integration Table Mapping Name';
                }
                field(fieldNo; Rec."Field No.")
                {
                    Caption = 'Field No.';
                }
                field(integrationTableFieldNo; Rec."Integration Table Field No.")
                {
                    Caption = 'Integration Table Field No.';
                }
                field(fieldName; FieldNameText)
                {
                    Caption = 'Field Name';
                }
                field(integrationFieldName; IntegrationFieldNameText)
                {
                    Caption = 'Integration Field Name';
                }
                field(direction; Rec.Direction)
                {
                    Caption = 'Direction';
                }
                field(constantValue; Rec."Constant Value")
                {
                    Caption = 'Constant Value';
                }
                field(validateField; Rec."Validate Field")
                {
                    Caption = 'Validate Field';
                }
                field(validateIntegrationTableField; Rec."Validate Integration Table Fld")
                {
                    Caption = 'Validate Integration Table Fld';
                }
                field(clearValueOnFailedSync; Rec."Clear Value on Failed Sync")
                {
                    Caption = 'Clear Value on Failed Sync';
                }
                field(status; Rec.Status)
                {
                    Caption = 'Status';
                }
                field(notNull; Rec."Not Null")
                {
                    Caption = 'Not Null';
                }
                field(transformationRule; Rec."Transformation Rule")
                {
                    Caption = 'Transformation Rule';
                }
                field(useForMatchBasedCoupling; Rec."Use For Match-Based Coupling")
                {
                    Caption = 'Use For Match-Based Coupling';
                }
                field(caseSensitiveMatching; Rec."Case-Sensitive Matching")
                {
                    Caption = 'Case-Sensitive Matching';
                }
                field(matchPriority; Rec."Match Priority")
                {
                    Caption = 'Match Priority';
                }
            }
        }
    }

    var
        TableMapping: Record "Integration Table Mapping";
        Metadata: Codeunit "d365kit Metadata";
        FieldNameText: Text;
        IntegrationFieldNameText: Text;

    trigger OnAfterGetRecord()
    begin
        if TableMapping.Name <> Rec."Integration Table Mapping Name" then
            if not TableMapping.Get(Rec."Integration Table Mapping Name") then
                Clear(TableMapping);
        FieldNameText := Metadata.FieldCaption(TableMapping."Table ID", Rec."Field No.");
        IntegrationFieldNameText := Metadata.FieldExternalName(TableMapping."Integration Table ID", Rec."Integration Table Field No.");
    end;
}
