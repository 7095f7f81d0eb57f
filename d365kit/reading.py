"""How both clients turn pages into typed frames and read rows by id: written once, used by both.

``collect`` concatenates typed pages under one progress bar (only one page of JSON is held at a time).
``by_ids`` reads rows by primary key: ``ID_CHUNK`` ids per ``key eq a or key eq b ...`` filter (about 2 KB
of URL, within both services' limits), optionally inside a scope filter, the chunks concurrently up to the
service's concurrency cap; the frame is indexed by the lower-case key, one row per key. ``ByIds`` names
one such read so that a client can send many of them in one ``$batch`` (``rows_by_id_many``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
from tqdm.auto import tqdm

from d365kit.odata.query import Filter, Guid, Q

ID_CHUNK = 40
MAX_READERS = 8


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


def by_ids(
    read: Callable[[Filter], pd.DataFrame],
    key: str,
    ids: Iterable[object],
    *,
    scope: Filter | None,
    empty: pd.DataFrame,
    concurrency: int,
) -> pd.DataFrame:
    """Rows whose ``key`` is one of ``ids`` (non-GUIDs ignored) and, with ``scope``, inside it."""
    filters = id_filters(key, ids, scope)
    if not filters:
        parts = [empty]
    elif len(filters) == 1:
        parts = [read(filters[0])]
    else:
        workers = min(concurrency, MAX_READERS, len(filters))
        with ThreadPoolExecutor(workers, thread_name_prefix="d365kit-by-id") as pool:
            parts = list(pool.map(read, filters))
    return indexed(pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0], key)


__all__ = ["ID_CHUNK", "ByIds", "by_ids", "collect", "id_filters", "indexed", "is_guid"]
