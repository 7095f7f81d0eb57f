"""Entity set definitions of BC API v2.0, Dataverse Web API v9.2 and the companion API (see schema.py).

Sources: ``shared/reference/api-contracts.md`` (A.3 BC resources, B.2-B.4 Dataverse tables) and
``shared/reference/integration-model.md`` (sections 2, 3, 4.2). Choices where the reference is silent or
UNVERIFIED are marked ``Choice:`` next to the definition.

Conventions
- BC/companion rows never hold JSON null: a property omitted on create gets the blank value BC renders
  (``""``, ``0``, ``false``, blank GUID, ``0001-01-01``, ``0001-01-01T00:00:00.000Z``, first enum value).
- BC enum values are the wire spelling: AL value names XML-encoded (space ``_x0020_``, hyphen ``_x002D_``);
  the blank option is a single space ``" "`` (api-contracts A.2).
- ``required``: customers.displayName (reference) and the Code primary keys of setup/master tables
  (Choice: a blank Code key is refused). Numbered records (number) are left to the number series.
- BC max lengths come from the base-app field lengths (Code[20], Text[100] ...). Choice: the reference
  lists none, these are the standard BC table definitions.
- Dataverse: only SystemRequired columns are ``required`` (ApplicationRequired is a form-level rule the
  Web API does not enforce). Lookups are never ``required`` here because they are written through
  ``<nav>@odata.bind``; the API layer owns that check. DateOnly columns are ``Edm.Date``.
- Dataverse ``ownerid`` targets ``systemusers`` only: teams are not served by the sandbox.
"""

from __future__ import annotations

from collections.abc import Iterable

from d365kit.sandbox.schema import EntitySet, Lookup, Nav, Prop, register

G, S, B, D, DT = "Edm.Guid", "Edm.String", "Edm.Boolean", "Edm.Decimal", "Edm.DateTimeOffset"
I32, I64, DBL, DATE = "Edm.Int32", "Edm.Int64", "Edm.Double", "Edm.Date"

BLANK_GUID = "00000000-0000-0000-0000-000000000000"
BLANK_DATE = "0001-01-01"
BLANK_DATETIME = "0001-01-01T00:00:00.000Z"  # store format of DateTimeOffset (see store.py)

_BC_BLANK: dict[str, object] = {
    S: "",
    G: BLANK_GUID,
    B: False,
    D: 0,
    DBL: 0,
    I32: 0,
    I64: 0,
    DATE: BLANK_DATE,
    DT: BLANK_DATETIME,
}


def enum_values(*labels: str) -> tuple[str, ...]:
    """AL option/enum value names in BC wire spelling (XML-encoded; the blank option stays ``" "``)."""
    return tuple(
        label if label == " " else label.replace(" ", "_x0020_").replace("-", "_x002D_") for label in labels
    )


# --------------------------------------------------------------------------------------------------
# Business Central API v2.0 (companies is in schema.py) and the companion API
# --------------------------------------------------------------------------------------------------


def bp(name: str, edm: str = S, **kw: object) -> Prop:
    """BC/companion property whose default is the blank value BC renders for its type."""
    kw.setdefault("default", _BC_BLANK[edm])
    return Prop(name, edm, **kw)  # type: ignore[arg-type]


def be(name: str, enum_type: str, values: tuple[str, ...], **kw: object) -> Prop:
    """BC enum property (Edm.String on storage, ``Microsoft.NAV.<enum_type>`` in $metadata)."""
    kw.setdefault("default", values[0])
    return Prop(name, S, enum_type=enum_type, enum=values, **kw)  # type: ignore[arg-type]


def bc_id() -> Prop:
    return Prop("id", G, read_only=True)


def bc_modified() -> Prop:
    return Prop("lastModifiedDateTime", DT, read_only=True)


def address(prefix: str = "") -> tuple[Prop, ...]:
    """BC address block: addressLine1/2, city, state (County), country (code), postalCode."""
    if not prefix:
        names = ("addressLine1", "addressLine2", "city", "state", "country", "postalCode")
    else:
        names = tuple(
            f"{prefix}{n}" for n in ("AddressLine1", "AddressLine2", "City", "State", "Country", "PostCode")
        )
    return tuple(bp(n, max_length=m) for n, m in zip(names, (100, 50, 30, 30, 10, 20), strict=True))


CONTACT_TYPE = enum_values("Company", "Person")
CUSTOMER_BLOCKED = enum_values(" ", "Ship", "Invoice", "All")
# Choice (UNVERIFIED list): enum 5050 "Contact Business Relation" value names.
CONTACT_BUSINESS_RELATION = enum_values(
    " ", "None", "Customer", "Vendor", "Bank Account", "Employee", "Multiple", "Other"
)
ITEM_TYPE = enum_values("Inventory", "Service", "Non-Inventory")
# Choice: the reference confirms only "In_x0020_Progress"; the rest are the BC table options.
OPPORTUNITY_STATUS = enum_values("Not Started", "In Progress", "Won", "Lost")
INVOICE_STATUS = enum_values(" ", "Draft", "In Review", "Open", "Paid", "Canceled", "Corrective")
INVOICE_LINE_TYPE = enum_values("Comment", "Account", "Item", "Resource", "Fixed Asset", "Charge")

