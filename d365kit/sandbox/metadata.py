"""``$metadata`` (OData CSDL XML) of each service and Dataverse ``EntityDefinitions``, rendered from schema.py.

Pure functions of the schema: the API modules serve the strings/dicts as they are, so a client's metadata
discovery and the storage/validation layers read the same definitions.

- BC API v2.0 and the companion API: namespace ``Microsoft.NAV``, container ``NAV``; NAV enums as
  ``EnumType`` (the blank option ``" "`` is spelled ``_x0020_`` as a member name); ``companies`` carries a
  contained collection navigation to every company-scoped set.
- Dataverse: namespace ``Microsoft.Dynamics.CRM`` (alias ``mscrm``), container ``System``; every type
  derives from the abstract ``crmbaseentity``; lookups are ``NavigationProperty`` with a
  ``ReferentialConstraint`` on their ``_<column>_value``; change-tracked sets carry
  ``Org.OData.Capabilities.V1.ChangeTracking`` (Supported=true). Real Dataverse shows that annotation only
  for ``$metadata?annotations=true``: callers pass ``annotations=False`` otherwise.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import lru_cache
from typing import Any

from d365kit.sandbox import entity_metadata
from d365kit.sandbox.entity_metadata import DECIMAL_ATTRIBUTES, MEMO_ATTRIBUTES
from d365kit.sandbox.schema import REGISTRIES, EntitySet, Prop, Service, entity_set

EDMX_NS = "http://docs.oasis-open.org/odata/ns/edmx"
EDM_NS = "http://docs.oasis-open.org/odata/ns/edm"
NAV_NAMESPACE = "Microsoft.NAV"
CRM_NAMESPACE = "Microsoft.Dynamics.CRM"
CRM_ALIAS = "mscrm"

__all__ = ["DECIMAL_ATTRIBUTES", "MEMO_ATTRIBUTES", "csdl", "entity_definitions", "attribute_definitions"]


# --------------------------------------------------------------------------------------------------
# CSDL
# --------------------------------------------------------------------------------------------------


def _sub(parent: ET.Element, tag: str, **attrs: str) -> ET.Element:
    return ET.SubElement(parent, tag, attrs)


def _edmx(schema_attrs: dict[str, str]) -> tuple[ET.Element, ET.Element]:
    root = ET.Element("edmx:Edmx", {"Version": "4.0", "xmlns:edmx": EDMX_NS})
    services = _sub(root, "edmx:DataServices")
    schema = _sub(services, "Schema", xmlns=EDM_NS, **schema_attrs)
    return root, schema


def _serialize(root: ET.Element) -> str:
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


def _property(parent: ET.Element, p: Prop, type_name: str, key: str) -> None:
    attrs = {"Name": p.name, "Type": type_name}
    if p.name == key:
        attrs["Nullable"] = "false"
    if p.edm == "Edm.String" and p.max_length and not p.enum:
        attrs["MaxLength"] = str(p.max_length)
    if p.edm == "Edm.Decimal":
        attrs["Scale"] = "Variable"
    _sub(parent, "Property", **attrs)


def _enum_types(sets: list[EntitySet]) -> dict[str, tuple[str, ...]]:
    """NAV enum types used by ``sets``; one enum type name must always mean one value list."""
    enums: dict[str, tuple[str, ...]] = {}
    for es in sets:
        for p in es.props:
            if p.enum_type and p.enum and enums.setdefault(p.enum_type, p.enum) != p.enum:
                raise ValueError(f"enum type {p.enum_type} has conflicting values ({es.name}.{p.name})")
    return enums


def enum_member_name(value: str) -> str:
    """CSDL member name of a BC enum wire value (the blank option is a single space)."""
    return "_x0020_" if value == " " else value


def _nav_csdl(service: Service) -> str:
    registry = REGISTRIES[service]
    companies = entity_set("bc", "companies")
    assert companies is not None
    sets = [companies, *(es for es in registry.values() if es.name != "companies")]
    scoped = [es for es in sets if es.company_scoped]
    root, schema = _edmx({"Namespace": NAV_NAMESPACE})
    for name, values in sorted(_enum_types(sets).items()):
        enum = _sub(schema, "EnumType", Name=name)
        for i, value in enumerate(values):
            _sub(enum, "Member", Name=enum_member_name(value), Value=str(i))
    types = {es.name: es.type_name for es in sets}
    for es in sets:
        et = _sub(schema, "EntityType", Name=es.type_name)
        _sub(_sub(et, "Key"), "PropertyRef", Name=es.key)
        for p in es.props:
            type_name = f"{NAV_NAMESPACE}.{p.enum_type}" if p.enum_type else p.edm
            _property(et, p, type_name, es.key)
        for nav in es.navs:
            target = f"{NAV_NAMESPACE}.{types[nav.target]}"
            if nav.many:
                _sub(
                    et,
                    "NavigationProperty",
                    Name=nav.name,
                    Type=f"Collection({target})",
                    ContainsTarget="true",
                )
            else:
                np = _sub(et, "NavigationProperty", Name=nav.name, Type=target, ContainsTarget="true")
                _sub(np, "ReferentialConstraint", Property=nav.local, ReferencedProperty=nav.remote)
        if es.name == "companies":
            for child in scoped:
                _sub(
                    et,
                    "NavigationProperty",
                    Name=child.name,
                    Type=f"Collection({NAV_NAMESPACE}.{child.type_name})",
                    ContainsTarget="true",
                )
    container = _sub(schema, "EntityContainer", Name="NAV")
    for es in sets:
        _sub(container, "EntitySet", Name=es.name, EntityType=f"{NAV_NAMESPACE}.{es.type_name}")
    if service == "bc":  # page parts, lookups and bound actions of the real pages (bc_pages.py)
        from d365kit.sandbox import bc_pages

        bc_pages.extend_csdl(schema, NAV_NAMESPACE)
    return _serialize(root)


def _crm_csdl(annotations: bool) -> str:
    sets = list(REGISTRIES["dataverse"].values())
    types = {es.name: es.type_name for es in sets}
    root, schema = _edmx({"Namespace": CRM_NAMESPACE, "Alias": CRM_ALIAS})
    _sub(schema, "EntityType", Name="crmbaseentity", Abstract="true")
    for es in sets:
        et = _sub(schema, "EntityType", Name=es.type_name, BaseType=f"{CRM_ALIAS}.crmbaseentity")
        _sub(_sub(et, "Key"), "PropertyRef", Name=es.key)
        for p in es.props:
            _property(et, p, p.edm, es.key)
        for lk in es.lookups:
            np = _sub(et, "NavigationProperty", Name=lk.nav, Type=f"{CRM_ALIAS}.{types[lk.target]}")
            target = entity_set("dataverse", lk.target)
            assert target is not None
            _sub(np, "ReferentialConstraint", Property=lk.value_prop, ReferencedProperty=target.key)
        lookup_navs = {lk.nav for lk in es.lookups}
        for nav in es.navs:
            if nav.name in lookup_navs:
                continue
            target_type = f"{CRM_ALIAS}.{types[nav.target]}"
            _sub(
                et,
                "NavigationProperty",
                Name=nav.name,
                Type=f"Collection({target_type})" if nav.many else target_type,
            )
    container = _sub(schema, "EntityContainer", Name="System")
    for es in sets:
        set_el = _sub(container, "EntitySet", Name=es.name, EntityType=f"{CRM_NAMESPACE}.{es.type_name}")
        for nav in es.navs:
            _sub(set_el, "NavigationPropertyBinding", Path=nav.name, Target=nav.target)
        if annotations and es.change_tracking:
            record = _sub(
                _sub(set_el, "Annotation", Term="Org.OData.Capabilities.V1.ChangeTracking"), "Record"
            )
            _sub(record, "PropertyValue", Property="Supported", Bool="true")
    return _serialize(root)


@lru_cache(maxsize=8)
def csdl(service: Service, *, annotations: bool = True) -> str:
    """CSDL XML document served at ``<service root>/$metadata``."""
    if service == "dataverse":
        return _crm_csdl(annotations)
    return _nav_csdl(service)


# --------------------------------------------------------------------------------------------------
# Dataverse EntityDefinitions (the objects live in entity_metadata.py; metadata_api.py serves the paths)
# --------------------------------------------------------------------------------------------------


def attribute_definitions(es: EntitySet) -> list[dict[str, Any]]:
    """``EntityDefinitions(...)/Attributes`` of a Dataverse set: one per column (lookups by column name),
    each with its ``@odata.type``; choice columns carry their ``OptionSet`` inline."""
    return entity_metadata.attribute_dicts(es)


def entity_definition(es: EntitySet, *, with_attributes: bool = False) -> dict[str, Any]:
    out = dict(entity_metadata.model().by_logical[entity_metadata.logical_name(es)].props)
    if with_attributes:
        out["Attributes"] = attribute_definitions(es)
    return out


def entity_definitions(*, with_attributes: bool = False) -> list[dict[str, Any]]:
    """``GET /EntityDefinitions``: one definition per served Dataverse table, in registration order."""
    return [entity_definition(es, with_attributes=with_attributes) for es in REGISTRIES["dataverse"].values()]
