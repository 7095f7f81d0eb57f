"""Client-side reading of a service's CSDL ``$metadata``: entity sets, their types and property EDM types."""

from __future__ import annotations

import difflib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from d365kit.errors import UnknownNameError

_EDMX = "{http://docs.oasis-open.org/odata/ns/edmx}"
_EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


@dataclass
class EntityType:
    name: str
    key: str | None
    properties: dict[str, str]  # property -> EDM type (enums: their qualified type name)
    navigation: dict[str, str] = field(default_factory=dict)  # nav property -> target type
    max_length: dict[str, int] = field(default_factory=dict)  # text property -> its MaxLength, when given


@dataclass
class ServiceMetadata:
    service: str
    entity_sets: dict[str, EntityType]
    enum_types: set[str]

    def entity(self, entity_set: str) -> EntityType:
        try:
            return self.entity_sets[entity_set]
        except KeyError:
            raise UnknownNameError(
                f"{self.service} has no entity set {entity_set!r}" + _suggest(entity_set, self.entity_sets)
            ) from None

    def check_properties(self, entity_set: str, names: list[str] | tuple[str, ...]) -> None:
        et = self.entity(entity_set)
        for n in names:
            base = n.split("@", 1)[0]
            if base not in et.properties and base not in et.navigation:
                raise UnknownNameError(
                    f"{self.service} entity set {entity_set!r} has no property {n!r}"
                    + _suggest(base, list(et.properties) + list(et.navigation))
                )


def _suggest(name: str, candidates: object) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)  # type: ignore[arg-type]
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def parse_csdl(service: str, xml_text: str | bytes) -> ServiceMetadata:
    root = ET.fromstring(xml_text)
    types: dict[str, EntityType] = {}
    enums: set[str] = set()
    sets: dict[str, str] = {}
    for schema in root.iter(f"{_EDM}Schema"):
        ns = schema.get("Namespace", "")
        for en in schema.findall(f"{_EDM}EnumType"):
            enums.add(f"{ns}.{en.get('Name')}")
        for et in schema.findall(f"{_EDM}EntityType"):
            key_ref = et.find(f"{_EDM}Key/{_EDM}PropertyRef")
            props = {p.get("Name"): p.get("Type") for p in et.findall(f"{_EDM}Property")}
            navs = {n.get("Name"): n.get("Type") for n in et.findall(f"{_EDM}NavigationProperty")}
            lengths = {
                p.get("Name"): int(p.get("MaxLength"))
                for p in et.findall(f"{_EDM}Property")
                if (p.get("MaxLength") or "").isdigit()
            }
            types[f"{ns}.{et.get('Name')}"] = EntityType(
                et.get("Name"), key_ref.get("Name") if key_ref is not None else None, props, navs, lengths
            )
        for container in schema.findall(f"{_EDM}EntityContainer"):
            for es in container.findall(f"{_EDM}EntitySet"):
                sets[es.get("Name")] = es.get("EntityType")
    return ServiceMetadata(service, {name: types[t] for name, t in sets.items() if t in types}, enums)
