"""Source rows -> the target's values, per mapping and direction, column by column (never a loop per row).

A field is written in a direction when both the mapping and the field allow it (``bidirectional`` or that
direction) and both its sides are readable (``FieldMapping.comparable``). Values go through the same
transforms reconcile compares with (``TransformContext``): a BC code becomes the id of the coupled Dataverse
row and back, an option code its option value and back.

Values are JSON-ready: what the target's API takes and gives back. Dataverse: a blank text is null (BC's
sync writes "" and Dataverse stores null), a lookup is the target row's id (written with
``<navigation>@odata.bind``). BC: a null becomes the type's blank (``""``, 0, ``0001-01-01``, the blank
GUID), as BC fields have no null. Choice (UNVERIFIED: what BC's own sync writes for a null Dataverse
decimal): 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from d365kit.errors import SyncPlanError
from d365kit.mapping import FieldMapping, TableMapping, dv_column
from d365kit.mapping.transforms import BLANK_GUID, LookupTransform, bc_enum_encode, equal, kind_of, normalize
from d365kit.reconcile import TransformContext
from d365kit.systems import Systems
from d365kit.timestamps import iso_series


def allows(direction: str, wanted: str) -> bool:
    """Does a mapping or field of ``direction`` sync in the ``wanted`` direction?"""
    return direction in ("bidirectional", wanted)


@dataclass(frozen=True)
class Column:
    """One field as written in one direction: where its value comes from and where it goes."""

    field: FieldMapping
    source: str  # the source column as read (BC property, or Dataverse column such as _ownerid_value)
    target: str  # the target column as read
    name: str  # the field's name on the target side (Dataverse attribute or BC property)
    edm: str  # the target column's EDM type
    bind: tuple[str, str] | None = None  # Dataverse lookup: (navigation property, entity set)


def navigation(systems: Systems, entity_set: str, attribute: str, target_set: str) -> str:
    """The navigation property that binds ``attribute`` to a row of ``target_set`` (``parentcustomerid``
    to an account is ``parentcustomerid_account``)."""
    md = systems.dataverse.metadata()
    navs = md.entity(entity_set).navigation
    if attribute in navs:
        return attribute
    typed = f"{attribute}_{md.entity(target_set).name}"
    if typed in navs:
        return typed
    raise SyncPlanError(
        f"Dataverse {entity_set} has no navigation property to bind {attribute} to {target_set}"
    )


def columns(ctx: TransformContext, m: TableMapping, direction: str) -> list[Column]:
    """The fields of ``m`` written in ``direction``, each target column once (first field wins)."""
    systems = ctx.systems
    et = systems.dataverse.metadata().entity(m.dv_entity)
    bc_props = systems.bc.metadata(m.api_path).entity(m.bc_entity).properties
    out: dict[str, Column] = {}
    for f in m.compared:
        if not allows(f.direction, direction):
            continue
        dv_col = dv_column(et, f.dv)  # type: ignore[arg-type]
        if direction == "to_dataverse":
            bind = None
            if f.transform and f.transform.startswith("lookup:"):
                target_set = ctx.catalog[f.transform[7:]].dv_entity
                bind = (navigation(systems, m.dv_entity, f.dv, target_set), target_set)  # type: ignore[arg-type]
            column = Column(f, f.bc, dv_col, f.dv, et.properties[dv_col], bind)  # type: ignore[arg-type,index]
        else:
            column = Column(f, dv_col, f.bc, f.bc, bc_props[f.bc])  # type: ignore[arg-type,index]
        out.setdefault(column.target, column)
    return list(out.values())


# -- JSON-ready values -------------------------------------------------------------------------------


def _objects(values: pd.Series, fill: Any = None) -> pd.Series:
    out = values.astype(object)
    return out.where(values.notna().to_numpy(dtype=bool), fill)


def _blank(values: pd.Series) -> np.ndarray:
    text = values.astype("string").str.strip()
    return (text.isna() | (text == "") | (text.str.lower() == BLANK_GUID)).to_numpy(dtype=bool)


def dv_json(values: pd.Series, edm: str) -> pd.Series:
    """Values as Dataverse takes them (blank text and the blank GUID are null)."""
    if edm in ("Edm.Decimal", "Edm.Double", "Edm.Single"):
        return _objects(pd.to_numeric(values, errors="coerce").astype("float64"))
    if edm.startswith("Edm.Int") or edm == "Edm.Byte":
        return _objects(pd.to_numeric(values, errors="coerce").astype("Int64"))
    if edm == "Edm.Boolean":
        return _objects(values.astype("boolean"))
    if edm == "Edm.Date":
        return _objects(pd.to_datetime(values, errors="coerce").dt.strftime("%Y-%m-%d"))
    if edm == "Edm.DateTimeOffset":
        return _objects(iso_series(values))
    text = values.astype("string")
    if edm == "Edm.Guid":
        text = text.str.lower()
    return _objects(text.mask(_blank(text)))


def bc_json(values: pd.Series, edm: str) -> pd.Series:
    """Values as BC takes them: no nulls (each type's blank instead); enums in API spelling."""
    if edm in ("Edm.Decimal", "Edm.Double", "Edm.Single"):
        return _objects(pd.to_numeric(values, errors="coerce").astype("float64"), 0.0)
    if edm.startswith("Edm.Int") or edm == "Edm.Byte":
        return _objects(pd.to_numeric(values, errors="coerce").astype("Int64"), 0)
    if edm == "Edm.Boolean":
        return _objects(values.astype("boolean"), False)
    if edm == "Edm.Date":
        return _objects(pd.to_datetime(values, errors="coerce").dt.strftime("%Y-%m-%d"), "0001-01-01")
    if edm == "Edm.DateTimeOffset":
        return dv_json(values, edm)
    if edm == "Edm.Guid":
        return _objects(values.astype("string").str.lower(), BLANK_GUID)
    if not edm.startswith("Edm."):
        text = values.astype("string")
        return _objects(bc_enum_encode(text.mask(text.str.strip() == "")))
    return _objects(values.astype("string"), "")


def to_json(values: pd.Series, edm: str, side: str) -> pd.Series:
    return dv_json(values, edm) if side == "dataverse" else bc_json(values, edm)


def compare_kind(edm: str) -> str:
    """How a written value is compared with what the service gives back (text case-sensitively)."""
    return kind_of(edm) if edm.startswith("Edm.") else "text"


def same(read: pd.Series, written: pd.Series, edm: str) -> np.ndarray:
    """Element-wise: does the service hold the value written? (blank text equals null)."""
    kind = compare_kind(edm)
    left = normalize(read.reset_index(drop=True), kind, True)
    right = normalize(pd.Series(list(written), dtype=object), kind, True)
    return equal(left, right, kind).to_numpy(dtype=bool)


# -- conversion ---------------------------------------------------------------------------------------


@dataclass
class Converted:
    """Target values of source rows (JSON-ready, one column per target column), whether each is transferred
    (BC's "Not Null": a blank is not), and a note where a value has no counterpart on the target side (a
    code whose row is not coupled, an option the map lacks)."""

    values: pd.DataFrame
    transfer: pd.DataFrame
    notes: pd.DataFrame


def convert(
    ctx: TransformContext, m: TableMapping, direction: str, cols: list[Column], src: pd.DataFrame
) -> Converted:
    """The target values of the rows of ``src`` (the source side's rows, typed as read)."""
    side = "dataverse" if direction == "to_dataverse" else "bc"
    values, transfer, notes = {}, {}, {}
    for c in cols:
        f, t = c.field, ctx.transform(m, c.field)
        raw = src[c.source] if c.source in src else pd.Series(pd.NA, index=src.index, dtype="string")
        if direction == "to_dataverse":
            raw = ctx.bc_values(m, f, raw)
            new = t.to_dataverse(raw) if t else raw
        else:
            new = t.from_dataverse(raw) if t else raw
        blank = _blank(raw)
        note = pd.Series(pd.NA, index=src.index, dtype="string")
        if t is not None:
            lost = ~blank & new.isna().to_numpy(dtype=bool)
            what = f"no coupled {t.name} row" if isinstance(t, LookupTransform) else f"no {t.name} option"
            note = note.mask(lost, f"{f.label} " + raw.astype("string").fillna("") + f": {what}")
        values[c.target] = to_json(new, c.edm, side).to_numpy()
        transfer[c.target] = ~(blank & f.not_null) if direction == "to_dataverse" else np.ones(len(src), bool)
        notes[c.target] = note.to_numpy()
    return Converted(
        pd.DataFrame(values, index=src.index, dtype=object),
        pd.DataFrame(transfer, index=src.index, dtype=bool),
        pd.DataFrame(notes, index=src.index, dtype=object),
    )


def wire(
    cols_by_target: dict[str, Column], after: dict[str, Any], binds: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """The request body writing ``after`` (lookups as ``@odata.bind``)."""
    body: dict[str, Any] = {}
    for column, value in after.items():
        bind = cols_by_target[column].bind if column in cols_by_target else binds.get(column)
        if bind is None:
            body[column] = value
        else:
            nav, entity_set = bind
            body[f"{nav}@odata.bind"] = None if value is None else f"/{entity_set}({value})"
    return body
