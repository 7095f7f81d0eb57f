"""Value transforms between BC and Dataverse, and the normalisation used to compare them. All vectorized.

A transform is two-way: ``to_dataverse(bc_values)`` gives what BC's sync would write to Dataverse and
``from_dataverse(dv_values)`` what it would write back to BC (in the BC property's own terms).

- ``LookupTransform``: a BC code (salesperson code, currency code, unit code, price group code, item or
  contact number) <-> the Dataverse row id coupled to the BC row with that code (``ownerid``,
  ``transactioncurrencyid``, ``defaultuomscheduleid``, ``pricelevelid``, ``productid``,
  ``parentcontactid``). Built from the referenced mapping's BC rows and couplings; ``fallback`` resolves
  codes that have no BC row at all (BC's LCY, which has no Currency row, is the Dataverse currency with
  that ISO code).
- ``OptionTransform``: BC code (or the id of the code's row, e.g. ``paymentTermsId``) <-> Dataverse
  option value (payment terms NET30 = 1, ...). Codes missing from the map give NA (BC appends such
  options at sync time; add them to the catalog's option map).
- ``bc_enum_decode``/``bc_enum_encode``: BC API enum spelling (``In_x0020_Progress``) <-> text.
- ``normalize``/``equal``: comparison rules per kind: trim, blank == null, case (unless case-sensitive),
  phone (digits and ``+`` only), URL (no scheme, no trailing ``/``, case-insensitive), e-mail
  (case-insensitive), decimals within a tolerance, dates by day, GUIDs lower case with the blank GUID
  as null.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

BLANK_GUID = "00000000-0000-0000-0000-000000000000"
DEFAULT_TOLERANCE = 0.005  # half a cent: BC and Dataverse both round money to 2 decimals
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_NEEDS_ESCAPE = re.compile(r"[^0-9A-Za-z_]")
_EDM_KINDS = {
    "Edm.String": "text",
    "Edm.Decimal": "decimal",
    "Edm.Double": "decimal",
    "Edm.Single": "decimal",
    "Edm.Int16": "integer",
    "Edm.Int32": "integer",
    "Edm.Int64": "integer",
    "Edm.Byte": "integer",
    "Edm.Date": "date",
    "Edm.DateTimeOffset": "date",
    "Edm.Guid": "guid",
    "Edm.Boolean": "boolean",
}


def kind_of(edm_type: str | None) -> str:
    """The comparison kind of an EDM type (enums and unknown types compare as text)."""
    return _EDM_KINDS.get(edm_type or "", "text")


# -- BC enum spelling ------------------------------------------------------------------------------


def _by_distinct(values: pd.Series, convert: Callable[[str], str]) -> pd.Series:
    """``convert`` applied once per distinct value (enum columns hold a handful), then mapped."""
    values = values.astype("string")
    distinct = values.dropna().unique()
    return values.map(dict(zip(distinct, map(convert, distinct), strict=True))).astype("string")


def bc_enum_decode(values: pd.Series) -> pd.Series:
    """``In_x0020_Progress`` -> ``In Progress`` (any ``_xHHHH_`` escape)."""
    return _by_distinct(values, lambda v: _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), v))


def bc_enum_encode(values: pd.Series) -> pd.Series:
    """``In Progress`` -> ``In_x0020_Progress`` (characters outside ``[0-9A-Za-z_]`` escaped)."""
    return _by_distinct(values, lambda v: _NEEDS_ESCAPE.sub(lambda m: f"_x{ord(m.group(0)):04X}_", v))


# -- lookups and options ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LookupTransform:
    """BC code <-> coupled Dataverse id. ``codes``: code -> Dataverse id; ``reverse``: Dataverse id -> code."""

    name: str
    codes: pd.Series
    reverse: pd.Series

    @classmethod
    def from_frames(
        cls,
        name: str,
        bc_rows: pd.DataFrame,
        key: str,
        couplings: pd.DataFrame,
        fallback: pd.Series | None = None,
    ) -> LookupTransform:
        """``bc_rows``: the referenced BC rows (``id``, ``key``); ``couplings``: ledger rows of that table;
        ``fallback``: code -> Dataverse id for codes that have no BC row.

        A BC row coupled twice resolves to the coupling listed first (the duplicate is reported by
        that mapping's own reconcile)."""
        ids = bc_rows[["id", key]].dropna().drop_duplicates("id")
        pairs = couplings[["bc_id", "dataverse_id"]].drop_duplicates("bc_id")
        joined = ids.merge(pairs, left_on="id", right_on="bc_id", how="inner")
        codes = pd.Series(joined["dataverse_id"].to_numpy(), index=joined[key].to_numpy()).dropna()
        codes = codes[~codes.index.duplicated()]
        if fallback is not None and len(fallback):
            fallback = fallback[~fallback.index.isin(ids[key])]
            codes = pd.concat([codes, fallback[~fallback.index.isin(codes.index)]])
        reverse = pd.Series(codes.index.to_numpy(), index=codes.to_numpy())
        return cls(name, codes.astype("string"), reverse[~reverse.index.duplicated()].astype("string"))

    def to_dataverse(self, values: pd.Series) -> pd.Series:
        return values.astype("string").str.strip().map(self.codes).astype("string")

    def from_dataverse(self, values: pd.Series) -> pd.Series:
        return values.astype("string").str.lower().map(self.reverse).astype("string")

    def bc_label(self, values: pd.Series) -> pd.Series:
        return values.astype("string")


@dataclass(frozen=True)
class OptionTransform:
    """BC code <-> Dataverse option value; ``ids`` (BC row id -> code) when the BC property holds ids."""

    name: str
    values: Mapping[str, int]
    ids: pd.Series | None = None

    def bc_label(self, values: pd.Series) -> pd.Series:
        """The BC code of each value (resolving ids)."""
        values = values.astype("string")
        if self.ids is not None:
            return values.str.lower().map(self.ids).astype("string")
        return values

    def to_dataverse(self, values: pd.Series) -> pd.Series:
        return self.bc_label(values).map(dict(self.values)).astype("Int64")

    def from_dataverse(self, values: pd.Series) -> pd.Series:
        codes = (
            pd.to_numeric(values, errors="coerce").astype("Int64").map({v: k for k, v in self.values.items()})
        )
        if self.ids is None:
            return codes.astype("string")
        by_code = pd.Series(self.ids.index.to_numpy(), index=self.ids.to_numpy())
        return codes.map(by_code[~by_code.index.duplicated()]).astype("string")


Transform = LookupTransform | OptionTransform


# -- comparison ------------------------------------------------------------------------------------


def _text(values: pd.Series) -> pd.Series:
    s = values.astype("string").str.strip()
    return s.mask(s == "")


def _ascii_only(arrow: Any) -> bool:
    """No byte of the strings' data buffers is outside ASCII. A buffer may also hold bytes of values sliced
    away, so "no" means "check value by value", never "not ASCII"."""
    import pyarrow as pa

    for chunk in arrow.chunks:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            return False
        data = chunk.buffers()[2]
        if data is not None and np.frombuffer(data, dtype=np.uint8).max(initial=0) >= 0x80:
            return False
    return True


def _casefold(s: pd.Series) -> pd.Series:
    """``s.str.casefold()``. Python's casefold runs once per value (0.7 s per million values); on
    pyarrow-backed strings, ASCII values, whose casefold is their ASCII lower case, are lowered by pyarrow
    and only the other values (``Straße`` -> ``strasse``) go through Python's casefold."""
    if getattr(s.dtype, "storage", None) != "pyarrow":
        return s.str.casefold()
    import pyarrow.compute as pc

    arrow = s.array.__arrow_array__()
    out = pd.Series(pd.arrays.ArrowStringArray(pc.ascii_lower(arrow)), index=s.index, name=s.name, copy=False)
    if not _ascii_only(arrow):
        other = np.flatnonzero(~pc.fill_null(pc.string_is_ascii(arrow), True).to_numpy())
        if len(other):
            out.iloc[other] = s.iloc[other].str.casefold().to_numpy()
    return out


def normalize(values: pd.Series, kind: str, case_sensitive: bool = False) -> pd.Series:
    """The comparable form of ``values`` for a comparison ``kind`` (see the module docstring)."""
    if kind == "decimal":
        return pd.to_numeric(values, errors="coerce").astype("float64")
    if kind == "integer":
        return pd.to_numeric(values, errors="coerce").astype("Int64")
    if kind == "boolean":
        return values.astype("boolean")
    if kind == "date":
        dates = pd.to_datetime(values, errors="coerce", utc=True)
        return dates.dt.tz_localize(None).dt.normalize()
    s = _text(values)
    if kind == "guid":
        s = s.str.lower()
        return s.mask(s == BLANK_GUID)
    if kind == "phone":
        s = s.str.replace(r"[^\d+]", "", regex=True)
        return s.mask(s == "")
    if kind == "url":
        s = s.str.lower().str.replace(r"^[a-z]+://", "", regex=True).str.rstrip("/")
        return s.mask(s == "")
    if kind == "email" or not case_sensitive:
        return _casefold(s)
    return s


def equal(left: pd.Series, right: pd.Series, kind: str, tolerance: float | None = None) -> pd.Series:
    """Element-wise equality of two normalized series: null equals null, decimals within ``tolerance``."""
    both_na = left.isna().to_numpy() & right.isna().to_numpy()
    if kind == "decimal":
        tol = DEFAULT_TOLERANCE if tolerance is None else tolerance
        same = ((left - right).abs() <= tol).fillna(False).to_numpy(dtype=bool)
    else:
        same = (left == right).fillna(False).to_numpy(dtype=bool)
    return pd.Series(same | both_na, index=left.index)
