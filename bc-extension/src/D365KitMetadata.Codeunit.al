namespace D365Kit.Integration;

using System.Reflection;

/// <summary>
/// Names the API pages compute from table and field numbers: BC captions, Dataverse logical names
/// (the ExternalName of the CRM proxy tables and fields) and table views as readable filter text.
/// </summary>
codeunit 50100 "d365kit Metadata"
{
    Access = Internal;

    procedure TableCaption(TableId: Integer): Text
    var
        TableMetadata: Record "Table Metadata";
    begin
        if TableMetadata.Get(TableId) then
            exit(TableMetadata.Caption);
        exit('');
    end;

    procedure TableExternalName(TableId: Integer): Text
    var
        TableMetadata: Record "Table Metadata";
    begin
        if TableMetadata.Get(TableId) then
            exit(TableMetadata.ExternalName);
        exit('');
    end;

    procedure FieldCaption(TableId: Integer; FieldNo: Integer): Text
    var
        "Field": Record "Field";
    begin
        if (FieldNo <> 0) and Field.Get(TableId, FieldNo) then
            exit(Field."Field Caption");
        exit('');
    end;

    /// <summary>The Dataverse attribute of a proxy-table field (its ExternalName, else its lower-cased name).</summary>
    procedure FieldExternalName(TableId: Integer; FieldNo: Integer): Text
    var
        "Field": Record "Field";
    begin
        if (FieldNo = 0) or not Field.Get(TableId, FieldNo) then
            exit('');
        if Field.ExternalName <> '' then
            exit(Field.ExternalName);
        exit(LowerCase(Field.FieldName));
    end;

    /// <summary>
    /// A stored table view as WHERE(Name=FILTER(value),...) with field names instead of numbers; the raw view
    /// when the table cannot be opened here.
    /// </summary>
    procedure FilterText(TableId: Integer; View: Text): Text
    var
        FilterTxt: Text;
    begin
        if View = '' then
            exit('');
        if TryFilterText(TableId, View, FilterTxt) then
            exit(FilterTxt);
        exit(View);
    end;

    [TryFunction]
    local procedure TryFilterText(TableId: Integer; View: Text; var FilterTxt: Text)
    var
        RecRef: RecordRef;
        FldRef: FieldRef;
        Index: Integer;
        Parts: Text;
    begin
        RecRef.Open(TableId);
        RecRef.SetView(View);
        for Index := 1 to RecRef.FieldCount() do begin
            FldRef := RecRef.FieldIndex(Index);
            if FldRef.GetFilter() <> '' then begin
                if Parts <> '' then
                    Parts += ',';
                Parts += FldRef.Name() + '=FILTER(' + FldRef.GetFilter() + ')';
            end;
        end;
        RecRef.Close();
        if Parts <> '' then
            FilterTxt := 'WHERE(' + Parts + ')';
    end;
}
