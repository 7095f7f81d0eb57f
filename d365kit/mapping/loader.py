"""Loading catalogs: the default (package data), a user's override file, a tenant's live mappings, and
validation of every name against both services' ``$metadata``.

Override files use the catalog's own TOML shape. A ``[[mapping]]`` whose name is new is added; one whose
name exists replaces it, unless it says ``extends = true``: then its table keys override the default's
and its ``[[mapping.field]]`` rows are merged by ``(bc, dv)`` (same pair: keys updated; ``remove = true``:
dropped; new pair: appended). ``remove = true`` on a mapping drops it. ``[options.<name>]`` tables extend
the option maps.

Live mappings (``load_live``) come from the companion API (tables 5335/5336). BC names fields by caption,
so each live row takes its API property, transform and comparison from the catalog row with the same
caption and Dataverse attribute; an unknown caption is matched to the BC property spelled the same
ignoring case and punctuation ("Phone No." -> ``phoneNo``), else the field is marked companion-only.
BC's filters are table-view text with captions (``WHERE(Blocked=FILTER(' '))``) that has no reliable
translation to OData, so a live mapping keeps the catalog's OData filters and carries BC's text in
``bc_table_view``/``dv_table_view`` for reading. A live mapping with no catalog entry of the same name or
table is left out with a warning: its API entity set cannot be derived from BC's table name.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from d365kit.bc import BCClient
from d365kit.dataverse import DataverseClient
from d365kit.errors import CatalogError, D365Error
from d365kit.mapping.filters import terms, translate
from d365kit.mapping.model import (
    BC_APIS,
    BC_DIRECTIONS,
    COMPARE_KINDS,
    DIRECTIONS,
    TENANT,
    Catalog,
    FieldMapping,
    OptionMap,
    TableMapping,
)
from d365kit.odata.metadata import EntityType, ServiceMetadata

DEFAULT_CATALOG = Path(__file__).with_name("catalog.toml")
_TABLE_KEYS = {f.name for f in dataclasses.fields(TableMapping)} - {"fields"} | {"field", "extends", "remove"}
_FIELD_KEYS = {f.name for f in dataclasses.fields(FieldMapping)} | {"remove"}
_OPTION_KEYS = {"values", "bc_entity"}
_FILTER_NAMES = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s+(?:eq|ne|gt|ge|lt|le)\s")
_OPTION_API = "v2.0"  # the option tables (paymentTerms, shipmentMethods) are standard API v2.0 entities


@dataclass(frozen=True)
class Issue:
    """One problem with a catalog entry, precise enough to fix it."""

    mapping: str
    problem: str
    field: str | None = None
    suggestions: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"mapping {self.mapping}" + (f", field {self.field}" if self.field else "")
        hint = f"; closest valid names: {', '.join(map(repr, self.suggestions))}" if self.suggestions else ""
        return f"{where}: {self.problem}{hint}"


def _close(name: str, candidates: Iterable[str]) -> tuple[str, ...]:
    return tuple(difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6))


# -- parsing and merging ---------------------------------------------------------------------------


def _read(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    with open(source, "rb") as fh:
        return tomllib.load(fh)


def _unknown_keys(entry: dict[str, Any], allowed: set[str], mapping: str, fld: str | None) -> list[Issue]:
    return [Issue(mapping, f"unknown key {k!r}", fld, _close(k, allowed)) for k in entry if k not in allowed]


def _parse_field(d: dict[str, Any], mapping: str) -> tuple[FieldMapping | None, list[Issue]]:
    label = d.get("bc") or d.get("caption") or d.get("dv") or "?"
    issues = _unknown_keys(d, _FIELD_KEYS, mapping, label)
    if d.get("direction") not in DIRECTIONS:
        issues.append(Issue(mapping, f"direction {d.get('direction')!r} is not one of {DIRECTIONS}", label))
    if d.get("compare") not in (None, *COMPARE_KINDS):
        issues.append(Issue(mapping, f"compare {d['compare']!r} is not one of {COMPARE_KINDS}", label))
    transform = d.get("transform")
    if transform is not None and transform.split(":", 1)[0] not in ("lookup", "option"):
        issues.append(
            Issue(mapping, f"transform {transform!r} is not 'lookup:<MAPPING>' or 'option:<name>'", label)
        )
    if issues:
        return None, issues
    kw = {"bc": None, "dv": None, **{k: v for k, v in d.items() if k != "remove"}}
    return FieldMapping(**kw), []


def _parse_mapping(d: dict[str, Any]) -> tuple[TableMapping | None, list[Issue]]:
    name = str(d.get("name", "?"))
    issues = _unknown_keys(d, _TABLE_KEYS, name, None)
    for key in ("name", "bc_entity", "dv_entity", "direction"):
        if not d.get(key):
            issues.append(Issue(name, f"missing {key!r}"))
    if d.get("direction") and d["direction"] not in DIRECTIONS:
        issues.append(Issue(name, f"direction {d['direction']!r} is not one of {DIRECTIONS}"))
    if d.get("bc_api", "v2.0") not in BC_APIS:
        issues.append(Issue(name, f"bc_api {d['bc_api']!r} is not one of {tuple(BC_APIS)}"))
    fields = []
    for fd in d.get("field", []):
        f, problems = _parse_field(fd, name)
        issues += problems
        if f is not None:
            fields.append(f)
    if issues:
        return None, issues
    kw = {k: v for k, v in d.items() if k not in ("field", "extends", "remove")}
    kw["dependencies"] = tuple(kw.get("dependencies", ()))
    if "bc_modified" in kw:
        kw["bc_modified"] = kw["bc_modified"] or None  # "" in TOML: the entity has no modification time
    return TableMapping(fields=tuple(fields), **kw), []


def parse_catalog(data: dict[str, Any]) -> Catalog:
    """A Catalog from the TOML shape (``[[mapping]]`` with ``[[mapping.field]]``, ``[options.*]``)."""
    issues: list[Issue] = []
    mappings: dict[str, TableMapping] = {}
    for d in data.get("mapping", []):
        m, problems = _parse_mapping(d)
        issues += problems
        if m is not None:
            if m.name in mappings:
                issues.append(Issue(m.name, "defined twice"))
            mappings[m.name] = m
    options = {}
    for name, od in data.get("options", {}).items():
        issues += _unknown_keys(od, _OPTION_KEYS, f"options.{name}", None)
        options[name] = OptionMap(
            name, {str(k): int(v) for k, v in od.get("values", {}).items()}, od.get("bc_entity")
        )
    if issues:
        raise CatalogError(issues)
    return Catalog(mappings, options)


def _field_id(d: dict[str, Any]) -> tuple[Any, Any]:
    return d.get("bc"), d.get("dv")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Apply an override (TOML shape) to a base (TOML shape); see the module docstring for the rules."""
    out = {"options": {k: dict(v) for k, v in base.get("options", {}).items()}, "mapping": []}
    for name, od in override.get("options", {}).items():
        target = out["options"].setdefault(name, {})
        target["values"] = {**target.get("values", {}), **od.get("values", {})}
        if "bc_entity" in od:
            target["bc_entity"] = od["bc_entity"]
    by_name = {d["name"]: dict(d) for d in base.get("mapping", [])}
    issues = []
    for od in override.get("mapping", []):
        name = od.get("name")
        if od.get("remove"):
            by_name.pop(name, None)
        elif od.get("extends"):
            if name not in by_name:
                issues.append(
                    Issue(
                        str(name), "extends a mapping that does not exist", None, _close(str(name), by_name)
                    )
                )
                continue
            entry = by_name[name]
            fields = [dict(f) for f in entry.get("field", [])]
            for fo in od.get("field", []):
                hit = next((f for f in fields if _field_id(f) == _field_id(fo)), None)
                if fo.get("remove"):
                    fields = [f for f in fields if f is not hit]
                elif hit is not None:
                    hit.update(fo)
                else:
                    fields.append(dict(fo))
            entry.update({k: v for k, v in od.items() if k not in ("field", "extends")})
            entry["field"] = fields
        else:
            by_name[name] = dict(od)
    if issues:
        raise CatalogError(issues)
    out["mapping"] = list(by_name.values())
    return out