register(
    EntitySet(
        service="bc",
        name="customers",
        type_name="customer",
        key="id",
        modified_prop="lastModifiedDateTime",
        props=(
            bc_id(),
            bp("number", max_length=20),
            bp("displayName", required=True, max_length=100),
            be("type", "contactType", CONTACT_TYPE),
            *address(),
            bp("phoneNumber", max_length=30),
            bp("email", max_length=80),
            bp("website", max_length=80),
            bp("salespersonCode", max_length=20),
            bp("balanceDue", D, read_only=True),
            bp("creditLimit", D),
            bp("taxLiable", B),
            bp("taxAreaId", G),
            bp("taxAreaDisplayName", read_only=True),
            bp("taxRegistrationNumber", max_length=20),
            bp("currencyId", G),
            bp("currencyCode", max_length=10),
            bp("paymentTermsId", G),
            bp("shipmentMethodId", G),
            bp("paymentMethodId", G),
            be("blocked", "customerBlocked", CUSTOMER_BLOCKED),
            bc_modified(),
        ),
        navs=(
            Nav("currency", "currencies", "currencyId", "id"),
            Nav("paymentTerm", "paymentTerms", "paymentTermsId", "id"),
            Nav("shipmentMethod", "shipmentMethods", "shipmentMethodId", "id"),
        ),
    )
)

register(
    EntitySet(
        service="bc",
        name="contacts",
        type_name="contact",
        key="id",
        modified_prop="lastModifiedDateTime",
        props=(
            bc_id(),
            bp("number", max_length=20),
            be("type", "contactType", CONTACT_TYPE),
            bp("displayName", max_length=100),
            bp("jobTitle", max_length=30),
            bp("companyNumber", max_length=20),
            bp("companyName", max_length=100),
            be("contactBusinessRelation", "contactBusinessRelation", CONTACT_BUSINESS_RELATION),
            *address(),
            bp("phoneNumber", max_length=30),
            bp("mobilePhoneNumber", max_length=30),
            bp("email", max_length=80),
            bp("website", max_length=255),
            bp("searchName", max_length=100),
            bp("privacyBlocked", B),
            bp("taxRegistrationNumber", max_length=20),
            bp("lastInteractionDate", DATE, read_only=True),
            bc_modified(),
        ),
    )
)

register(
    EntitySet(
        service="bc",
        name="currencies",
        type_name="currency",
        key="id",
        modified_prop="lastModifiedDateTime",
        props=(
            bc_id(),
            bp("code", required=True, max_length=10),
            bp("displayName", max_length=30),
            bp("symbol", max_length=10),
            bp("amountDecimalPlaces", max_length=5, default="2:2"),
            bp("amountRoundingPrecision", D, default=0.01),
            bc_modified(),
        ),
    )
)

register(
    EntitySet(
        service="bc",
        name="unitsOfMeasure",
        type_name="unitOfMeasure",
        key="id",
        modified_prop="lastModifiedDateTime",
        props=(
            bc_id(),
            bp("code", required=True, max_length=10),
            bp("displayName", max_length=50),
            bp("internationalStandardCode", max_length=10),
            bp("symbol", max_length=10),
            bc_modified(),
        ),
    )
)

register(
    EntitySet(
        service="bc",
        name="items",
        type_name="item",
        key="id",
        modified_prop="lastModifiedDateTime",
        props=(
            bc_id(),
            bp("number", max_length=20),
            bp("displayName", max_length=100),
            bp("displayName2", max_length=50),
            be("type", "itemType", ITEM_TYPE),
            bp("itemCategoryId", G),
            bp("itemCategoryCode", max_length=20),
            bp("blocked", B),
            bp("gtin", max_length=14),
            bp("inventory", D, read_only=True),
            bp("unitPrice", D),
            bp("priceIncludesTax", B),
            bp("unitCost", D),
            bp("taxGroupId", G),
            bp("taxGroupCode", max_length=20),
            bp("baseUnitOfMeasureId", G),
            bp("baseUnitOfMeasureCode", max_length=10),
            bp("generalProductPostingGroupId", G),
            bp("generalProductPostingGroupCode", max_length=20),
            bp("inventoryPostingGroupId", G),
            bp("inventoryPostingGroupCode", max_length=20),
            bc_modified(),
        ),
        navs=(Nav("unitOfMeasure", "unitsOfMeasure", "baseUnitOfMeasureId", "id"),),
    )
)

register(
    EntitySet(
        service="bc",
        name="salespeoplePurchasers",
        type_name="salespersonPurchaser",
        key="id",
        modified_prop="lastModifiedDateTime",
        props=(
            bc_id(),
            bp("code", required=True, max_length=20),
            bp("displayName", max_length=50),
            bp("email", max_length=80),
            bp("email2", max_length=80),
            bp("phoneNo", max_length=30),
            bp("jobTitle", max_length=30),
            bp("commisionPercent", D),  # sic: the real property is spelled "commision"
            bp("privacyBlocked", B),
            bp("blocked", B),
            bc_modified(),
        ),
    )
)

