"""The one wire format for date-times d365kit writes: ISO 8601 in UTC with milliseconds and ``Z``
(``2026-11-20T12:00:00.000Z``), the shape both services return and accept. Naive values are taken as UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def iso(value: Any) -> str | None:
    """One value as wire text; None for None/NaT/NaN."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime(_FORMAT)[:-3] + "Z"


def iso_series(values: pd.Series) -> pd.Series:
    """A column as wire text (vectorized); unparseable values become <NA>."""
    stamps = pd.to_datetime(values, errors="coerce", utc=True)
    return (stamps.dt.strftime(_FORMAT).str[:-3] + "Z").astype("string")


def now() -> str:
    """The current time as wire text."""
    return iso(datetime.now(UTC))  # type: ignore[return-value]


__all__ = ["iso", "iso_series", "now"]
