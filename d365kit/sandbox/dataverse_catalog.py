"""Documented Dataverse Web API operations and entity sets, and what the sandbox does with each.

A list, built from Microsoft's Web API reference ("Web API Function Reference", "Web API Action
Reference", "Web API EntityType Reference"; docs/sandbox.md, "Not implemented: 501"): every name here is
either served or answers 501 naming it, never 404 "Resource not found for the segment", which would tell a
client the operation does not exist. ``tests/test_sandbox_operations_walk.py`` walks the whole list
against a running sandbox, and the README's Dataverse operations table is generated from it
(``fidelity_rows()``), so the table cannot claim what the walk did not see.

Operations the reference documents as bound (``RetrieveUserPrivileges`` to ``systemuser`` ...) are
recognised unbound too: the sandbox names them in the 501 either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from d365kit.sandbox.schema import DATAVERSE, UNSERVED

# -- served --------------------------------------------------------------------------------------------

SERVED_FUNCTIONS = ("WhoAmI", "RetrieveMetadataChanges")
SERVED_BOUND_ACTIONS = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")
METADATA_SETS = ("EntityDefinitions", "RelationshipDefinitions", "GlobalOptionSetDefinitions")

# -- 501 -----------------------------------------------------------------------------------------------

FUNCTIONS_501 = (
    "CalculateRollupField",
    "CalculateTotalTimeIncident",
    "CanBeReferenced",
    "CanBeReferencing",
    "CanManyToMany",
    "DownloadReportDefinition",
    "ExpandCalendar",
    "ExportMappingsImportMap",
    "FetchXmlToQueryExpression",
    "FindParentResourceGroup",
    "FormatAddress",
    "GetAllTimeZonesWithDisplayName",
    "GetDefaultPriceLevel",
    "GetDistinctValuesImportFile",
    "GetHeaderColumnsImportFile",
    "GetQuantityDecimal",
    "GetReportHistoryLimit",
    "GetTimeZoneCodeByLocalizedName",
    "GetTrackingTokenEmail",
    "GetValidManyToMany",
    "GetValidReferencedEntities",
    "GetValidReferencingEntities",
    "IncrementKnowledgeArticleViewCount",
    "InitializeFrom",
    "IsComponentCustomizable",
    "IsDataEncryptionActive",
    "IsValidStateTransition",
    "LocalTimeFromUtcTime",
    "QueryExpressionToFetchXml",
    "RetrieveAbsoluteAndSiteCollectionUrl",
    "RetrieveActivePath",
    "RetrieveAllChildUsersSystemUser",
    "RetrieveAppComponents",
    "RetrieveApplicationRibbon",
    "RetrieveAttributeChangeHistory",
    "RetrieveAuditDetails",
    "RetrieveAuditPartitionList",
    "RetrieveAvailableLanguages",
    "RetrieveBusinessHierarchyBusinessUnit",
    "RetrieveByGroupResource",
    "RetrieveByResourceResourceGroup",
    "RetrieveByResourcesService",
    "RetrieveCurrentOrganization",
    "RetrieveDataEncryptionKey",
    "RetrieveDependenciesForDelete",
    "RetrieveDependenciesForUninstall",
    "RetrieveDependentComponents",
    "RetrieveDeploymentLicenseType",
    "RetrieveDeprovisionedLanguages",
    "RetrieveDuplicates",
    "RetrieveEntityChanges",
    "RetrieveEntityRibbon",
    "RetrieveExchangeRate",
    "RetrieveFilteredForms",
    "RetrieveFormattedImportJobResults",
    "RetrieveInstalledLanguagePacks",
    "RetrieveInstalledLanguagePackVersion",
    "RetrieveLicenseInfo",
    "RetrieveLocLabels",
    "RetrieveMailboxTrackingFolders",
    "RetrieveMembersBulkOperation",
    "RetrieveMissingComponents",
    "RetrieveMissingDependencies",
    "RetrieveOrganizationInfo",
    "RetrieveOrganizationResources",
    "RetrieveParentGroupsResourceGroup",
    "RetrieveParsedDataImportFile",
    "RetrievePrincipalAccess",
    "RetrievePrincipalAttributePrivileges",
    "RetrievePrincipalSyncAttributeMappings",
    "RetrieveProvisionedLanguagePackVersion",
    "RetrieveProvisionedLanguages",
    "RetrieveRecordChangeHistory",
    "RetrieveRecordWall",
    "RetrieveRequiredComponents",
    "RetrieveRolePrivilegesRole",
    "RetrieveSharedPrincipalsAndAccess",
    "RetrieveSubGroupsResourceGroup",
    "RetrieveSubsidiaryTeamsBusinessUnit",
    "RetrieveSubsidiaryUsersBusinessUnit",
    "RetrieveTeamPrivileges",
    "RetrieveTeamsSystemUser",
    "RetrieveTimeStamp",
    "RetrieveTotalRecordCount",
    "RetrieveUnpublished",
    "RetrieveUnpublishedMultiple",
    "RetrieveUserPrivileges",
    "RetrieveUserQueues",
    "RetrieveUserSetOfPrivilegesByIds",
    "RetrieveUserSetOfPrivilegesByNames",
    "RetrieveUserSettingsSystemUser",
    "RetrieveVersion",
    "SearchByBodyKbArticle",
    "SearchByKeywordsKbArticle",
    "SearchByTitleKbArticle",
    "UtcTimeFromLocalTime",
    "ValidateFetchXmlExpression",
    "ValidateRecurrenceRule",
)

ACTIONS_501 = (
    "AddItemCampaign",
    "AddListMembersList",
    "AddMemberList",
    "AddMembersTeam",
    "AddPrincipalToQueue",
    "AddPrivilegesRole",
    "AddToQueue",
    "AddUserToRecordTeam",
    "ApplyRecordCreationAndUpdateRule",
    "ApplyRoutingRule",
    "AssociateEntities",
    "BackgroundSendEmail",
    "Book",
    "BulkDelete",
    "BulkDetectDuplicates",
    "CalculateActualValueOpportunity",
    "CalculatePrice",
    "CheckIncomingEmail",
    "CheckPromoteEmail",
    "CloneAsPatch",
    "CloneAsSolution",
    "CloneContract",
    "CloseIncident",
    "CloseQuote",
    "CommitAnnotationBlocksUpload",
    "CommitAttachmentBlocksUpload",
    "CommitFileBlocksUpload",
    "ConvertOwnerTeamToAccessTeam",
    "ConvertQuoteToSalesOrder",
    "ConvertSalesOrderToInvoice",
    "CopyDynamicListToStatic",
    "CopySystemForm",
    "CreateCustomerRelationships",
    "CreateEntities",
    "CreateException",
    "CreateInstance",
    "CreateKnowledgeArticleTranslation",
    "CreateKnowledgeArticleVersion",
    "CreatePolymorphicLookupAttribute",
    "DeleteAndPromote",
    "DeleteAuditData",
    "DeleteFile",
    "DeleteMultiple",
    "DeleteOpenInstances",
    "DeleteOptionValue",
    "DeliverIncomingEmail",
    "DeliverPromoteEmail",
    "DeprovisionLanguage",
    "DisassociateEntities",
    "DistributeCampaignActivity",
    "ExecuteWorkflow",
    "ExportFieldTranslation",
    "ExportSolution",
    "ExportTranslation",
    "FulfillSalesOrder",
    "GenerateInvoiceFromOpportunity",
    "GenerateQuoteFromOpportunity",
    "GenerateSalesOrderFromOpportunity",
    "GetInvoiceProductsFromOpportunity",
    "GetQuoteProductsFromOpportunity",
    "GetSalesOrderProductsFromOpportunity",
    "GrantAccess",
    "ImportFieldTranslation",
    "ImportSolution",
    "ImportTranslation",
    "InitializeAnnotationBlocksDownload",
    "InitializeAnnotationBlocksUpload",
    "InitializeFileBlocksDownload",
    "InitializeFileBlocksUpload",
    "InsertOptionValue",
    "InsertStatusValue",
    "InstallSampleData",
    "InstantiateFilters",
    "InstantiateTemplate",
    "LockInvoicePricing",
    "LockSalesOrderPricing",
    "LoseOpportunity",
    "Merge",
    "ModifyAccess",
    "OrderOption",
    "PickFromQueue",
    "ProcessInbound",
    "PropagateByExpression",
    "ProvisionLanguage",
    "PublishAllXml",
    "PublishDuplicateRule",
    "PublishTheme",
    "PublishXml",
    "QualifyLead",
    "QualifyMemberList",
    "ReassignObjectsOwner",
    "ReassignObjectsSystemUser",
    "Recalculate",
    "ReleaseToQueue",
    "RemoveFromQueue",
    "RemoveMemberList",
    "RemoveMembersTeam",
    "RemoveParent",
    "RemovePrivilegeRole",
    "RemoveUserFromRecordTeam",
    "RenewContract",
    "RenewEntitlement",
    "ReplacePrivilegesRole",
    "Reschedule",
    "ResetUserFilters",
    "RevertProduct",
    "ReviseQuote",
    "RevokeAccess",
    "RouteTo",
    "SendBulkMail",
    "SendEmail",
    "SendEmailFromTemplate",
    "SendFax",
    "SendTemplate",
    "SetDataEncryptionKey",
    "SetFeatureStatus",
    "SetLocLabels",
    "SetParent",
    "SetProcess",
    "SetReportRelated",
    "StageAndUpgrade",
    "UninstallSampleData",
    "UnlockInvoicePricing",
    "UnlockSalesOrderPricing",
    "UnpublishDuplicateRule",
    "UpdateOptionValue",
    "UpdateProductProperties",
    "UpdateSolutionComponent",
    "UpdateStateValue",
    "ValidateApp",
    "ValidateSavedQuery",
    "WinOpportunity",
    "WinQuote",
)

# Entity sets of the EntityType reference the sandbox does not serve (besides schema.UNSERVED).
ENTITY_SETS_501 = (
    "activityparties",
    "asyncoperations",
    "audits",
    "bulkdeleteoperations",
    "connectionroles",
    "connections",
    "customeraddresses",
    "duplicaterules",
    "environmentvariabledefinitions",
    "environmentvariablevalues",
    "languagelocale",
    "letters",
    "pluginassemblies",
    "plugintypes",
    "positions",
    "publishers",
    "queueitems",
    "queues",
    "savedqueries",
    "sdkmessagefilters",
    "sdkmessageprocessingsteps",
    "sdkmessages",
    "serviceendpoints",
    "solutioncomponents",
    "solutions",
    "systemforms",
    "userqueries",
    "usersettingscollection",
    "webresourceset",
    "workflows",
)

FUNCTIONS = frozenset(FUNCTIONS_501)
ACTIONS = frozenset(ACTIONS_501)


def unserved_sets() -> frozenset[str]:
    return (UNSERVED["dataverse"] | frozenset(ENTITY_SETS_501)) - frozenset(METADATA_SETS)


def operation_kind(name: str) -> str | None:
    """'function' or 'action' for a documented operation name the sandbox knows of, else None."""
    if name in FUNCTIONS or name in SERVED_FUNCTIONS:
        return "function"
    if name in ACTIONS or name in SERVED_BOUND_ACTIONS:
        return "action"
    return None


@dataclass(frozen=True)
class Entry:
    """One documented name and how to call it: ``kind`` entityset/function/action, ``served`` or 501."""

    name: str
    kind: str
    served: bool
    path: str  # relative to the service root
    method: str = "GET"


def entries() -> list[Entry]:
    """Every documented name the walk calls, served ones first."""
    out = [Entry(n, "entityset", True, n) for n in DATAVERSE]
    out += [Entry(n, "entityset", True, n) for n in METADATA_SETS]
    out += [Entry("WhoAmI", "function", True, "WhoAmI")]
    out += [Entry("RetrieveMetadataChanges", "function", True, "RetrieveMetadataChanges(Query=@p1)?@p1={}")]
    out += [
        Entry(n, "action", True, f"accounts/Microsoft.Dynamics.CRM.{n}", "POST") for n in SERVED_BOUND_ACTIONS
    ]
    out += [Entry(n, "entityset", False, n) for n in sorted(unserved_sets())]
    out += [Entry(n, "function", False, f"{n}()") for n in FUNCTIONS_501]
    out += [Entry(n, "function", False, n) for n in ("RetrieveAvailableLanguages", "RetrieveVersion")]
    out += [Entry(n, "action", False, n, "POST") for n in ACTIONS_501]
    return out


def fidelity_rows() -> list[tuple[str, str, str]]:
    """(kind, served names, 501 names) for the README's generated table."""
    groups = {"entityset": "Entity sets", "function": "Functions", "action": "Actions"}
    out = []
    for kind, title in groups.items():
        served = sorted({e.name for e in entries() if e.kind == kind and e.served}, key=str.lower)
        refused = sorted({e.name for e in entries() if e.kind == kind and not e.served}, key=str.lower)
        out.append((title, ", ".join(f"`{n}`" for n in served), ", ".join(f"`{n}`" for n in refused)))
    return out


def fidelity_markdown() -> str:
    """The README table between the ``dataverse-operations`` markers (tests/test_sandbox_operations_walk.py)."""
    lines = ["| Kind | Served | Answers 501 (named in the error) |", "|---|---|---|"]
    lines += [f"| {kind} | {served} | {refused} |" for kind, served, refused in fidelity_rows()]
    return "\n".join(lines)