register(
    EntitySet(
        service="bc",
        name="opportunities",
        type_name="opportunity",
        key="id",
        modified_prop="lastModifiedDateTime",
        created_prop="systemCreatedAt",
        props=(
            bc_id(),
            bp("number", max_length=20),
            bp("contactNumber", max_length=20),
            bp("contactName", read_only=True, max_length=100),
            bp("contactCompanyName", read_only=True, max_length=100),
            bp("salespersonCode", max_length=20),
            bp("description", max_length=100),
            be("status", "opportunityStatus", OPPORTUNITY_STATUS),
            bp("closed", B, read_only=True),
            bp("creationDate", DATE),
            bp("dateClosed", DATE, read_only=True),
            bp("estimatedClosingDate", DATE, read_only=True),
            bp("calculatedCurrentValue", D, read_only=True),
            bp("chancesOfSuccessPrc", D, read_only=True),
            bp("completedPrc", D, read_only=True),
            bp("estimatedValue", D, read_only=True),
            Prop("systemCreatedAt", DT, read_only=True),
            bc_modified(),
        ),
    )
)

register(
    EntitySet(
        service="bc",
        name="salesInvoices",
        type_name="salesInvoice",
        key="id",
        modified_prop="lastModifiedDateTime",
        props=(
            bc_id(),
            bp("number", max_length=20),
            bp("externalDocumentNumber", max_length=35),
            bp("invoiceDate", DATE),
            bp("postingDate", DATE),
            bp("dueDate", DATE),
            bp("promisedPayDate", DATE),
            bp("customerPurchaseOrderReference", max_length=35),
            # Choice: "A customerNumber or a customerID must be provided." is an either/or rule the API
            # layer checks; neither property is marked required.
            bp("customerId", G),
            bp("customerNumber", max_length=20),
            bp("customerName", read_only=True, max_length=100),
            bp("billToName", read_only=True, max_length=100),
            bp("billToCustomerId", G),
            bp("billToCustomerNumber", max_length=20),
            bp("shipToName", max_length=100),
            bp("shipToContact", max_length=100),
            *address("sellTo"),
            *address("billTo"),
            *address("shipTo"),
            bp("currencyId", G),
            bp("currencyCode", max_length=10),
            bp("shortcutDimension1Code", max_length=20),
            bp("shortcutDimension2Code", max_length=20),
            bp("orderId", G, read_only=True),
            bp("orderNumber", read_only=True, max_length=20),
            bp("paymentTermsId", G),
            bp("shipmentMethodId", G),
            bp("salesperson", max_length=20),
            bp("disputeStatusId", G),
            bp("disputeStatus", max_length=10),
            bp("pricesIncludeTax", B, read_only=True),
            bp("remainingAmount", D, read_only=True),
            bp("discountAmount", D),
            bp("discountAppliedBeforeTax", B),
            bp("totalAmountExcludingTax", D, read_only=True),
            bp("totalTaxAmount", D, read_only=True),
            bp("totalAmountIncludingTax", D, read_only=True),
            # Choice: a created invoice is a draft; posted invoices are seeded Open/Paid/...
            be("status", "invoiceEntityAggregateStatus", INVOICE_STATUS, read_only=True, default="Draft"),
            bc_modified(),
            bp("phoneNumber", max_length=30),
            bp("email", max_length=80),
        ),
        navs=(
            Nav("salesInvoiceLines", "salesInvoiceLines", "id", "documentId", many=True),
            Nav("customer", "customers", "customerId", "id"),
        ),
    )
)

register(
    EntitySet(
        service="bc",
        name="salesInvoiceLines",
        type_name="salesInvoiceLine",
        key="id",
        props=(
            bc_id(),
            # Choice: documentId is not "required" because the nested route supplies it from the URL.
            bp("documentId", G),
            bp("sequence", I32),
            bp("itemId", G),
            bp("accountId", G),
            be("lineType", "invoiceLineAggLineType", INVOICE_LINE_TYPE, default="Item"),
            bp("lineObjectNumber", max_length=20),
            bp("description", max_length=100),
            bp("description2", max_length=50),
            bp("unitOfMeasureId", G),
            bp("unitOfMeasureCode", max_length=10),
            bp("quantity", D),
            bp("unitPrice", D),
            bp("discountAmount", D),
            bp("discountPercent", D),
            bp("discountAppliedBeforeTax", B, read_only=True),
            bp("amountExcludingTax", D, read_only=True),
            bp("taxCode", max_length=20),
            bp("taxPercent", D, read_only=True),
            bp("totalTaxAmount", D, read_only=True),
            bp("amountIncludingTax", D, read_only=True),
            bp("invoiceDiscountAllocation", D, read_only=True),
            bp("netAmount", D, read_only=True),
            bp("netTaxAmount", D, read_only=True),
            bp("netAmountIncludingTax", D, read_only=True),
            bp("shipmentDate", DATE),
            bp("itemVariantId", G),
            bp("locationId", G),
        ),
        navs=(Nav("item", "items", "itemId", "id"),),
    )
)

