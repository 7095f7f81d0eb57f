"""Dataverse table definitions (metadata) of the served tables, as objects of the Web API's metadata types.

Pure functions of ``schema.py`` (no I/O): ``model()`` builds, once, every ``EntityMetadata`` with its
``Attributes`` (typed: ``StringAttributeMetadata``, ``PicklistAttributeMetadata`` ...), ``Keys``
(``EntityKeyMetadata``), one-to-many and many-to-one relationships (``OneToManyRelationshipMetadata``,
from the lookups) and the global option sets. ``metadata_api.py`` answers the Web API's metadata paths
(``EntityDefinitions``, ``RelationshipDefinitions``, ``GlobalOptionSetDefinitions``) from these objects.

Where a metadata field of ``schema.Prop``/``schema.EntitySet`` is None (the rows of
``tables/dataverse.toml`` state what Microsoft publishes; what they leave out is derived here):

- Table facts (SchemaName, display names, ObjectTypeCode, PrimaryImageAttribute, OwnershipType) come from
  ``TABLES``, the published values of the standard tables (entity reference pages). A table not listed
  gets SchemaName = its logical name with each ``_``-separated part after the publisher prefix
  capitalised, an ObjectTypeCode from 10000 up (custom tables) and an OwnershipType derived from its
  columns (``ownerid`` -> UserOwned, else OrganizationOwned).
- AttributeType from the EDM type: choices are Picklist (``statecode`` State, ``statuscode`` Status),
  Edm.Decimal is Money unless listed in ``DECIMAL_ATTRIBUTES``, long text (``MEMO_ATTRIBUTES`` or more
  than 4,000 characters) is Memo, lookups are Lookup/Customer (account+contact)/Owner (``ownerid``).
- SchemaName of a column: ``COLUMN_SCHEMA_NAMES`` for the common system columns, else the logical name with
  the first letter after the start and after each ``_`` upper-cased (``address1_city`` -> ``Address1_City``;
  real names capitalise every word, which the logical name does not record: only
  ``SchemaName.lower() == LogicalName`` is guaranteed). DisplayName: ``display_name``, else the SchemaName.
- Relationship SchemaNames of lookups are ``<referenced>_<referencing>_<column>`` (the real names are
  per-relationship and not derivable); ``ReferencedEntityNavigationPropertyName`` is the collection
  navigation the schema declares (``invoice_details``), else the SchemaName, as for custom relationships.

Labels have the documented shape: ``{"LocalizedLabels": [{Label, LanguageCode, IsManaged, MetadataId,
HasChanged}], "UserLocalizedLabel": {...}}``, language 1033. MetadataIds are uuid5 of the names, the same
on every start.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from d365kit.sandbox.schema import REGISTRIES, EntitySet, Prop

CRM = "Microsoft.Dynamics.CRM"
LANGUAGE = 1033

# Same namespace as before the metadata API grew: MetadataIds stay what clients may have cached.
_METADATA_NS = uuid.uuid5(uuid.NAMESPACE_URL, "https://d365kit.local/sandbox/metadata")

# Edm.Decimal columns that are Decimal (not Money) attributes in Dataverse; every other one is Money.
DECIMAL_ATTRIBUTES = frozenset(
    {
        "quantity",
        "exchangerate",
        "percentage",
        "discountpercentage",
        "stockvolume",
        "stockweight",
        "quantityonhand",
    }
)
MEMO_ATTRIBUTES = frozenset({"description"})

# Targets of lookup columns whose target table the sandbox does not serve (no Lookup in the schema).
UNSERVED_TARGETS = {
    "createdby": ("systemuser",),
    "modifiedby": ("systemuser",),
    "accountid": ("account",),
    "contactid": ("contact",),
    "salesorderid": ("salesorder",),
    "ownerid": ("systemuser", "team"),
    "bcbi_defaultowningteam": ("team",),
}


@dataclass(frozen=True)
class TableFacts:
    schema_name: str
    display_name: str
    display_collection_name: str
    object_type_code: int
    primary_image: str | None
    ownership: str


# Published facts of the standard tables (Dataverse table reference, one page per table).
TABLES: dict[str, TableFacts] = {
    "account": TableFacts("Account", "Account", "Accounts", 1, "entityimage", "UserOwned"),
    "contact": TableFacts("Contact", "Contact", "Contacts", 2, "entityimage", "UserOwned"),
    "opportunity": TableFacts("Opportunity", "Opportunity", "Opportunities", 3, None, "UserOwned"),
    "systemuser": TableFacts("SystemUser", "User", "Users", 8, "entityimage", "BusinessOwned"),
    "transactioncurrency": TableFacts(
        "TransactionCurrency", "Currency", "Currencies", 9105, "entityimage", "OrganizationOwned"
    ),
    "uomschedule": TableFacts("UoMSchedule", "Unit Group", "Unit Groups", 1056, None, "OrganizationOwned"),
    "uom": TableFacts("UoM", "Unit", "Units", 1055, None, "OrganizationOwned"),
    "product": TableFacts("Product", "Product", "Products", 1024, "entityimage", "OrganizationOwned"),
    "pricelevel": TableFacts("PriceLevel", "Price List", "Price Lists", 1022, None, "OrganizationOwned"),
    "productpricelevel": TableFacts(
        "ProductPriceLevel", "Price List Item", "Price List Items", 1026, None, "OrganizationOwned"
    ),
    "invoice": TableFacts("Invoice", "Invoice", "Invoices", 1090, None, "UserOwned"),
    "invoicedetail": TableFacts(
        "InvoiceDetail", "Invoice Product", "Invoice Products", 1091, None, "UserOwned"
    ),
}

COLUMN_SCHEMA_NAMES = {
    "createdon": "CreatedOn",
    "modifiedon": "ModifiedOn",
    "createdby": "CreatedBy",
    "modifiedby": "ModifiedBy",
    "versionnumber": "VersionNumber",
    "statecode": "StateCode",
    "statuscode": "StatusCode",
    "ownerid": "OwnerId",
    "transactioncurrencyid": "TransactionCurrencyId",
    "exchangerate": "ExchangeRate",
    "name": "Name",
    "description": "Description",
    "firstname": "FirstName",
    "lastname": "LastName",
    "fullname": "FullName",
    "emailaddress1": "EMailAddress1",
    "telephone1": "Telephone1",
    "accountnumber": "AccountNumber",
    "parentcustomerid": "ParentCustomerId",
    "customerid": "CustomerId",
    "productid": "ProductId",
    "productnumber": "ProductNumber",
    "pricelevelid": "PriceLevelId",
    "uomid": "UoMId",
    "uomscheduleid": "UoMScheduleId",
    "invoiceid": "InvoiceId",
    "invoicenumber": "InvoiceNumber",
    "quantity": "Quantity",
    "priceperunit": "PricePerUnit",
    "paymenttermscode": "PaymentTermsCode",
    "isocurrencycode": "ISOCurrencyCode",
    "currencyname": "CurrencyName",
    "currencysymbol": "CurrencySymbol",
}

# Property values of the enum-valued option types.
_OPTION_SET_TYPE = {"Picklist": "Picklist", "State": "State", "Status": "Status", "Boolean": "Boolean"}

# The concrete metadata type of each AttributeType.
ATTRIBUTE_CLASSES = {
    "String": "StringAttributeMetadata",
    "Memo": "MemoAttributeMetadata",
    "Picklist": "PicklistAttributeMetadata",
    "State": "StateAttributeMetadata",
    "Status": "StatusAttributeMetadata",
    "Lookup": "LookupAttributeMetadata",
    "Customer": "LookupAttributeMetadata",
    "Owner": "LookupAttributeMetadata",
    "DateTime": "DateTimeAttributeMetadata",
    "Money": "MoneyAttributeMetadata",
    "Decimal": "DecimalAttributeMetadata",
    "Double": "DoubleAttributeMetadata",
    "Integer": "IntegerAttributeMetadata",
    "BigInt": "BigIntAttributeMetadata",
    "Boolean": "BooleanAttributeMetadata",
    "Uniqueidentifier": "UniqueIdentifierAttributeMetadata",
    "EntityName": "EntityNameAttributeMetadata",
    "Virtual": "AttributeMetadata",
}

_TYPE_BY_EDM = {
    "Edm.String": "String",
    "Edm.Guid": "Uniqueidentifier",
    "Edm.Boolean": "Boolean",
    "Edm.Int32": "Integer",
    "Edm.Int64": "BigInt",
    "Edm.Double": "Double",
    "Edm.Date": "DateTime",
    "Edm.DateTimeOffset": "DateTime",
}


@dataclass
class MetaObject:
    """One metadata object: its concrete type (e.g. ``PicklistAttributeMetadata``), structural properties
    and navigation properties (served only through ``$expand`` or a path)."""

    type: str
    props: dict[str, Any]
    navs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Model:
    entities: list[MetaObject]
    by_logical: dict[str, MetaObject]
    relationships: list[MetaObject]
    global_option_sets: list[MetaObject]


def metadata_id(*parts: str) -> str:
    return str(uuid.uuid5(_METADATA_NS, ":".join(parts)))


def label(text: str | None, *owner: str) -> dict[str, Any]:
    """A Label complex type (one 1033 localized label, also the user's), or the empty label."""
    if not text:
        return {"LocalizedLabels": [], "UserLocalizedLabel": None}
    localized = {
        "Label": text,
        "LanguageCode": LANGUAGE,
        "IsManaged": True,
        "MetadataId": metadata_id("label", *owner, text),
        "HasChanged": None,
    }
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": dict(localized)}


def _managed(value: bool, name: str, can_change: bool = False) -> dict[str, Any]:
    return {"Value": value, "CanBeChanged": can_change, "ManagedPropertyLogicalName": name}


def logical_name(es: EntitySet) -> str:
    return es.logical_name or es.type_name


def _custom(logical: str) -> bool:
    return logical.startswith("bcbi_")


def _pascal(name: str) -> str:
    head, *rest = name.split("_")
    return "_".join([head[:1].upper() + head[1:], *(p[:1].upper() + p[1:] for p in rest)])


def table_facts(es: EntitySet, index: int) -> TableFacts:
    logical = logical_name(es)
    known = TABLES.get(logical)
    schema_name = es.schema_name or (known.schema_name if known else None)
    if schema_name is None:
        prefix, _, rest = logical.partition("_")
        schema_name = f"{prefix}_{_pascal(rest)}" if rest and _custom(logical) else _pascal(logical)
    ownership = es.ownership_type or (
        known.ownership if known else ("UserOwned" if es.prop("_ownerid_value") else "OrganizationOwned")
    )
    return TableFacts(
        schema_name=schema_name,
        display_name=known.display_name if known else schema_name.split("_", 1)[-1],
        display_collection_name=known.display_collection_name
        if known
        else f"{schema_name.split('_', 1)[-1]}s",
        object_type_code=es.object_type_code or (known.object_type_code if known else 10000 + index),
        primary_image=es.primary_image or (known.primary_image if known else None),
        ownership=ownership,
    )


def column_schema_name(es: EntitySet, column: str, prop: Prop | None) -> str:
    if prop is not None and prop.schema_name:
        return prop.schema_name
    if column == es.key:
        return f"{table_facts(es, 0).schema_name}Id"
    if column in COLUMN_SCHEMA_NAMES:
        return COLUMN_SCHEMA_NAMES[column]
    if _custom(column):
        return f"bcbi_{_pascal(column.removeprefix('bcbi_'))}"
    return _pascal(column)


def attribute_type(es: EntitySet, p: Prop) -> str:
    """The AttributeType of a (non-lookup) column: the stated one, else derived from EDM type and options."""
    if p.attribute_type:
        return p.attribute_type
    if p.options is not None:
        return {"statecode": "State", "statuscode": "Status"}.get(p.name, "Picklist")
    if p.edm == "Edm.Decimal":
        return "Decimal" if p.name in DECIMAL_ATTRIBUTES else "Money"
    if p.edm == "Edm.String" and (p.name in MEMO_ATTRIBUTES or (p.max_length or 0) > 4000):
        return "Memo"
    return _TYPE_BY_EDM[p.edm]


def _string_format(p: Prop, kind: str) -> str:
    if p.format:
        return p.format
    if kind == "Memo":
        return "TextArea"
    if p.name.startswith("emailaddress"):
        return "Email"
    if p.name in ("websiteurl",) or p.name.endswith("url"):
        return "Url"
    if p.name.startswith(("telephone", "fax", "mobilephone")) or p.name.endswith("_telephone1"):
        return "Phone"
    return "Text"


# --------------------------------------------------------------------------------------------------
# Option sets
# --------------------------------------------------------------------------------------------------


def _option(value: int, text: str, owner: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {
        "Value": value,
        "Label": label(text, owner, str(value)),
        "Description": label(None),
        "Color": None,
        "IsManaged": True,
        "ExternalValue": None,
        "MetadataId": None,
        "HasChanged": None,
    }
    out.update(extra or {})
    return out


def _option_set(
    name: str, kind: str, options: list[dict[str, Any]], *, is_global: bool, display: str
) -> MetaObject:
    props = {
        "MetadataId": metadata_id("optionset", name),
        "HasChanged": None,
        "Name": name,
        "IsGlobal": is_global,
        "IsCustomOptionSet": _custom(name),
        "IsManaged": True,
        "IsCustomizable": _managed(True, "iscustomizable"),
        "IntroducedVersion": "5.0.0.0",
        "ExternalTypeName": None,
        "ParentOptionSetName": None,
        "OptionSetType": kind,
        "DisplayName": label(display, "optionset", name),
        "Description": label(None),
    }
    if kind == "Boolean":
        props["TrueOption"], props["FalseOption"] = options[1], options[0]
        return MetaObject("BooleanOptionSetMetadata", props)
    props["Options"] = options
    return MetaObject("OptionSetMetadata", props)


def _status_states(es: EntitySet) -> dict[int, int | None]:
    """statuscode value -> statecode value, matched by label (the pairing itself is not in the schema)."""
    state, status = es.prop("statecode"), es.prop("statuscode")
    if state is None or status is None or not state.options or not status.options:
        return {}
    by_label = {text.casefold(): value for value, text in state.options}
    out: dict[int, int | None] = {}
    for value, text in status.options:
        out[value] = by_label.get(text.casefold())
    return out


def _options_of(es: EntitySet, p: Prop, kind: str, owner: str) -> list[dict[str, Any]]:
    if kind == "Boolean":
        return [_option(0, "No", owner), _option(1, "Yes", owner)]
    states = _status_states(es) if kind == "Status" else {}
    defaults: dict[int, int] = {}
    if kind == "State":
        for status_value, state_value in reversed(list(_status_states(es).items())):
            if state_value is not None:
                defaults[state_value] = status_value
    out = []
    for value, text in p.options or ():
        extra: dict[str, Any] = {}
        if kind == "Status":
            extra = {"State": states.get(value), "TransitionData": None}
        elif kind == "State":
            extra = {"DefaultStatus": defaults.get(value), "InvariantName": text}
        out.append(_option(value, text, owner, extra))
    return out


# --------------------------------------------------------------------------------------------------
# Attributes
# --------------------------------------------------------------------------------------------------


def _documented_targets(es: EntitySet, column: str) -> list[str]:
    """Logical names of a lookup's targets: the documented ones the data records
    (``schema_defs.LOOKUP_TARGETS``), else the served targets of its navigations, else ``UNSERVED_TARGETS``."""
    from d365kit.sandbox import schema_defs

    documented = getattr(schema_defs, "LOOKUP_TARGETS", {}).get((es.name, column))
    if documented:
        return list(documented)
    sets = REGISTRIES["dataverse"]
    value = f"_{column}_value"
    served = [logical_name(sets[n.target]) for n in es.navs if n.local == value and n.target in sets]
    served += [logical_name(sets[lk.target]) for lk in es.lookups if lk.column == column]
    return list(dict.fromkeys(served)) or list(UNSERVED_TARGETS.get(column, ()))


def _lookup_targets(es: EntitySet, column: str) -> tuple[list[str], bool]:
    """Logical names of a lookup's targets, and whether the lookup is writable (bound with @odata.bind)."""
    return _documented_targets(es, column), any(lk.column == column for lk in es.lookups)


def _common(es: EntitySet, column: str, prop: Prop | None, kind: str, number: int) -> dict[str, Any]:
    logical = logical_name(es)
    schema_name = column_schema_name(es, column, prop)
    display = (prop.display_name if prop is not None else None) or schema_name
    required = prop.required_level if prop is not None and prop.required_level != "None" else None
    if required is None:
        required = "SystemRequired" if column == es.key or (prop is not None and prop.required) else "None"
    return {
        "MetadataId": metadata_id("attribute", logical, column),
        "HasChanged": None,
        "AttributeOf": None,
        "AttributeType": kind,
        "AttributeTypeName": {
            "Value": "UniqueidentifierType" if kind == "Uniqueidentifier" else f"{kind}Type"
        },
        "ColumnNumber": number,
        "DeprecatedVersion": None,
        "DisplayName": label(display, logical, column),
        "Description": label(None),
        "EntityLogicalName": logical,
        "ExternalName": None,
        "IntroducedVersion": "5.0.0.0",
        "IsAuditEnabled": _managed(True, "canmodifyauditsettings", True),
        "IsCustomAttribute": _custom(column),
        "IsCustomizable": _managed(True, "iscustomizable", True),
        "IsFilterable": True,
        "IsLogical": False,
        "IsManaged": not _custom(column),
        "IsPrimaryId": column == es.key,
        "IsPrimaryName": column == es.primary_name,
        "IsRenameable": _managed(True, "isrenameable", True),
        "IsRetrievable": True,
        "IsSearchable": True,
        "IsSecured": False,
        "IsValidForAdvancedFind": _managed(True, "canmodifysearchsettings", True),
        "IsValidForCreate": True,
        "IsValidForRead": True,
        "IsValidForUpdate": True,
        "IsValidODataAttribute": True,
        "LinkedAttributeId": None,
        "LogicalName": column,
        "RequiredLevel": _managed(required, "canmodifyrequirementlevelsettings", True),
        "SchemaName": schema_name,
        "SourceType": 0,
    }


def _attribute(es: EntitySet, p: Prop, number: int, global_sets: dict[str, MetaObject]) -> MetaObject:
    logical = logical_name(es)
    if p.name.startswith("_") and p.name.endswith("_value"):
        column = p.name[1:-6]
        targets, writable = _lookup_targets(es, column)
        kind = p.attribute_type or (
            "Owner"
            if column == "ownerid"
            else "Customer"
            if {"account", "contact"} <= set(targets)
            else "Lookup"
        )
        props = _common(es, column, p, kind, number)
        system = column in ("createdby", "modifiedby")
        props["IsValidForCreate"] = writable and not system and p.valid_for_create
        props["IsValidForUpdate"] = writable and not system and p.valid_for_update
        props.update({"Targets": targets, "Format": "None"})
        return MetaObject(ATTRIBUTE_CLASSES[kind], props)
    kind = attribute_type(es, p)
    props = _common(es, p.name, p, kind, number)
    props["IsValidForCreate"] = (not p.read_only or p.name == es.key) and p.valid_for_create
    if p.name == "statecode":
        props["IsValidForCreate"] = False  # "not valid for create" (the API layer refuses it too)
    props["IsValidForUpdate"] = not p.read_only and p.name != es.key and p.valid_for_update
    navs: dict[str, Any] = {}
    if kind in ("String", "Memo"):
        fmt = _string_format(p, kind)
        props.update(
            {
                "MaxLength": p.max_length or (2000 if kind == "Memo" else 100),
                "DatabaseLength": 2 * (p.max_length or (2000 if kind == "Memo" else 100)),
                "Format": fmt,
                "ImeMode": "Auto",
                "IsLocalizable": False,
            }
        )
        if kind == "String":
            props.update({"FormatName": {"Value": fmt}, "YomiOf": None, "AutoNumberFormat": ""})
    elif kind == "DateTime":
        behavior = p.date_behavior or ("DateOnly" if p.edm == "Edm.Date" else "UserLocal")
        props.update(
            {
                "Format": p.format
                or ("DateOnly" if p.edm == "Edm.Date" or behavior == "DateOnly" else "DateAndTime"),
                "DateTimeBehavior": {"Value": behavior},
                "CanChangeDateTimeBehavior": _managed(False, "canchangedatetimebehavior"),
                "ImeMode": "Auto",
                "MinSupportedValue": "1753-01-01T00:00:00Z",
                "MaxSupportedValue": "9999-12-30T23:59:59Z",
            }
        )
    elif kind == "Money":
        props.update(
            {
                "Precision": 2,
                "PrecisionSource": 2,
                "MinValue": -922337203685477.0,
                "MaxValue": 922337203685477.0,
                "IsBaseCurrency": p.name.endswith("_base"),
                "CalculationOf": None,
                "ImeMode": "Auto",
            }
        )
    elif kind == "Decimal" or kind == "Double":
        props.update(
            {"Precision": 2, "MinValue": -100000000000.0, "MaxValue": 100000000000.0, "ImeMode": "Auto"}
        )
    elif kind == "Integer":
        props.update({"Format": p.format or "None", "MinValue": -2147483648, "MaxValue": 2147483647})
    elif kind == "BigInt":
        props.update({"MinValue": -9223372036854775808, "MaxValue": 9223372036854775807})
    elif kind == "Boolean":
        default = p.default if isinstance(p.default, bool) else False
        props["DefaultValue"] = default
        navs["OptionSet"] = _option_set(
            f"{logical}_{p.name}",
            "Boolean",
            _options_of(es, p, "Boolean", f"{logical}.{p.name}"),
            is_global=False,
            display=props["SchemaName"],
        )
        navs["GlobalOptionSet"] = None
    if kind in ("Picklist", "State", "Status"):
        props["DefaultFormValue"] = p.default if isinstance(p.default, int) else -1
        if kind == "Picklist":
            props["ParentPicklistLogicalName"] = None
            props["ChildPicklistLogicalNames"] = []
        global_set = global_sets.get(p.option_set) if p.option_set else None
        navs["OptionSet"] = global_set or _option_set(
            f"{logical}_{p.name}",
            kind,
            _options_of(es, p, kind, f"{logical}.{p.name}"),
            is_global=False,
            display=props["SchemaName"],
        )
        navs["GlobalOptionSet"] = global_set
    return MetaObject(ATTRIBUTE_CLASSES[kind], props, navs)


def _global_option_sets() -> dict[str, MetaObject]:
    """Option sets named by ``Prop.option_set`` (shared, global); the first column that uses one defines it."""
    out: dict[str, MetaObject] = {}
    for es in REGISTRIES["dataverse"].values():
        for p in es.props:
            if p.option_set and p.option_set not in out and p.options is not None:
                kind = attribute_type(es, p)
                kind = kind if kind in _OPTION_SET_TYPE else "Picklist"
                out[p.option_set] = _option_set(
                    p.option_set,
                    kind,
                    _options_of(es, p, kind, p.option_set),
                    is_global=True,
                    display=p.display_name or p.option_set,
                )
    return out


# --------------------------------------------------------------------------------------------------
# Keys and relationships
# --------------------------------------------------------------------------------------------------


def _keys(es: EntitySet) -> list[MetaObject]:
    logical = logical_name(es)
    out = []
    for name, attributes in es.alternate_keys:
        out.append(
            MetaObject(
                "EntityKeyMetadata",
                {
                    "MetadataId": metadata_id("key", logical, name),
                    "HasChanged": None,
                    "LogicalName": name,
                    "SchemaName": name,
                    "EntityLogicalName": logical,
                    "KeyAttributes": list(attributes),
                    "DisplayName": label(name, logical, "key"),
                    "EntityKeyIndexStatus": "Active",
                    "IsCustomizable": _managed(True, "iscustomizable"),
                    "IsManaged": not _custom(name),
                    "IsSecondaryKey": False,
                    "IsSynchronous": True,
                    "IntroducedVersion": "1.0",
                    "AsyncJob": None,
                },
            )
        )
    return out


def _cascade(delete: str) -> dict[str, str]:
    return {
        "Assign": "NoCascade",
        "Delete": delete,
        "Archive": "NoCascade",
        "Merge": "NoCascade",
        "Reparent": "NoCascade",
        "Share": "NoCascade",
        "Unshare": "NoCascade",
        "RollupView": "NoCascade",
    }


def _relationships() -> list[MetaObject]:
    """One OneToManyRelationshipMetadata per (lookup column, served target table)."""
    sets = REGISTRIES["dataverse"]
    out: list[MetaObject] = []
    for es in sets.values():
        referencing = logical_name(es)
        for p in es.props:
            if not (p.name.startswith("_") and p.name.endswith("_value")):
                continue
            column = p.name[1:-6]
            by_logical = {logical_name(t): t for t in sets.values()}
            navs = {sets[n.target].name: n.name for n in es.navs if n.local == p.name and n.target in sets}
            navs.update({lk.target: lk.nav for lk in es.lookups if lk.column == column})
            pairs = [
                (by_logical[t], navs.get(by_logical[t].name))
                for t in _documented_targets(es, column)
                if t in by_logical
            ]
            for target, nav in pairs:
                referenced = logical_name(target)
                schema_name = f"{referenced}_{referencing}_{column}"
                collection = next(
                    (n.name for n in target.navs if n.many and n.target == es.name and n.remote == p.name),
                    schema_name,
                )
                child = column in ("invoiceid",) or (referencing, column) == (
                    "productpricelevel",
                    "pricelevelid",
                )
                out.append(
                    MetaObject(
                        "OneToManyRelationshipMetadata",
                        {
                            "MetadataId": metadata_id("relationship", schema_name),
                            "HasChanged": None,
                            "SchemaName": schema_name,
                            "RelationshipType": "OneToManyRelationship",
                            "IsCustomRelationship": _custom(referencing) or _custom(column),
                            "IsManaged": True,
                            "IsValidForAdvancedFind": True,
                            "IsCustomizable": _managed(False, "iscustomizable"),
                            "IntroducedVersion": "5.0.0.0",
                            "SecurityTypes": "ParentChild" if child else "None",
                            "ReferencedAttribute": target.key,
                            "ReferencedEntity": referenced,
                            "ReferencingAttribute": column,
                            "ReferencingEntity": referencing,
                            "ReferencedEntityNavigationPropertyName": collection,
                            "ReferencingEntityNavigationPropertyName": nav or column,
                            "IsHierarchical": False,
                            "RelationshipBehavior": 0,
                            "RelationshipAttributes": [],
                            "CascadeConfiguration": _cascade("Cascade" if child else "RemoveLink"),
                            "AssociatedMenuConfiguration": {
                                "Behavior": "UseCollectionName",
                                "Group": "Details",
                                "Label": label(None),
                                "Order": 10000,
                                "IsCustomizable": True,
                                "Icon": None,
                                "ViewId": "00000000-0000-0000-0000-000000000000",
                                "AvailableOffline": True,
                                "MenuId": None,
                                "QueryApi": None,
                            },
                        },
                    )
                )
    return out


# --------------------------------------------------------------------------------------------------
# Entities
# --------------------------------------------------------------------------------------------------


def _entity(es: EntitySet, index: int, global_sets: dict[str, MetaObject]) -> MetaObject:
    logical = logical_name(es)
    facts = table_facts(es, index)
    props: dict[str, Any] = {
        "MetadataId": metadata_id("entity", logical),
        "HasChanged": None,
        "LogicalName": logical,
        "SchemaName": facts.schema_name,
        "EntitySetName": es.name,
        "LogicalCollectionName": es.name,
        "CollectionSchemaName": facts.schema_name + ("es" if facts.schema_name.endswith("s") else "s"),
        "ObjectTypeCode": facts.object_type_code,
        "PrimaryIdAttribute": es.key,
        "PrimaryNameAttribute": es.primary_name,
        "PrimaryImageAttribute": facts.primary_image,
        "OwnershipType": facts.ownership,
        "TableType": "Standard",
        "DisplayName": label(facts.display_name, logical),
        "DisplayCollectionName": label(facts.display_collection_name, logical, "collection"),
        "Description": label(None),
        "ChangeTrackingEnabled": es.change_tracking,
        "IsActivity": es.is_activity,
        "IsActivityParty": False,
        "IsAuditEnabled": _managed(True, "canmodifyauditsettings", True),
        "IsBPFEntity": False,
        "IsChildEntity": False,
        "IsCustomEntity": _custom(logical),
        "IsCustomizable": _managed(True, "iscustomizable"),
        "IsIntersect": False,
        "IsLogicalEntity": False,
        "IsManaged": not _custom(logical),
        "IsPrivate": False,
        "IsStateModelAware": es.prop("statecode") is not None,
        "IsValidForAdvancedFind": True,
        "IsValidForQueue": False,
        "IsAvailableOffline": True,
        "IsEnabledForCharts": True,
        "IsKnowledgeManagementEnabled": False,
        "IsDocumentManagementEnabled": False,
        "IsOneNoteIntegrationEnabled": False,
        "IsSolutionAware": False,
        "HasActivities": facts.ownership == "UserOwned",
        "HasNotes": facts.ownership == "UserOwned",
        "HasEmailAddresses": es.prop("emailaddress1") is not None,
        "CanCreateAttributes": _managed(True, "cancreateattributes"),
        "CanCreateForms": _managed(True, "cancreateforms"),
        "CanCreateViews": _managed(True, "cancreateviews"),
        "CanModifyAdditionalSettings": _managed(True, "canmodifyadditionalsettings"),
        "CanChangeTrackingBeEnabled": _managed(True, "canchangetrackingbeenabled"),
        "IntroducedVersion": "5.0.0.0",
        "ExternalName": None,
        "ExternalCollectionName": None,
        "EntityColor": None,
        "IconVectorName": None,
        "DataProviderId": None,
        "DataSourceId": None,
        "DaysSinceRecordLastModified": 0,
        "RecurrenceBaseEntityLogicalName": None,
    }
    attributes = [_attribute(es, p, i + 1, global_sets) for i, p in enumerate(es.props)]
    return MetaObject("EntityMetadata", props, {"Attributes": attributes, "Keys": _keys(es)})


@lru_cache(maxsize=1)
def model() -> Model:
    """Every metadata object of the served tables (built once; the schema does not change at run time)."""
    global_sets = _global_option_sets()
    entities = [_entity(es, i, global_sets) for i, es in enumerate(REGISTRIES["dataverse"].values())]
    by_logical = {e.props["LogicalName"]: e for e in entities}
    relationships = _relationships()
    for e in entities:
        name = e.props["LogicalName"]
        e.navs["ManyToOneRelationships"] = [r for r in relationships if r.props["ReferencingEntity"] == name]
        e.navs["OneToManyRelationships"] = [r for r in relationships if r.props["ReferencedEntity"] == name]
        e.navs["ManyToManyRelationships"] = []
    return Model(entities, by_logical, relationships, list(global_sets.values()))


# --------------------------------------------------------------------------------------------------
# Plain definitions (metadata.entity_definitions and friends)
# --------------------------------------------------------------------------------------------------


def attribute_dicts(es: EntitySet) -> list[dict[str, Any]]:
    """The attributes of a table as plain dicts: ``@odata.type``, every property, and the option set of a
    choice column inline (``OptionSet``), as ``.../Attributes/<type>?$expand=OptionSet`` shows it."""
    entity = model().by_logical[logical_name(es)]
    out = []
    for attr in entity.navs["Attributes"]:
        d = {"@odata.type": f"#{CRM}.{attr.type}", **attr.props}
        if attr.navs.get("OptionSet") is not None:
            d["OptionSet"] = dict(attr.navs["OptionSet"].props)
        out.append(d)
    return out
