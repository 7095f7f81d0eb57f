namespace D365Kit.Integration;

using Microsoft.Finance.GeneralLedger.Setup;
using Microsoft.Integration.Dataverse;
using Microsoft.Integration.SyncEngine;
using Microsoft.Projects.Resources.Resource;
using Microsoft.Sales.Pricing;

#pragma warning disable AL0432

/// <summary>
/// What the d365kit app registration (or user) needs for the companion API: read on every published
/// table, insert/modify/delete exactly where a page allows it, and execute on the pages and the helper.
/// Writes to resources, price groups and prices also touch related tables (number series, units of
/// measure): combine with a standard set such as D365 BUS FULL ACCESS for selective sync into BC.
/// </summary>
permissionset 50100 "D365KIT INTEGRATION"
{
    Assignable = true;
    Caption = 'd365kit Integration API';

    Permissions =
        tabledata "CRM Integration Record" = RIMD,
        tabledata "Integration Table Mapping" = R,
        tabledata "Integration Field Mapping" = R,
        tabledata "Integration Synch. Job" = RI,
        tabledata "Integration Synch. Job Errors" = RI,
        tabledata Resource = RIMD,
        tabledata "Customer Price Group" = RIMD,
        tabledata "Sales Price" = RIMD,
        tabledata "General Ledger Setup" = R,
        codeunit "d365kit Metadata" = X,
        page "d365kit CRM Integr. Records" = X,
        page "d365kit Int. Table Mappings" = X,
        page "d365kit Int. Field Mappings" = X,
        page "d365kit Int. Synch. Jobs" = X,
        page "d365kit Int. Synch. Job Errors" = X,
        page "d365kit Resources" = X,
        page "d365kit Customer Price Groups" = X,
        page "d365kit Sales Prices" = X;
}

#pragma warning restore AL0432
