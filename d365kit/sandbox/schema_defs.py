"""Entity sets of BC API v2.0, the companion API and Dataverse Web API v9.2, built from data (see schema.py).

The definitions are tables of columns, one file per service: ``tables/bc.toml``, ``tables/companion.toml``
and ``tables/dataverse.toml`` (one row per column: name, EDM type, max length, required, read-only, enum or
choice options, default, lookup targets). Each file's header states its conventions and sources; choices
where the sources are silent or UNVERIFIED are marked ``Choice:`` next to the row they explain (see
docs/sandbox.md, "Entity definitions" and "Choices on unverified wire facts").

This module only turns the rows into ``EntitySet``/``Prop``/``Lookup``/``Nav`` objects:

- BC/companion: a column without ``default`` gets the blank value BC renders for its type (the first value
  of an enum), except the columns the service stamps itself (the key, ``modified_prop``, ``created_prop``)
  and the columns of a set with ``blank_defaults = false``. ``enum`` names an entry of ``[enums]`` (AL
  value names, spelled here for the wire: space ``_x0020_``, hyphen ``_x002D_``, the blank option ``" "``).
- Dataverse: ``options`` names an entry of ``[option_sets]`` (value, label). A row with ``lookup`` (target
  entity sets) is a lookup column, read as ``_<name>_value`` (Edm.Guid, read-only); unless the row is
  ``read_only`` it is also written through ``<nav>@odata.bind`` and expandable, with one navigation per
  target: ``<name>`` for one target, ``<name>_<target logical name>`` for a polymorphic lookup. Every table
  ends with ``system_columns`` and takes ``[defaults]`` for what it does not state.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from d365kit.sandbox.schema import EntitySet, Lookup, Nav, Prop, Service, register

TABLES_DIR = Path(__file__).with_name("tables")
SERVICES: tuple[Service, ...] = ("bc", "companion", "dataverse")

BLANK_GUID = "00000000-0000-0000-0000-000000000000"
BLANK_DATE = "0001-01-01"
BLANK_DATETIME = "0001-01-01T00:00:00.000Z"  # store format of DateTimeOffset (see store.py)

_BC_BLANK: dict[str, object] = {
    "Edm.String": "",
    "Edm.Guid": BLANK_GUID,
    "Edm.Boolean": False,
    "Edm.Decimal": 0,
    "Edm.Double": 0,
    "Edm.Int32": 0,
    "Edm.Int64": 0,
    "Edm.Date": BLANK_DATE,
    "Edm.DateTimeOffset": BLANK_DATETIME,
}

_SET_KEYS = frozenset(
    {
        "type",
        "logical_name",
        "key",
        "primary_name",
        "methods",
        "company_scoped",
        "change_tracking",
        "modified_prop",
        "created_prop",
        "blank_defaults",
        "columns",
        "navs",
    }
)
_BC_COLUMN_KEYS = frozenset({"name", "edm", "max_length", "required", "read_only", "enum", "default"})
_DV_COLUMN_KEYS = frozenset(
    {"name", "edm", "max_length", "required", "read_only", "options", "default", "lookup"}
)
_NAV_KEYS = frozenset({"name", "target", "local", "remote", "many"})


def enum_values(*labels: str) -> tuple[str, ...]:
    """AL option/enum value names in BC wire spelling (XML-encoded; the blank option stays ``" "``)."""
    return tuple(
        label if label == " " else label.replace(" ", "_x0020_").replace("-", "_x002D_") for label in labels
    )


def _checked(row: Mapping[str, Any], allowed: frozenset[str], where: str) -> Mapping[str, Any]:
    unknown = set(row) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    return row


def _navs(rows: Iterable[Mapping[str, Any]], where: str) -> list[Nav]:
    return [Nav(**_checked(row, _NAV_KEYS, where)) for row in rows]


def _entity_set(
    service: Service, name: str, spec: Mapping[str, Any], props: list[Prop], **kw: Any
) -> EntitySet:
    _checked(spec, _SET_KEYS, f"{service}.{name}")
    attrs = {
        k: spec[k]
        for k in ("key", "primary_name", "company_scoped", "change_tracking", "modified_prop", "created_prop")
        if k in spec
    }
    if "methods" in spec:
        attrs["methods"] = frozenset(spec["methods"])
    if service == "dataverse":
        attrs["type_name"] = attrs["logical_name"] = spec["logical_name"]
    else:
        attrs["type_name"] = spec["type"]
    return EntitySet(service=service, name=name, props=tuple(props), **attrs, **kw)


def bc_sets(service: Service, data: Mapping[str, Any]) -> list[EntitySet]:
    """BC API v2.0 or companion entity sets from ``tables/<service>.toml``."""
    enums = {name: enum_values(*labels) for name, labels in data.get("enums", {}).items()}
    sets = []
    for name, spec in data["sets"].items():
        stamped = {spec["key"], spec.get("modified_prop"), spec.get("created_prop")}
        props = []
        for row in spec["columns"]:
            _checked(row, _BC_COLUMN_KEYS, f"{service}.{name}.{row.get('name')}")
            kw = {k: row[k] for k in ("max_length", "required", "read_only") if k in row}
            edm = row["edm"]
            values = None
            if "enum" in row:
                values = enums[row["enum"]]
                kw.update(enum_type=row["enum"], enum=values)
            if "default" in row:
                kw["default"] = row["default"]
            elif spec.get("blank_defaults", True) and row["name"] not in stamped:
                kw["default"] = values[0] if values else _BC_BLANK[edm]
            props.append(Prop(row["name"], edm, **kw))
        sets.append(_entity_set(service, name, spec, props, navs=tuple(_navs(spec.get("navs", ()), name))))
    return sets


def dataverse_sets(data: Mapping[str, Any]) -> list[EntitySet]:
    """Dataverse tables from ``tables/dataverse.toml``."""
    option_sets = {
        name: tuple((int(value), str(label)) for value, label in options)
        for name, options in data.get("option_sets", {}).items()
    }
    specs = {name: {**data.get("defaults", {}), **spec} for name, spec in data["sets"].items()}
    keys = {name: spec["key"] for name, spec in specs.items()}
    logical_names = {name: spec["logical_name"] for name, spec in specs.items()}
    sets = []
    for name, spec in specs.items():
        props, lookups, navs = [], [], []
        for row in (*spec["columns"], *data.get("system_columns", ())):
            _checked(row, _DV_COLUMN_KEYS, f"dataverse.{name}.{row.get('name')}")
            if "lookup" in row:
                column, targets = row["name"], row["lookup"]
                value = Prop(f"_{column}_value", "Edm.Guid", read_only=True)
                props.append(value)
                if row.get("read_only"):
                    continue  # system-set or to a table the sandbox does not serve: read only
                for target in targets:
                    nav = column if len(targets) == 1 else f"{column}_{logical_names[target]}"
                    lookups.append(Lookup(nav, column, target))
                    navs.append(Nav(nav, target, value.name, keys[target]))
                continue
            kw = {k: row[k] for k in ("max_length", "required", "read_only", "default") if k in row}
            if "options" in row:
                kw["options"] = option_sets[row["options"]]
            props.append(Prop(row["name"], row["edm"], **kw))
        navs += _navs(spec.get("navs", ()), name)
        sets.append(_entity_set("dataverse", name, spec, props, lookups=tuple(lookups), navs=tuple(navs)))
    return sets


def load(service: Service) -> list[EntitySet]:
    """The entity sets of one service, in file order."""
    data = tomllib.loads((TABLES_DIR / f"{service}.toml").read_text(encoding="utf-8"))
    return dataverse_sets(data) if service == "dataverse" else bc_sets(service, data)


for _service in SERVICES:
    for _es in load(_service):
        register(_es)
