"""Rows to typed pandas DataFrames, with one set of conventions for both services.

- Edm.DateTimeOffset -> ``datetime64[ns, UTC]`` (tz-aware); Edm.Date -> ``datetime64[ns]`` (naive, midnight);
  BC's empty date ``0001-01-01`` (and datetime ``0001-01-01T00:00:00Z``) -> NaT.
- Edm.Decimal/Double -> ``float64``; Edm.Int32/Int64 -> nullable ``Int64``; Edm.Boolean -> nullable ``boolean``.
- Edm.Guid -> ``string`` (lower case); Edm.String and enums -> ``string`` (pandas' StringDtype).
- Dataverse lookups keep their wire name ``_x_value`` (a GUID string column).
- Annotations such as ``name@OData.Community.Display.V1.FormattedValue`` become ``name@formatted``;
  ``@odata.etag`` becomes ``_etag``; other ``@`` keys are dropped.
Conversion is column-wise (vectorized), never a Python loop per value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

FORMATTED = "@OData.Community.Display.V1.FormattedValue"


def _rename(col: str) -> str | None:
    if col == "@odata.etag":
        return "_etag"
    if col.endswith(FORMATTED):
        return col[: -len(FORMATTED)] + "@formatted"
    if "@" in col:
        return None
    return col


def convert(frame: pd.DataFrame, types: Mapping[str, str]) -> pd.DataFrame:
    """Type the columns of ``frame`` from their EDM ``types`` (unknown columns are left as read)."""
    out = {}
    for col in frame.columns:
        s = frame[col]
        edm = types.get(col)
        if edm == "Edm.DateTimeOffset":
            stamps = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
            out[col] = stamps.where(stamps.dt.year > 1).astype(
                "datetime64[ns, UTC]"
            )  # BC's blank: 0001-01-01T00:00:00Z
        elif edm == "Edm.Date":
            out[col] = pd.to_datetime(s.where(s != "0001-01-01"), errors="coerce", format="%Y-%m-%d")
        elif edm in ("Edm.Decimal", "Edm.Double", "Edm.Single"):
            out[col] = pd.to_numeric(s, errors="coerce").astype("float64")
        elif edm in ("Edm.Int16", "Edm.Int32", "Edm.Int64", "Edm.Byte"):
            out[col] = pd.to_numeric(s, errors="coerce").astype("Int64")
        elif edm == "Edm.Boolean":
            out[col] = s.astype("boolean")
        elif edm == "Edm.Guid":
            out[col] = s.astype("string").str.lower()
        elif edm is not None or col.endswith("@formatted"):
            out[col] = s.astype("string")
        else:
            out[col] = s
    return pd.DataFrame(out, index=frame.index)


def rows_to_frame(
    rows: Iterable[Mapping[str, Any]],
    types: Mapping[str, str],
    columns: list[str] | None = None,
    renames: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Build a typed frame from JSON rows (annotations renamed or dropped as the module says; ``renames``
    keeps chosen annotation keys under a name of their own, e.g. a lookup's target table)."""
    raw = pd.DataFrame.from_records(list(rows))
    renames = renames or {}
    keep = {c: renames.get(c) or _rename(c) for c in raw.columns}
    raw = raw[[c for c, new in keep.items() if new is not None]].rename(columns=keep)
    if columns:
        for c in columns:
            if c not in raw.columns:
                raw[c] = pd.Series([None] * len(raw), dtype="object")
    return convert(raw, types)
