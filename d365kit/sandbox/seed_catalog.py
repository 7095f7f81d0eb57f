"""The twelve default integration table mappings as the seed writes them to the companion tables 5335/5336.

Facts from docs/reconcile.md, "BC integration facts" (Person ownership model, Unit Group
Mapping off, legacy pricing). Each field row also names the API property of each side (``bc`` = BC API
v2.0 / companion property, None when the BC field is not exposed by any API the sandbox serves) so the
seed can keep coupled pairs in sync and report drifted fields by their wire names.

Filters are stored as BC table-view text (``WHERE(Field=FILTER(value),...)``, captions instead of field
numbers). Choice: BC stores them as BLOBs with field numbers; captions keep them readable and the
company-id placeholder ``{own}`` is replaced by the seeded company's bcbi_companyid.
"""

from __future__ import annotations

from dataclasses import dataclass

BLANK = "00000000-0000-0000-0000-000000000000"
TO, FROM, BIDI = "ToIntegrationTable", "FromIntegrationTable", "Bidirectional"
COMPANY_FILTER = "CompanyId=FILTER({own}|{" + BLANK + "})"


@dataclass(frozen=True)
class Field:
    caption: str  # BC field caption ("" = constant written to Dataverse only)
    dv: str  # Dataverse attribute ("" = constant written to BC only)
    direction: str
    bc: str | None = None  # API property of the BC side
    const: str = ""
    validate: bool = True
    match: bool = False
    clear_on_fail: bool = False
    not_null: bool = False


@dataclass(frozen=True)
class Mapping:
    name: str
    table_id: int
    table_name: str
    int_table_id: int
    dv_logical: str
    dv_set: str
    dv_key: str
    bc_service: str  # "bc" or "companion"
    bc_set: str
    direction: str
    table_filter: str
    int_table_filter: str
    dependency: str
    fields: tuple[Field, ...]
    only_coupled: bool = True
    job_every_min: int | None = 30  # None: runs inside another mapping's job (JOB_OF)
    after_bulk_coupling: bool = False
    create_new: bool = False

    @property
    def source_sides(self) -> tuple[str, ...]:
        return {TO: ("bc",), FROM: ("dataverse",), BIDI: ("bc", "dataverse")}[self.direction]


def _f(caption: str, dv: str, direction: str, bc: str | None = None, **kw: object) -> Field:
    return Field(caption, dv, direction, bc, **kw)  # type: ignore[arg-type]


def _owner() -> tuple[Field, Field]:
    return (
        _f("", "owneridtype", TO, const="systemuser", validate=False),
        _f("Salesperson Code", "ownerid", TO, "salespersonCode", not_null=True),
    )


def _address(direction: str, with_country_validate: bool = False) -> tuple[Field, ...]:
    return (
        _f("Address", "address1_line1", direction, "addressLine1"),
        _f("Address 2", "address1_line2", direction, "addressLine2"),
        _f("Post Code", "address1_postalcode", direction, "postalCode"),
        _f("City", "address1_city", direction, "city"),
        _f("Country/Region Code", "address1_country", direction, "country", validate=with_country_validate),
        _f("County", "address1_stateorprovince", direction, "state"),
    )