def load_catalog(
    path: str | Path | dict[str, Any] | None = None, *, overrides: Iterable[str | Path | dict[str, Any]] = ()
) -> Catalog:
    """The catalog at ``path`` (default: the package's), with each override file applied in order."""
    data = _read(path or DEFAULT_CATALOG)
    for o in overrides:
        data = merge(data, _read(o))
    return parse_catalog(data)


# -- live mappings ---------------------------------------------------------------------------------


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def guess_bc_property(caption: str, properties: Iterable[str]) -> str | None:
    """The property spelled like ``caption`` ignoring case and punctuation ("Phone No." -> ``phoneNo``)."""
    key = _squash(caption)
    return next((p for p in properties if key and _squash(p) == key), None)


def _text(value: Any) -> str:
    return "" if value is None or pd.isna(value) else str(value)


def _live_field(row: pd.Series, default: TableMapping, bc_props: Iterable[str]) -> FieldMapping:
    caption, dv = _text(row.get("fieldName")), _text(row.get("integrationFieldName")) or None
    constant = _text(row.get("constantValue")) or None
    known = next((f for f in default.fields if f.caption == caption and f.dv == dv), None)
    if known is None and constant is None:
        known = next((f for f in default.fields if caption and f.caption == caption and f.bc), None)
    bc = known.bc if known else (guess_bc_property(caption, bc_props) if caption else None)
    match = bool(row.get("useForMatchBasedCoupling"))
    return FieldMapping(
        bc=bc,
        dv=dv,
        direction=BC_DIRECTIONS.get(_text(row.get("direction")), default.direction),  # type: ignore[arg-type]
        caption=caption,
        constant=constant,
        transform=known.transform if known and known.dv == dv else None,
        match_priority=int(row.get("matchPriority") or 0) if match else None,
        case_sensitive=bool(row.get("caseSensitiveMatching")),
        companion_only=bc is None and constant is None and dv is not None,
        not_null=bool(row.get("notNull")),
        compare=known.compare if known else None,
        tolerance=known.tolerance if known else None,
    )


