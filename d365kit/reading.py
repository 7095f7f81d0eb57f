"""How both clients turn pages into typed frames and read rows by id: written once, used by both.

``collect`` concatenates typed pages under one progress bar (only one page of JSON is held at a time).
Rows by primary key: ``id_filters`` puts ``ID_CHUNK`` ids in each ``key eq a or key eq b ...`` filter
(about 2 KB of URL, within both services' limits), optionally inside a scope filter; ``ByIds`` names one
such read, and a client's ``rows_by_id_many`` sends any number of them as GETs in ``$batch`` requests,
each answer indexed by the lower-case key (``indexed``), one row per key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pandas as pd
from tqdm.auto import tqdm

from d365kit.odata.query import Filter, Guid, Q

ID_CHUNK = 40


def is_guid(text: object) -> bool:
    try:
        return isinstance(text, str) and len(text) == 36 and bool(uuid.UUID(text))
    except ValueError:
        return False


def collect(frames: Iterator[pd.DataFrame], empty: pd.DataFrame, desc: str, progress: bool) -> pd.DataFrame:
    """The typed pages of one read as one frame (``empty`` when there are none)."""
    parts = []
    with tqdm(desc=desc, unit=" rows", disable=not progress, delay=2) as bar:
        for frame in frames:
            parts.append(frame)
            bar.update(len(frame))
    return pd.concat(parts, ignore_index=True) if parts else empty


def indexed(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """One row per key, indexed by the lower-case key."""
    out = frame.drop_duplicates(key).set_index(key)
    out.index = out.index.astype("string").str.lower()
    return out


@dataclass(frozen=True)
class ByIds:
    """One read of rows by primary key: ``columns`` (the key added), inside ``scope`` when given; ``api``
    for BC, ``lookup_types`` (attributes whose target table to annotate) for Dataverse."""

    entity_set: str
    ids: tuple[str, ...]
    columns: tuple[str, ...] = ()
    scope: Filter | None = None
    api: str = "v2.0"
    lookup_types: tuple[str, ...] = ()


def id_filters(key: str, ids: Iterable[object], scope: Filter | None) -> list[Filter]:
    """``key eq a or ...`` filters of at most ``ID_CHUNK`` ids each (non-GUIDs dropped), inside ``scope``."""
    unique = sorted({str(i).lower() for i in ids if is_guid(i)})
    filters = []
    for i in range(0, len(unique), ID_CHUNK):
        f = Q.any_of(key, [Guid(x) for x in unique[i : i + ID_CHUNK]])
        filters.append(f if scope is None else scope & f)
    return filters


__all__ = ["ID_CHUNK", "ByIds", "collect", "id_filters", "indexed", "is_guid"]