for _name, _type in (("paymentTerms", "paymentTerm"), ("shipmentMethods", "shipmentMethod")):
    _extra: tuple[Prop, ...] = ()
    if _name == "paymentTerms":
        _extra = (
            bp("dueDateCalculation", max_length=32),
            bp("discountDateCalculation", max_length=32),
            bp("discountPercent", D),
            bp("calculateDiscountOnCreditMemos", B),
        )
    register(
        EntitySet(
            service="bc",
            name=_name,
            type_name=_type,
            key="id",
            modified_prop="lastModifiedDateTime",
            props=(
                bc_id(),
                bp("code", required=True, max_length=10),
                bp("displayName", max_length=100),
                *_extra,
                bc_modified(),
            ),
        )
    )

# -- companion: BC master data that API v2.0 lacks ---------------------------------------------------
# The companion API models a custom API page set (api/<publisher>/<group>/<version>) in the same BC
# environment; its enums are NAV enums too.

register(
    EntitySet(
        service="companion",
        name="resources",
        type_name="resource",
        key="id",
        modified_prop="lastModifiedDateTime",
        props=(
            bc_id(),
            bp("number", max_length=20),
            bp("displayName", max_length=100),
            be("type", "resourceType", enum_values("Person", "Machine")),
            bp("baseUnitOfMeasureCode", max_length=10),
            bp("unitPrice", D),
            bp("unitCost", D),
            bp("capacity", D, read_only=True),  # FlowField in BC (sum of capacity entries)
            bp("vendorNumber", max_length=20),
            bp("blocked", B),
            bc_modified(),
        ),
    )
)

register(
    EntitySet(
        service="companion",
        name="customerPriceGroups",
        type_name="customerPriceGroup",
        key="id",
        modified_prop="lastModifiedDateTime",
        props=(
            bc_id(),
            bp("code", required=True, max_length=10),
            bp("description", max_length=100),
            bp("currencyCode", max_length=10),
            bc_modified(),
        ),
    )
)

register(
    EntitySet(
        service="companion",
        name="salesPrices",
        type_name="salesPrice",
        key="id",
        modified_prop="lastModifiedDateTime",
        props=(
            bc_id(),
            bp("itemNumber", required=True, max_length=20),
            be(
                "salesType",
                "salesPriceType",
                enum_values("Customer", "Customer Price Group", "All Customers", "Campaign"),
            ),
            bp("salesCode", max_length=20),
            bp("currencyCode", max_length=10),
            bp("startingDate", DATE),
            bp("endingDate", DATE),
            bp("unitOfMeasureCode", max_length=10),
            bp("minimumQuantity", D),
            bp("unitPrice", D),
            bc_modified(),
        ),
    )
)

# -- companion: integration tables 5331/5335/5336/5338/5339 (integration-model.md section 3) ---------

SYNCH_RESULT = enum_values(" ", "Success", "Failure")
DIRECTION = enum_values("Bidirectional", "ToIntegrationTable", "FromIntegrationTable")

register(
    EntitySet(
        service="companion",
        name="crmIntegrationRecords",
        type_name="crmIntegrationRecord",
        key="id",
        # PATCH is allowed so a client can move timestamps/results or clear ``skipped`` (Retry), as the
        # Coupled Data Synchronization Errors page does in BC.
        methods=frozenset({"GET", "POST", "PATCH", "DELETE"}),
        props=(
            bc_id(),
            bp("crmId", G, required=True),
            bp("integrationId", G, required=True),
            bp("tableId", I32, required=True),
            bp("lastSynchModifiedOn", DT),
            bp("lastSynchCrmModifiedOn", DT),
            be("lastSynchResult", "integrationSynchResult", SYNCH_RESULT),
            be("lastSynchCrmResult", "integrationSynchResult", SYNCH_RESULT),
            bp("lastSynchJobId", G),
            bp("lastSynchCrmJobId", G),
            bp("skipped", B),
            bp("statisticsUploaded", B),
        ),
    )
)

register(
    EntitySet(
        service="companion",
        name="integrationTableMappings",
        type_name="integrationTableMapping",
        key="id",
        methods=frozenset({"GET"}),
        props=(
            bc_id(),
            bp("name", max_length=20),
            bp("tableId", I32),
            bp("integrationTableId", I32),
            bp("tableName", max_length=250),  # BC table caption
            bp("integrationTableName", max_length=250),  # Dataverse logical name
            be("direction", "integrationTableMappingDirection", DIRECTION),
            bp("tableFilter"),
            bp("integrationTableFilter"),
            bp("synchOnlyCoupledRecords", B, default=True),
            bp("dependencyFilter", max_length=250),
            be(
                "deletionConflictResolution",
                "integrationDeletionConflictResolution",
                enum_values("None", "Restore Records", "Remove Coupling"),
            ),
            be(
                "updateConflictResolution",
                "integrationUpdateConflictResolution",
                enum_values("None", "Send Update to Integration", "Get Update from Integration"),
            ),
            bp("createNewInCaseOfNoMatch", B),
            bp("synchAfterBulkCoupling", B),
            # Watermarks keep BC's naming trap (integration-model 3.2): synchModifiedOnFilter holds the
            # latest Dataverse modifiedon, synchIntTblModOnFltr the latest BC SystemModifiedAt.
            bp("synchModifiedOnFilter", DT),
            bp("synchIntTblModOnFltr", DT),
            bp("integrationTableUidFieldName", max_length=80),
            bp("intTblModifiedOnFieldName", max_length=80),
        ),
    )
)