def _bc_property(caption: str, properties: Iterable[str]) -> str | None:
    """A BC field caption's API property: same spelling, or with "No." read as "Number" (Company No.)."""
    return guess_bc_property(caption, properties) or guess_bc_property(
        re.sub(r"\bNo\.?$", "Number", caption.strip()), properties
    )


def _scopes(
    default: TableMapping,
    row: pd.Series,
    bc_et: EntityType | None,
    dataverse: DataverseClient,
    dv_entity: str,
) -> dict[str, Any]:
    """The tenant's Table Filter and Integration Table Filter as the mapping's OData scope. A filter that
    cannot be translated keeps the default's for that side and is named in ``filter_problems``."""
    bc_view, dv_view = _text(row.get("tableFilter")), _text(row.get("integrationTableFilter"))
    props = bc_et.properties if bc_et else {}
    bc_t = translate(bc_view, lambda c: _bc_property(c, props), props, lambda p, label: None)
    dv_et = dataverse.metadata().entity_sets.get(dv_entity)
    dv_props = dv_et.properties if dv_et else {}

    def option(prop: str, label: str) -> int | None:
        # BC's proxy tables name options by their AL member (SalesInventory), Dataverse by label
        # ("Sales Inventory"): compared ignoring case, spaces and punctuation
        labels = {_squash(k): v for k, v in dataverse.option_values(dv_entity, prop).items()}
        return labels.get(_squash(label))

    dv_t = translate(dv_view, lambda c: dv_column(dv_et, c.lower()) if dv_et else None, dv_props, option)
    out: dict[str, Any] = {"bc_table_view": bc_view, "dv_table_view": dv_view}
    problems = []
    if bc_t.problem:
        problems.append(f"Table Filter {bc_view}: {bc_t.problem}; BC's default filter is used instead")
    else:
        out["bc_filter"] = bc_t.filter
    if dv_t.problem:
        problems.append(
            f"Integration Table Filter {dv_view}: {dv_t.problem}; BC's default filter is used instead"
        )
    else:
        out["dv_filter"] = dv_t.filter
        out["dv_company_field"] = default.dv_company_field if dv_t.company else None
        out["dv_lookup_types"] = dict(dv_t.lookup_types)
    out["filter_problems"] = tuple(problems)
    return out


def _choice_columns(
    tables: pd.DataFrame, dataverse: DataverseClient, dv_sets: dict[str, str]
) -> list[tuple[str, str]]:
    """(entity set, attribute) of every choice column the tenant's Integration Table Filters name."""
    found = []
    for _, row in tables.iterrows():
        entity = dv_sets.get(_text(row.get("integrationTableName")))
        et = dataverse.metadata().entity_sets.get(entity) if entity else None
        for caption, _ in (terms(_text(row.get("integrationTableFilter"))) or []) if et else []:
            column = dv_column(et, caption.lower())  # type: ignore[arg-type]
            if column and et.properties.get(column, "").startswith("Edm.Int"):  # type: ignore[union-attr]
                found.append((entity, column))
    return found


