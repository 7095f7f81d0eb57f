"""Rows to typed pandas DataFrames, with one set of conventions for both services.

- Edm.DateTimeOffset -> ``datetime64[ns, UTC]`` (tz-aware); Edm.Date -> ``datetime64[ns]`` (naive, midnight);
  BC's empty date ``0001-01-01`` (and datetime ``0001-01-01T00:00:00Z``) -> NaT, silently (it means "none").
  A value outside what ``datetime64[ns]`` holds (1677-09-21 .. 2262-04-11, e.g. BC's ``9999-12-31``) or
  one that does not parse also becomes NaT, never an exception that would sink a whole read: each such
  column warns once with ``DataWarning`` (a ``UserWarning``), naming the entity set, the column and the
  keys of up to five rows. Silence it with ``warnings.filterwarnings("ignore", category=DataWarning)``.
- Edm.Decimal/Double -> ``float64``; Edm.Int32/Int64 -> nullable ``Int64``; Edm.Boolean -> nullable ``boolean``.
- Edm.Guid -> ``string`` (lower case); Edm.String and enums -> ``string`` (pandas' StringDtype).
- Dataverse lookups keep their wire name ``_x_value`` (a GUID string column).
- Annotations such as ``name@OData.Community.Display.V1.FormattedValue`` become ``name@formatted``;
  ``@odata.etag`` becomes ``_etag``; other ``@`` keys are dropped.
Conversion is column-wise (vectorized), never a Python loop per value.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

FORMATTED = "@OData.Community.Display.V1.FormattedValue"
SHOWN = 5  # rows a DataWarning names; it counts the rest
_LOW, _HIGH = pd.Timestamp.min.ceil("s"), pd.Timestamp.max.floor("s")  # what datetime64[ns] holds


class DataWarning(UserWarning):
    """A value d365kit could not type and read as missing (NaT); the message names where it was."""


def warn_lost(
    lost: pd.Series,
    raw: pd.Series,
    column: str,
    *,
    source: str | None = None,
    keys: pd.Series | None = None,
    what: str = "date-time",
) -> None:
    """Warn (``DataWarning``) about the rows of ``lost`` (a boolean mask): ``raw`` values read as NaT."""
    if not lost.any():
        return
    rows = lost[lost].index
    shown = [
        f"{'' if keys is None else f'{keys.name}={keys.loc[i]} '}{raw.loc[i]!r}".strip() for i in rows[:SHOWN]
    ]
    more = f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
    where = f"{source}: " if source else ""
    warnings.warn(
        f"{where}{column}: {len(rows)} value(s) outside the {what} range pandas holds "
        f"({_LOW.date()} .. {_HIGH.date()}) or unreadable, read as NaT: {'; '.join(shown)}{more}",
        DataWarning,
        stacklevel=3,
    )


def _given(s: pd.Series) -> pd.Series:
    """Values that say something (not null, not an empty string)."""
    return s.notna() & (s.astype("string").str.strip() != "").fillna(False).astype(bool)


def in_range(stamps: pd.Series) -> pd.Series:
    """The mask of ``stamps`` (any unit) that ``datetime64[ns]`` can hold; NaT counts as in range."""
    low, high = (_LOW, _HIGH) if stamps.dt.tz is None else (_LOW.tz_localize("UTC"), _HIGH.tz_localize("UTC"))
    return stamps.isna() | ((stamps >= low) & (stamps <= high))


def _rename(col: str) -> str | None:
    if col == "@odata.etag":
        return "_etag"
    if col.endswith(FORMATTED):
        return col[: -len(FORMATTED)] + "@formatted"
    if "@" in col:
        return None
    return col


def convert(
    frame: pd.DataFrame, types: Mapping[str, str], *, source: str | None = None, key: str | None = None
) -> pd.DataFrame:
    """Type the columns of ``frame`` from their EDM ``types`` (unknown columns are left as read).

    ``source`` (the entity set) and ``key`` (its key column; ``id`` when there is one) only name the rows
    of a ``DataWarning``."""
    key = key if key is not None else ("id" if "id" in frame.columns else None)
    keys = frame[key] if key in frame.columns else None
    out = {}
    for col in frame.columns:
        s = frame[col]
        edm = types.get(col)
        if edm == "Edm.DateTimeOffset":
            stamps = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
            blank = (stamps.dt.year <= 1).fillna(False).astype(bool)  # BC's blank: 0001-01-01T00:00:00Z
            out[col] = _held(stamps.where(~blank), s, blank, col, source, keys, "datetime64[ns, UTC]")
        elif edm == "Edm.Date":
            blank = (s == "0001-01-01").fillna(False).astype(bool)
            days = pd.to_datetime(s.where(~blank), errors="coerce", format="%Y-%m-%d")
            out[col] = _held(days, s, blank, col, source, keys, "datetime64[ns]")
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


def _held(
    stamps: pd.Series,
    raw: pd.Series,
    blank: pd.Series,
    col: str,
    source: str | None,
    keys: pd.Series | None,
    dtype: str,
) -> pd.Series:
    """``stamps`` as ``dtype`` (nanoseconds); values it cannot hold, or that did not parse, become NaT
    with a ``DataWarning`` (``blank`` rows are BC's empty value: NaT without a word)."""
    ok = in_range(stamps)
    suspect = (~ok | stamps.isna()) & ~blank  # NaT or out of range: lost only if something was given
    if suspect.any():  # the text check runs on those rows alone, not on every page's every value
        warn_lost(suspect & _given(raw.where(suspect)), raw, col, source=source, keys=keys)
    return stamps.where(ok).astype(dtype)


def rows_to_frame(
    rows: Iterable[Mapping[str, Any]],
    types: Mapping[str, str],
    columns: list[str] | None = None,
    renames: Mapping[str, str] | None = None,
    *,
    source: str | None = None,
    key: str | None = None,
) -> pd.DataFrame:
    """Build a typed frame from JSON rows (annotations renamed or dropped as the module says; ``renames``
    keeps chosen annotation keys under a name of their own, e.g. a lookup's target table). ``source`` and
    ``key`` name the rows of a ``DataWarning`` (see ``convert``)."""
    raw = pd.DataFrame.from_records(list(rows))
    renames = renames or {}
    keep = {c: renames.get(c) or _rename(c) for c in raw.columns}
    raw = raw[[c for c, new in keep.items() if new is not None]].rename(columns=keep)
    if columns:
        for c in columns:
            if c not in raw.columns:
                raw[c] = pd.Series([None] * len(raw), dtype="object")
    return convert(raw, types, source=source, key=key)