register(
    EntitySet(
        service="companion",
        name="integrationFieldMappings",
        type_name="integrationFieldMapping",
        key="id",
        methods=frozenset({"GET"}),
        props=(
            bc_id(),
            bp("no", I32),
            bp("integrationTableMappingName", max_length=20),
            bp("fieldNo", I32),
            bp("integrationTableFieldNo", I32),
            bp("fieldName", max_length=80),  # BC field caption, e.g. "Phone No."
            bp("integrationFieldName", max_length=80),  # Dataverse attribute logical name
            be("direction", "integrationTableMappingDirection", DIRECTION),
            bp("constantValue", max_length=100),
            bp("validateField", B),
            bp("validateIntegrationTableField", B),
            bp("clearValueOnFailedSync", B),
            be("status", "integrationFieldMappingStatus", enum_values("Enabled", "Disabled")),
            bp("notNull", B),
            bp("transformationRule", max_length=20),
            bp("useForMatchBasedCoupling", B),
            bp("caseSensitiveMatching", B),
            bp("matchPriority", I32),
        ),
    )
)

register(
    EntitySet(
        service="companion",
        name="integrationSynchJobs",
        type_name="integrationSynchJob",
        key="id",
        methods=frozenset({"GET", "POST"}),
        props=(
            bc_id(),
            bp("startDateTime", DT),
            bp("finishDateTime", DT),
            bp("message", max_length=250),
            bp("integrationTableMappingName", max_length=20),
            bp("inserted", I32),
            bp("modified", I32),
            bp("deleted", I32),
            bp("unchanged", I32),
            bp("skipped", I32),
            bp("failed", I32),
            bp("uncoupled", I32),
            bp("coupled", I32),
            be("synchDirection", "integrationTableMappingDirection", DIRECTION),
            be("type", "integrationSynchJobType", enum_values("Synchronization", "Uncoupling", "Coupling")),
            bp("jobQueueLogEntryNo", I32),
        ),
    )
)

register(
    EntitySet(
        service="companion",
        name="integrationSynchJobErrors",
        type_name="integrationSynchJobError",
        key="id",
        methods=frozenset({"GET", "POST"}),
        props=(
            bc_id(),
            bp("no", I32),
            bp("integrationSynchJobId", G, required=True),
            bp("sourceRecordId", max_length=250),  # BC RecordId rendered as text, e.g. "Customer: 10000"
            bp("destinationRecordId", max_length=250),
            bp("message", max_length=250),
            bp("dateTime", DT),
            bp("errorMessage", max_length=2048),
            bp("exceptionDetail"),
        ),
    )
)

# --------------------------------------------------------------------------------------------------
# Dataverse Web API v9.2
# --------------------------------------------------------------------------------------------------

# Primary key of every served table: needed to build the $expand navigation of each lookup.
DV_KEYS = {
    "systemusers": "systemuserid",
    "accounts": "accountid",
    "contacts": "contactid",
    "transactioncurrencies": "transactioncurrencyid",
    "uomschedules": "uomscheduleid",
    "uoms": "uomid",
    "products": "productid",
    "pricelevels": "pricelevelid",
    "productpricelevels": "productpricelevelid",
    "opportunities": "opportunityid",
    "invoices": "invoiceid",
    "invoicedetails": "invoicedetailid",
    "bcbi_companies": "bcbi_companyid",
}

ACTIVE_INACTIVE_STATE = ((0, "Active"), (1, "Inactive"))
ACTIVE_INACTIVE_STATUS = ((1, "Active"), (2, "Inactive"))
PAYMENT_TERMS = ((1, "Net 30"), (2, "2% 10, Net 30"), (3, "Net 45"), (4, "Net 60"))
FREIGHT_TERMS = ((1, "FOB"), (2, "No Charge"))
SHIPPING_METHODS = (
    (1, "Airborne"),
    (2, "DHL"),
    (3, "FedEx"),
    (4, "UPS"),
    (5, "Postal Mail"),
    (6, "Full Load"),
    (7, "Will Call"),
)
CUSTOMER_TYPES = (
    (1, "Competitor"),
    (2, "Consultant"),
    (3, "Customer"),
    (4, "Investor"),
    (5, "Partner"),
    (6, "Influencer"),
    (7, "Press"),
    (8, "Prospect"),
    (9, "Reseller"),
    (10, "Supplier"),
    (11, "Vendor"),
    (12, "Other"),
)
PRODUCT_TYPES = ((1, "Sales Inventory"), (2, "Miscellaneous Charges"), (3, "Services"), (4, "Flat Fees"))


def col(name: str, edm: str = S, **kw: object) -> Prop:
    return Prop(name, edm, **kw)  # type: ignore[arg-type]


def choice(name: str, options: tuple[tuple[int, str], ...], **kw: object) -> Prop:
    """Dataverse Picklist/State/Status column (Edm.Int32 with labels for FormattedValue)."""
    return Prop(name, I32, options=options, **kw)  # type: ignore[arg-type]


