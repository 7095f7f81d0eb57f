"""Rows by id, with their ETags: what the planner diffs and what apply verifies after an unclear answer.

Ids go ``ID_CHUNK`` at a time into ``key eq a or key eq b ...`` filters (about 2 KB of URL, as reconcile
reads them); the chunks run concurrently up to the session's concurrency cap. Frames are typed as
``d365kit.frames`` types them, indexed by the lower-case id, with ``_etag`` (the row's ``@odata.etag``).
A Dataverse polymorphic lookup's target table comes as ``<attribute>type`` (from the
``lookuplogicalname`` annotation), as reconcile names it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from d365kit.frames import rows_to_frame
from d365kit.odata.paging import iter_pages
from d365kit.odata.query import Guid, Q, Query

ID_CHUNK = 40
MAX_READERS = 8
LOOKUP_TYPE = "@Microsoft.Dynamics.CRM.lookuplogicalname"


def _chunks(ids: Iterable[str]) -> list[list[str]]:
    unique = sorted({str(i).lower() for i in ids if isinstance(i, str) and len(i) == 36})
    return [unique[i : i + ID_CHUNK] for i in range(0, len(unique), ID_CHUNK)]


def _gather(
    chunks: list[list[str]], read: Callable[[list[str]], list[dict[str, Any]]], cap: int
) -> list[dict]:
    if not chunks:
        return []
    if len(chunks) == 1:
        return read(chunks[0])
    with ThreadPoolExecutor(
        min(cap, MAX_READERS, len(chunks)), thread_name_prefix="d365kit-sync-read"
    ) as pool:
        return [row for part in pool.map(read, chunks) for row in part]


def _indexed(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    out = frame.drop_duplicates(key).set_index(key)
    out.index = out.index.astype("string").str.lower()
    return out


def bc_rows(ws: Any, entity_set: str, api: str, ids: Iterable[str], columns: Iterable[str]) -> pd.DataFrame:
    """BC rows by ``id`` with ``columns`` (plus ``id`` and ``_etag``)."""
    props = ws.bc.metadata(api).entity(entity_set).properties
    select = tuple(dict.fromkeys(["id", *columns]))

    def read(chunk: list[str]) -> list[dict[str, Any]]:
        query = Query(select=select, filter=Q.any_of("id", [Guid(x) for x in chunk]))
        return [row for page in ws.bc.pages(entity_set, query, api=api) for row in page]

    rows = _gather(_chunks(ids), read, ws.bc.session.max_concurrency)
    frame = rows_to_frame(rows, props, [*select, "_etag"])
    return _indexed(frame, "id")


def dv_rows(
    ws: Any, entity_set: str, ids: Iterable[str], columns: Iterable[str], lookup_types: Iterable[str] = ()
) -> pd.DataFrame:
    """Dataverse rows by primary key with ``columns`` (``_x_value`` names for lookups), ``_etag`` and, for
    each attribute of ``lookup_types``, its target table as ``<attribute>type``."""
    et = ws.dataverse.metadata().entity(entity_set)
    select = tuple(dict.fromkeys([et.key, *columns]))
    types = {a: f"_{a}_value" for a in lookup_types}
    headers = {"Prefer": f'odata.include-annotations="{LOOKUP_TYPE[1:]}"'} if types else {}
    renames = {f"{col}{LOOKUP_TYPE}": f"{a}type" for a, col in types.items()}

    def read(chunk: list[str]) -> list[dict[str, Any]]:
        query = Query(select=select, filter=Q.any_of(et.key, [Guid(x) for x in chunk]))
        url = f"{ws.dataverse.entity_url(entity_set)}?{query.query_string()}"
        rows = [
            row for page in iter_pages(ws.dataverse.session, url, headers=headers) for row in page["value"]
        ]
        return [{renames.get(k, k): v for k, v in row.items()} for row in rows]

    rows = _gather(_chunks(ids), read, ws.dataverse.session.max_concurrency)
    kinds = {**et.properties, **{f"{a}type": "Edm.String" for a in types}}
    frame = rows_to_frame(rows, kinds, [*select, "_etag", *(f"{a}type" for a in types)])
    return _indexed(frame, et.key)