def load_live(bc: BCClient, dataverse: DataverseClient, base: Catalog | None = None) -> Catalog:
    """The tenant's own mappings from the companion API, named in API terms with ``base``'s help."""
    base = base or load_catalog()
    tables, fields = bc.table_mappings(), bc.field_mappings()
    dv_sets = {et.name: name for name, et in dataverse.metadata().entity_sets.items()}
    mappings: dict[str, TableMapping] = {}
    warnings: list[str] = []
    dataverse.prefetch_options(_choice_columns(tables, dataverse, dv_sets))  # one $batch for all filters
    for _, row in tables.iterrows():
        name, table_id = _text(row["name"]), int(row["tableId"])
        default = base.mappings.get(name) or base.by_table_id(table_id)
        if default is None:
            warnings.append(
                f"live mapping {name} (BC table {table_id} {_text(row.get('tableName'))}) has no catalog entry "
                "naming its BC API entity set; add one in an override file"
            )
            continue
        bc_props = bc.metadata(default.api_path).entity_sets.get(default.bc_entity)
        rows = fields[(fields["integrationTableMappingName"] == name) & (fields["status"] != "Disabled")]
        if "no" in rows:
            rows = rows.sort_values("no")
        live_fields = [
            _live_field(r, default, bc_props.properties if bc_props else ()) for _, r in rows.iterrows()
        ]
        dv_entity = dv_sets.get(_text(row.get("integrationTableName")), default.dv_entity)
        scopes = _scopes(default, row, bc_props, dataverse, dv_entity)
        mappings[name] = dataclasses.replace(
            default,
            name=name,
            bc_table_id=table_id,
            dv_entity=dv_entity,
            **scopes,
            direction=BC_DIRECTIONS.get(_text(row.get("direction")), default.direction),  # type: ignore[arg-type]
            fields=tuple(live_fields),
            dependencies=tuple(d for d in _text(row.get("dependencyFilter")).split("|") if d),
            synch_only_coupled=bool(row.get("synchOnlyCoupledRecords", default.synch_only_coupled)),
            update_conflict=_text(row.get("updateConflictResolution")).replace("_x0020_", " ").strip()
            or "None",
            deletion_conflict=_text(row.get("deletionConflictResolution")).replace("_x0020_", " ").strip()
            or "None",
        )
    return Catalog(mappings, base.options, tuple(warnings), source=TENANT)


# -- validation ------------------------------------------------------------------------------------


def dv_column(et: EntityType, name: str) -> str | None:
    """The Web API property holding Dataverse attribute ``name`` (lookups read as ``_<name>_value``)."""
    if name in et.properties:
        return name
    lookup = f"_{name}_value"
    return lookup if lookup in et.properties else None


def _dv_names(et: EntityType) -> list[str]:
    return [p[1:-6] if p.startswith("_") and p.endswith("_value") else p for p in et.properties]


def _check_bc(m: TableMapping, et: EntityType, what: str, name: str, fld: str | None) -> list[Issue]:
    if name in et.properties:
        return []
    return [Issue(m.name, f"BC {m.bc_entity!r} has no {what} {name!r}", fld, _close(name, et.properties))]


def _check_dv(m: TableMapping, et: EntityType, what: str, name: str, fld: str | None) -> list[Issue]:
    if dv_column(et, name) is not None:
        return []
    return [
        Issue(m.name, f"Dataverse {m.dv_entity!r} has no {what} {name!r}", fld, _close(name, _dv_names(et)))
    ]


def _check_filter(m: TableMapping, et: EntityType, text: str | None, side: str) -> list[Issue]:
    issues = []
    for name in _FILTER_NAMES.findall(text or ""):
        if name not in et.properties:
            entity = m.bc_entity if side == "BC" else m.dv_entity
            issues.append(
                Issue(
                    m.name,
                    f"{side} filter names {name!r}, which {entity!r} does not have",
                    None,
                    _close(name, et.properties),
                )
            )
    return issues


def _entity(md: ServiceMetadata, name: str) -> EntityType | None:
    return md.entity_sets.get(name)