def state(
    states: tuple[tuple[int, str], ...] = ACTIVE_INACTIVE_STATE,
    statuses: tuple[tuple[int, str], ...] = ACTIVE_INACTIVE_STATUS,
) -> tuple[Prop, Prop]:
    """statecode and statuscode with their first option as the create default (statecode is not valid
    for create in Dataverse; the API layer enforces that, the schema keeps it writable for PATCH)."""
    return (
        choice("statecode", states, default=states[0][0]),
        choice("statuscode", statuses, default=statuses[0][0]),
    )


def address1(prefix: str = "address1_") -> tuple[Prop, ...]:
    """Dataverse address block. Choice (UNVERIFIED lengths): postalcode 20, stateorprovince 50."""
    lengths = {
        "name": 200,
        "line1": 250,
        "line2": 250,
        "line3": 250,
        "city": 80,
        "stateorprovince": 50,
        "postalcode": 20,
        "country": 80,
        "county": 50,
    }
    return tuple(col(f"{prefix}{part}", max_length=n) for part, n in lengths.items())


def dv(
    name: str,
    type_name: str,
    primary_name: str,
    props: Iterable[Prop],
    lookups: Iterable[tuple[str, str, str]] = (),
    *,
    value_props: Iterable[str] = (),
    navs: Iterable[Nav] = (),
) -> EntitySet:
    """Register a Dataverse table: key, given columns, lookups (nav, column, target) with their
    ``_<column>_value`` props and $expand navs, read-only ``value_props`` of lookups to tables the sandbox
    does not serve, and the common system columns."""
    key = DV_KEYS[name]
    lks = tuple(Lookup(nav, column, target) for nav, column, target in lookups)
    value_names = list(dict.fromkeys([lk.value_prop for lk in lks] + [f"_{c}_value" for c in value_props]))
    common = (
        Prop("createdon", DT, read_only=True),
        Prop("modifiedon", DT, read_only=True),
        Prop("_createdby_value", G, read_only=True),
        Prop("_modifiedby_value", G, read_only=True),
        Prop("versionnumber", I64, read_only=True),
    )
    return register(
        EntitySet(
            service="dataverse",
            name=name,
            type_name=type_name,
            key=key,
            props=(Prop(key, G), *props, *(Prop(v, G, read_only=True) for v in value_names), *common),
            lookups=lks,
            navs=(
                *(Nav(lk.nav, lk.target, lk.value_prop, DV_KEYS[lk.target]) for lk in lks),
                *navs,
            ),
            company_scoped=False,
            change_tracking=True,
            primary_name=primary_name,
            logical_name=type_name,
            modified_prop="modifiedon",
            created_prop="createdon",
        )
    )


OWNER = ("ownerid", "ownerid", "systemusers")  # teams are not served: ownerid only targets systemusers
CURRENCY = ("transactioncurrencyid", "transactioncurrencyid", "transactioncurrencies")
COMPANY = ("bcbi_companyid", "bcbi_companyid", "bcbi_companies")


def customer_lookup(column: str) -> tuple[tuple[str, str, str], ...]:
    """Polymorphic Customer lookup: one column, navs ``<column>_account`` and ``<column>_contact``."""
    return ((f"{column}_account", column, "accounts"), (f"{column}_contact", column, "contacts"))


dv(
    "systemusers",
    "systemuser",
    "fullname",
    (
        # Choice (UNVERIFIED lengths): names 64, fullname 200 (computed from first/last name).
        col("firstname", max_length=64),
        col("lastname", max_length=64),
        col("fullname", read_only=True, max_length=200),
        col("internalemailaddress", required=True, max_length=100),
        col("domainname", max_length=1024),
        col("mobilephone", max_length=64),
        col("title", max_length=128),
        col("isdisabled", B, default=False),
        col("islicensed", B, default=True),
        col("isintegrationuser", B, default=False),
        col("azureactivedirectoryobjectid", G),
        col("applicationid", G),
    ),
)

dv(
    "accounts",
    "account",
    "name",
    (
        col("name", max_length=160),
        col("accountnumber", max_length=20),
        col("telephone1", max_length=50),  # Choice: 50 (UNVERIFIED in the reference)
        col("fax", max_length=50),
        col("websiteurl", max_length=200),
        col("emailaddress1", max_length=100),
        col("emailaddress2", max_length=100),
        col("emailaddress3", max_length=100),
        *address1(),
        col("address1_latitude", DBL),
        col("address1_longitude", DBL),
        col("address1_primarycontactname", max_length=100),
        choice("address1_freighttermscode", FREIGHT_TERMS),
        choice("address1_shippingmethodcode", SHIPPING_METHODS),
        choice("paymenttermscode", PAYMENT_TERMS),
        choice("customertypecode", CUSTOMER_TYPES),
        col("creditlimit", D),
        col("creditonhold", B, default=False),
        col("revenue", D),
        col("description", max_length=2000),
        *state(),
    ),
    (
        CURRENCY,
        ("primarycontactid", "primarycontactid", "contacts"),
        ("parentaccountid", "parentaccountid", "accounts"),
        ("defaultpricelevelid", "defaultpricelevelid", "pricelevels"),
        OWNER,
        COMPANY,
    ),
)