MAPPINGS: tuple[Mapping, ...] = (
    Mapping(
        "SALESPEOPLE",
        13,
        "Salesperson/Purchaser",
        5340,
        "systemuser",
        "systemusers",
        "systemuserid",
        "bc",
        "salespeoplePurchasers",
        FROM,
        "",
        "WHERE(IsDisabled=FILTER(No),IsLicensed=FILTER(Yes),IsIntegrationUser=FILTER(No))",
        "",
        (
            _f("E-Mail", "internalemailaddress", FROM, "email"),
            _f("Name", "fullname", FROM, "displayName"),
            _f("Phone No.", "mobilephone", FROM, "phoneNo"),
        ),
    ),
    Mapping(
        "CUSTOMER",
        18,
        "Customer",
        5341,
        "account",
        "accounts",
        "accountid",
        "bc",
        "customers",
        BIDI,
        "WHERE(Blocked=FILTER(' '))",
        f"WHERE(StateCode=FILTER(Active),CustomerTypeCode=FILTER(Customer),{COMPANY_FILTER})",
        "SALESPEOPLE|CURRENCY|PAYMENT TERMS|SHIPMENT METHOD|SHIPPING AGENT",
        (
            *_owner(),
            _f("Name", "name", BIDI, "displayName"),
            _f("Contact", "address1_primarycontactname", BIDI, validate=False),
            *_address(BIDI),
            _f("Currency Code", "transactioncurrencyid", BIDI, "currencyCode"),
            _f("E-Mail", "emailaddress1", BIDI, "email"),
            _f("Fax No.", "fax", BIDI),
            _f("Home Page", "websiteurl", BIDI, "website"),
            _f("Phone No.", "telephone1", BIDI, "phoneNumber"),
            _f("Shipment Method Code", "address1_freighttermscode", BIDI, "shipmentMethodId"),
            _f("Shipping Agent Code", "address1_shippingmethodcode", BIDI),
            _f("Payment Terms Code", "paymenttermscode", BIDI, "paymentTermsId"),
            _f("Credit Limit (LCY)", "creditlimit", TO, "creditLimit"),
            _f("Primary Contact No.", "primarycontactid", BIDI, clear_on_fail=True),
        ),
    ),
    Mapping(
        "CONTACT",
        5050,
        "Contact",
        5342,
        "contact",
        "contacts",
        "contactid",
        "bc",
        "contacts",
        BIDI,
        "WHERE(Type=FILTER(Person),Company No.=FILTER(<>''))",
        "WHERE(ParentCustomerId=FILTER(<>{" + BLANK + "}),StateCode=FILTER(Active),"
        "ParentCustomerIdType=FILTER(account)," + COMPANY_FILTER + ")",
        "CUSTOMER|VENDOR",
        (
            _f("", "owneridtype", TO, const="systemuser", validate=False),
            _f("Salesperson Code", "ownerid", TO, not_null=True),
            _f("Currency Code", "transactioncurrencyid", BIDI),
            *_address(BIDI),
            _f("E-Mail", "emailaddress1", BIDI, "email"),
            _f("Fax No.", "fax", BIDI),
            _f("First Name", "firstname", BIDI),
            _f("Middle Name", "middlename", BIDI),
            _f("Surname", "lastname", BIDI),
            _f("Home Page", "websiteurl", BIDI, "website"),
            _f("Mobile Phone No.", "mobilephone", BIDI, "mobilePhoneNumber"),
            _f("Pager", "pager", BIDI),
            _f("Phone No.", "telephone1", BIDI, "phoneNumber"),
            _f("Type", "", FROM, const="Person"),
            _f("", "parentcustomeridtype", TO, const="account", validate=False),
        ),
    ),
    Mapping(
        "CURRENCY",
        4,
        "Currency",
        5345,
        "transactioncurrency",
        "transactioncurrencies",
        "transactioncurrencyid",
        "bc",
        "currencies",
        TO,
        "",
        "",
        "",
        (
            _f("Code", "isocurrencycode", TO, "code", match=True),
            _f("Symbol", "currencysymbol", TO, "symbol"),
            _f("Description", "currencyname", TO, "displayName"),
        ),
        after_bulk_coupling=True,
        create_new=True,
    ),
    Mapping(
        "UNIT OF MEASURE",
        204,
        "Unit of Measure",
        5362,
        "uomschedule",
        "uomschedules",
        "uomscheduleid",
        "bc",
        "unitsOfMeasure",
        TO,
        "",
        "",
        "",
        (_f("Code", "baseuomname", TO, "code", match=True),),
        after_bulk_coupling=True,
        create_new=True,
    ),
    Mapping(
        "ITEM-PRODUCT",
        27,
        "Item",
        5348,
        "product",
        "products",
        "productid",
        "bc",
        "items",
        BIDI,
        "WHERE(Blocked=FILTER(No))",
        f"WHERE(ProductTypeCode=FILTER(SalesInventory),StateCode=FILTER(Active),{COMPANY_FILTER})",
        "UNIT OF MEASURE",
        (
            _f("No.", "productnumber", TO, "number"),
            _f("Description", "name", BIDI, "displayName"),
            _f("Unit Price", "price", TO, "unitPrice"),
            _f("Unit Cost", "standardcost", TO, "unitCost"),
            _f("Unit Cost", "currentcost", TO, "unitCost"),
            _f("Unit Volume", "stockvolume", TO),
            _f("Gross Weight", "stockweight", TO),
            _f("Vendor No.", "vendorid", TO),
            _f("Vendor Item No.", "vendorpartnumber", TO),
            _f("Inventory", "quantityonhand", TO, "inventory"),
            _f("Base Unit of Measure", "defaultuomscheduleid", BIDI, "baseUnitOfMeasureCode"),
        ),
    ),
    Mapping(
        "RESOURCE-PRODUCT",
        156,
        "Resource",
        5348,
        "product",
        "products",
        "productid",
        "companion",
        "resources",
        BIDI,
        "WHERE(Blocked=FILTER(No))",
        f"WHERE(ProductTypeCode=FILTER(Services),StateCode=FILTER(Active),{COMPANY_FILTER})",
        "UNIT OF MEASURE",
        (
            _f("No.", "productnumber", TO, "number"),
            _f("Name", "name", BIDI, "displayName"),
            _f("Unit Price", "price", TO, "unitPrice"),
            _f("Unit Cost", "standardcost", TO, "unitCost"),
            _f("Unit Cost", "currentcost", TO, "unitCost"),
            _f("Vendor No.", "vendorid", TO, "vendorNumber"),
            _f("Capacity", "quantityonhand", TO, "capacity"),
        ),
    ),
    Mapping(
        "CUSTPRCGRP-PRICE",
        6,
        "Customer Price Group",
        5346,
        "pricelevel",
        "pricelevels",
        "pricelevelid",
        "companion",
        "customerPriceGroups",
        TO,
        "",
        f"WHERE({COMPANY_FILTER})",
        "CURRENCY|ITEM-PRODUCT",
        (_f("Code", "name", TO, "code"),),
    ),
    Mapping(
        "SALESPRC-PRODPRICE",
        7002,
        "Sales Price",
        5347,
        "productpricelevel",
        "productpricelevels",
        "productpricelevelid",
        "companion",
        "salesPrices",
        TO,
        "WHERE(Sales Type=FILTER(Customer Price Group),Sales Code=FILTER(<>''))",
        "",
        "CUSTPRCGRP-PRICE|ITEM-PRODUCT",
        (
            _f("Sales Code", "pricelevelid", TO, "salesCode"),
            _f("Item No.", "productid", TO, "itemNumber"),
            _f("Item No.", "productnumber", TO, "itemNumber"),
            _f("Currency Code", "transactioncurrencyid", TO, "currencyCode"),
            _f("", "pricingmethodcode", TO, const="CurrencyAmount"),
            _f("Unit Price", "amount", TO, "unitPrice"),
        ),
        only_coupled=False,
    ),
    Mapping(
        "OPPORTUNITY",
        5092,
        "Opportunity",
        5343,
        "opportunity",
        "opportunities",
        "opportunityid",
        "bc",
        "opportunities",
        BIDI,
        "WHERE(Status=FILTER(Not Started|In Progress))",
        f"WHERE({COMPANY_FILTER})",
        "CONTACT",
        (
            _f("Description", "name", BIDI, "description"),
            _f("Contact No.", "parentcontactid", TO, "contactNumber"),
            _f("Contact Company No.", "parentaccountid", TO),
            *_owner(),
            _f("Estimated Value (LCY)", "estimatedvalue", TO, "estimatedValue"),
            _f("Estimated Closing Date", "estimatedclosedate", TO, "estimatedClosingDate"),
        ),
        only_coupled=False,
        job_every_min=240,  # no job queue entry: Choice: a manual "Synchronize Now" every 4 hours
    ),
    Mapping(
        "POSTEDSALESINV-INV",
        112,
        "Sales Invoice Header",
        5355,
        "invoice",
        "invoices",
        "invoiceid",
        "bc",
        "salesInvoices",
        TO,
        "",
        f"WHERE({COMPANY_FILTER})",
        "ITEM-PRODUCT|RESOURCE-PRODUCT|OPPORTUNITY",
        (
            _f("No.", "invoicenumber", TO, "number"),
            _f("", "owneridtype", TO, const="systemuser", validate=False),
            _f("Salesperson Code", "ownerid", TO, "salesperson", not_null=True),
            _f("Currency Code", "transactioncurrencyid", TO, "currencyCode"),
            _f("Due Date", "duedate", TO, "dueDate"),
            _f("Ship-to Name", "shipto_name", TO, "shipToName"),
            _f("Ship-to Address", "shipto_line1", TO, "shipToAddressLine1"),
            _f("Ship-to Address 2", "shipto_line2", TO, "shipToAddressLine2"),
            _f("Ship-to City", "shipto_city", TO, "shipToCity"),
            _f("Ship-to Country/Region Code", "shipto_country", TO, "shipToCountry"),
            _f("Ship-to Post Code", "shipto_postalcode", TO, "shipToPostCode"),
            _f("Ship-to County", "shipto_stateorprovince", TO, "shipToState"),
            _f("Shipment Date", "datedelivered", TO),
            _f("Bill-to Name", "billto_name", TO, "billToName"),
            _f("Bill-to Address", "billto_line1", TO, "billToAddressLine1"),
            _f("Bill-to Address 2", "billto_line2", TO, "billToAddressLine2"),
            _f("Bill-to City", "billto_city", TO, "billToCity"),
            _f("Bill-to Country/Region Code", "billto_country", TO, "billToCountry"),
            _f("Bill-to Post Code", "billto_postalcode", TO, "billToPostCode"),
            _f("Bill-to County", "billto_stateorprovince", TO, "billToState"),
            _f("Amount", "totalamountlessfreight", TO, "totalAmountExcludingTax"),
            _f("Amount Including VAT", "totalamount", TO, "totalAmountIncludingTax"),
            _f("Invoice Discount Amount", "discountamount", TO, "discountAmount"),
            _f("Shipping Agent Code", "shippingmethodcode", TO),
            _f("Payment Terms Code", "paymenttermscode", TO, "paymentTermsId"),
            _f("Work Description", "description", TO, validate=False),
        ),
    ),
    Mapping(
        "POSTEDSALESLINE-INV",
        113,
        "Sales Invoice Line",
        5356,
        "invoicedetail",
        "invoicedetails",
        "invoicedetailid",
        "bc",
        "salesInvoiceLines",
        TO,
        "",
        "",
        "POSTEDSALESINV-INV",
        (
            _f("Quantity", "quantity", TO, "quantity"),
            _f("Line Discount Amount", "manualdiscountamount", TO, "discountAmount"),
            _f("Unit Price", "priceperunit", TO, "unitPrice"),
            _f("", "ispriceoverridden", TO, const="1"),
            _f("Amount", "baseamount", TO, "amountExcludingTax"),
            _f("Amount Including VAT", "extendedamount", TO, "amountIncludingTax"),
        ),
        only_coupled=False,
        job_every_min=None,
    ),
)

BY_NAME = {m.name: m for m in MAPPINGS}
# Invoice lines have no job of their own: they are written by the header's job (docs/reconcile.md#bc-integration-facts).
JOB_OF = {"POSTEDSALESLINE-INV": "POSTEDSALESINV-INV"}