def _validate_mapping(
    m: TableMapping, catalog: Catalog, bc_metadata: Callable[[str], ServiceMetadata], dv_md: ServiceMetadata
) -> list[Issue]:
    issues: list[Issue] = []
    try:
        bc_md = bc_metadata(m.api_path)
    except D365Error as exc:
        return [Issue(m.name, f"BC API {m.api_path!r} is not available ({exc})")]
    bc_et, dv_et = _entity(bc_md, m.bc_entity), _entity(dv_md, m.dv_entity)
    if bc_et is None:
        issues.append(
            Issue(
                m.name,
                f"BC ({m.api_path}) has no entity set {m.bc_entity!r}",
                None,
                _close(m.bc_entity, bc_md.entity_sets),
            )
        )
    if dv_et is None:
        issues.append(
            Issue(
                m.name,
                f"Dataverse has no entity set {m.dv_entity!r}",
                None,
                _close(m.dv_entity, dv_md.entity_sets),
            )
        )
    if bc_et is not None:
        for what, name in (("key", m.bc_key), ("modification time", m.bc_modified)):
            if name:
                issues += _check_bc(m, bc_et, what, name, None)
        issues += _check_filter(m, bc_et, m.bc_scope, "BC")
    if dv_et is not None:
        issues += _check_dv(m, dv_et, "modification time", m.dv_modified, None)
        for name in (m.dv_company_field, m.lookup_fallback, *m.dv_lookup_types):
            if name:
                issues += _check_dv(m, dv_et, "attribute", name, None)
        issues += _check_filter(m, dv_et, m.dv_filter, "Dataverse")
    for f in m.fields:
        if f.bc and bc_et is not None:
            issues += _check_bc(m, bc_et, "property", f.bc, f.label)
        if f.dv and dv_et is not None:
            # EntityName attributes (owneridtype) are the type half of a lookup: check the lookup itself.
            target = f.dv[:-4] if f.constant is not None and f.dv.endswith("idtype") else f.dv
            issues += _check_dv(m, dv_et, "attribute", target, f.label)
        issues += _validate_transform(m, f, catalog, bc_metadata)
    return issues


def _validate_transform(
    m: TableMapping, f: FieldMapping, catalog: Catalog, bc_metadata: Callable[[str], ServiceMetadata]
) -> list[Issue]:
    if not f.transform:
        return []
    kind, _, target = f.transform.partition(":")
    if kind == "lookup":
        if target not in catalog.mappings:
            return [
                Issue(
                    m.name,
                    f"transform {f.transform!r} names no mapping of the catalog",
                    f.label,
                    _close(target, catalog.mappings),
                )
            ]
        if not catalog.mappings[target].bc_key:
            return [
                Issue(
                    m.name,
                    f"transform {f.transform!r}: mapping {target} has no bc_key to look up by",
                    f.label,
                )
            ]
        return []
    option = catalog.options.get(target)
    if option is None:
        return [
            Issue(
                m.name,
                f"transform {f.transform!r} names no option map",
                f.label,
                _close(target, catalog.options),
            )
        ]
    if f.comparable and option.bc_entity and option.bc_entity not in bc_metadata(_OPTION_API).entity_sets:
        return [Issue(m.name, f"option map {target!r}: BC has no entity set {option.bc_entity!r}", f.label)]
    return []


def validate(
    catalog: Catalog,
    bc_metadata: Callable[[str], ServiceMetadata],
    dv_metadata: ServiceMetadata,
    names: Iterable[str] | None = None,
) -> list[Issue]:
    """Every problem of the named mappings (default: all) against the services' metadata.

    ``bc_metadata(api_path)`` gives BC's metadata for ``v2.0`` or the companion API path."""
    issues = []
    for name in names if names is not None else catalog.names:
        m = catalog[name]
        issues += _validate_mapping(m, catalog, bc_metadata, dv_metadata)
        for f in m.fields:
            if f.direction != m.direction and m.direction != "bidirectional":
                issues.append(
                    Issue(
                        m.name,
                        f"field direction {f.direction} contradicts the table's {m.direction}",
                        f.label,
                    )
                )
    return issues


def check(
    catalog: Catalog, bc: BCClient, dataverse: DataverseClient, names: Iterable[str] | None = None
) -> Catalog:
    """``catalog`` when it matches the two services' ``$metadata``, else ``CatalogError`` listing every issue."""
    issues = validate(catalog, bc.metadata, dataverse.metadata(), names)
    if issues:
        raise CatalogError(issues)
    return catalog