dv(
    "contacts",
    "contact",
    "fullname",
    (
        # Choice (UNVERIFIED lengths): first/middle/last 50, fullname 160 (computed, read-only).
        col("firstname", max_length=50),
        col("middlename", max_length=50),
        col("lastname", max_length=50),
        col("fullname", read_only=True, max_length=160),
        col("jobtitle", max_length=100),
        col("telephone1", max_length=50),
        col("mobilephone", max_length=50),
        col("pager", max_length=50),
        col("fax", max_length=50),
        col("emailaddress1", max_length=100),
        col("emailaddress2", max_length=100),
        col("websiteurl", max_length=200),
        *address1(),
        col("description", max_length=2000),
        *state(),
    ),
    (*customer_lookup("parentcustomerid"), CURRENCY, OWNER, COMPANY),
)

dv(
    "transactioncurrencies",
    "transactioncurrency",
    "currencyname",
    (
        col("currencyname", required=True, max_length=100),
        # isocurrencycode is create-only in Dataverse (not valid for update); the API layer enforces it.
        col("isocurrencycode", required=True, max_length=5),
        col("currencysymbol", required=True, max_length=10),
        col("currencyprecision", I32, required=True),
        col("exchangerate", D, required=True),
        *state(),
    ),
)

dv(
    "uomschedules",
    "uomschedule",
    "name",
    (
        col("name", required=True, max_length=200),
        col("baseuomname", max_length=100),
        col("description", max_length=2000),
        *state(),
    ),
)

dv(
    "uoms",
    "uom",
    "name",
    (
        col("name", required=True, max_length=100),
        col("quantity", D, default=1),
        col("isschedulebaseuom", B, read_only=True, default=False),
    ),
    (("baseuom", "baseuom", "uoms"), ("uomscheduleid", "uomscheduleid", "uomschedules")),
)

dv(
    "products",
    "product",
    "name",
    (
        col("name", max_length=100),
        col("productnumber", required=True, max_length=100),
        col("description", max_length=2000),
        col("price", D),
        col("standardcost", D),
        col("currentcost", D),
        col("stockvolume", D),
        col("stockweight", D),
        col("vendorid", max_length=100),  # a string (vendor number), not a lookup
        col("vendorname", max_length=100),
        col("vendorpartnumber", max_length=100),
        col("quantityonhand", D),
        col("quantitydecimal", I32),
        choice("producttypecode", PRODUCT_TYPES, default=1),
        choice("productstructure", ((1, "Product"), (2, "Product Family"), (3, "Product Bundle")), default=1),
        col("isstockitem", B, default=False),
        col("iskit", B, default=False),
        # Choice: new products start Active (an org with "create products in active state" on); a real
        # default org creates them as Draft (2/0).
        *state(
            ((0, "Active"), (1, "Retired"), (2, "Draft"), (3, "Under Revision")),
            ((1, "Active"), (0, "Draft"), (2, "Retired"), (3, "Under Revision")),
        ),
    ),
    (
        ("defaultuomid", "defaultuomid", "uoms"),
        ("defaultuomscheduleid", "defaultuomscheduleid", "uomschedules"),
        ("pricelevelid", "pricelevelid", "pricelevels"),
        CURRENCY,
        ("parentproductid", "parentproductid", "products"),
        COMPANY,
    ),
)

dv(
    "pricelevels",
    "pricelevel",
    "name",
    (
        col("name", required=True, max_length=100),
        col("description", max_length=2000),
        col("begindate", DATE),
        col("enddate", DATE),
        *state(statuses=((100001, "Active"), (100002, "Inactive"))),
    ),
    (CURRENCY, COMPANY),
)

ROUNDING = {
    "roundingpolicycode": ((1, "None"), (2, "Up"), (3, "Down"), (4, "To Nearest")),
    "roundingoptioncode": ((1, "Ends in"), (2, "Multiple of")),
}

dv(
    "productpricelevels",
    "productpricelevel",
    # PrimaryNameAttribute per the table reference; not a Web API column (lookups to it carry no
    # formatted name).
    "productidname",
    (
        col("amount", D),
        col("percentage", D),
        choice(
            "pricingmethodcode",
            (
                (1, "Currency Amount"),
                (2, "Percent of List"),
                (3, "Percent Markup - Current Cost"),
                (4, "Percent Margin - Current Cost"),
                (5, "Percent Markup - Standard Cost"),
                (6, "Percent Margin - Standard Cost"),
            ),
            default=1,
        ),
        choice(
            "quantitysellingcode", ((1, "No Control"), (2, "Whole"), (3, "Whole and Fractional")), default=1
        ),
        *(choice(name, opts) for name, opts in ROUNDING.items()),
        col("roundingoptionamount", D),
        col("productnumber", read_only=True, max_length=100),
    ),
    (
        ("pricelevelid", "pricelevelid", "pricelevels"),
        ("productid", "productid", "products"),
        ("uomid", "uomid", "uoms"),
        ("uomscheduleid", "uomscheduleid", "uomschedules"),
        CURRENCY,
        COMPANY,
    ),
)

dv(
    "opportunities",
    "opportunity",
    "name",
    (
        col("name", max_length=300),
        col("description", max_length=2000),
        col("estimatedvalue", D),
        col("actualvalue", D),
        col("estimatedclosedate", DATE),
        col("actualclosedate", DATE),
        col("closeprobability", I32),
        col("totalamount", D),
        *state(
            ((0, "Open"), (1, "Won"), (2, "Lost")),
            # Choice: 5 Out-Sold (UNVERIFIED in the reference; the standard label).
            ((1, "In Progress"), (2, "On Hold"), (3, "Won"), (4, "Canceled"), (5, "Out-Sold")),
        ),
    ),
    (
        *customer_lookup("customerid"),
        ("parentaccountid", "parentaccountid", "accounts"),
        ("parentcontactid", "parentcontactid", "contacts"),
        ("pricelevelid", "pricelevelid", "pricelevels"),
        CURRENCY,
        OWNER,
        COMPANY,
    ),
)

dv(
    "invoices",
    "invoice",
    "name",
    (
        col("name", max_length=300),
        # Choice: invoicenumber is SystemRequired but auto-numbered when omitted (API layer), so not
        # "required" here.
        col("invoicenumber", max_length=100),
        col("description", max_length=2000),
        col("duedate", DATE),
        col("datedelivered", DATE),
        *address1("billto_"),
        col("billto_telephone", max_length=50),
        col("billto_fax", max_length=50),
        *address1("shipto_"),
        col("shipto_telephone", max_length=50),
        col("shipto_fax", max_length=50),
        col("discountamount", D),
        col("discountpercentage", D),
        col("freightamount", D),
        col("totalamount", D),
        col("totallineitemamount", D),
        col("totallineitemdiscountamount", D),
        col("totaltax", D),
        col("totaldiscountamount", D),
        col("totalamountlessfreight", D),
        col("exchangerate", D),
        col("ispricelocked", B, default=False),
        choice("paymenttermscode", PAYMENT_TERMS),
        choice("shippingmethodcode", SHIPPING_METHODS),
        col("emailaddress", max_length=100),
        *state(
            ((0, "Active"), (1, "Closed (deprecated)"), (2, "Paid"), (3, "Canceled")),
            # Choice: statuscode 1 = "New" (UNVERIFIED label).
            (
                (1, "New"),
                (2, "Partially Shipped"),
                (3, "Canceled (deprecated)"),
                (4, "Billed"),
                (5, "Booked"),
                (6, "Installed"),
                (7, "Paid in Full (deprecated)"),
                (100001, "Complete"),
                (100002, "Partial"),
                (100003, "Canceled"),
            ),
        ),
    ),
    (
        *customer_lookup("customerid"),
        ("pricelevelid", "pricelevelid", "pricelevels"),
        CURRENCY,
        ("opportunityid", "opportunityid", "opportunities"),
        OWNER,
        COMPANY,
    ),
    # accountid/contactid are system-derived from customerid; salesorders are not served.
    value_props=("accountid", "contactid", "salesorderid"),
    navs=(Nav("invoice_details", "invoicedetails", "invoiceid", "_invoiceid_value", many=True),),
)

dv(
    "invoicedetails",
    "invoicedetail",
    "invoicedetailname",
    (
        col("invoicedetailname", max_length=850),
        col("productdescription", max_length=850),
        col("isproductoverridden", B, default=False),
        col("ispriceoverridden", B, default=False),
        col("quantity", D),
        col("priceperunit", D),
        col("baseamount", D),
        col("extendedamount", D),
        col("manualdiscountamount", D),
        col("volumediscountamount", D),
        col("tax", D),
        col("exchangerate", D),
        col("lineitemnumber", I32),
        col("sequencenumber", I32),
        col("description", max_length=2000),
        col("actualdeliveryon", DATE),
        col("shipto_name", max_length=200),
        col("shipto_line1", max_length=250),
        col("shipto_line2", max_length=250),
        col("shipto_city", max_length=80),
        col("shipto_stateorprovince", max_length=50),
        col("shipto_postalcode", max_length=20),
        col("shipto_country", max_length=80),
        choice(
            "producttypecode",
            (
                (1, "Product"),
                (2, "Bundle"),
                (3, "Required Bundle Product"),
                (4, "Optional Bundle Product"),
                (5, "Project-based Service"),
            ),
            default=1,
        ),
        choice(
            "propertyconfigurationstatus", ((0, "Edit"), (1, "Rectify"), (2, "Not Configured")), default=2
        ),
    ),
    (
        ("invoiceid", "invoiceid", "invoices"),
        ("productid", "productid", "products"),
        ("uomid", "uomid", "uoms"),
        CURRENCY,
    ),
    value_props=("ownerid",),  # owned through the parent invoice
)

dv(
    "bcbi_companies",
    "bcbi_company",
    "bcbi_name",
    (
        col("bcbi_name", max_length=100),
        col("bcbi_externalid", max_length=36),  # BC Company.SystemId, lower-case, no braces
        *state(),
    ),
    (OWNER,),
    value_props=("bcbi_defaultowningteam",),  # lookup to team: teams are not served
)
