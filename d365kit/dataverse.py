"""Dataverse Web API v9.2 client: CRUD, lookups, annotations, bulk actions and change tracking.

Lookups read as ``_<name>_value`` columns and are written with ``bind(nav, entity_set, id)`` which gives
``{"<nav>@odata.bind": "/<entity_set>(<id>)"}``. ``CreateMultiple``/``UpdateMultiple``/``UpsertMultiple``
are chunked automatically. Change tracking: ``changes()`` returns changed rows, deleted ids and the next
delta link to pass back in. ``to_frame(..., parallel=N)`` reads ``createdon`` partitions concurrently
(``createdon_partitions`` says how the rows are split and why by ``createdon``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from d365kit.errors import ODataError, TransportError, UsageError
from d365kit.frames import FORMATTED, rows_to_frame
from d365kit.odata.batch import BatchRequest, BatchResponse, batch_rows, dataverse_batch
from d365kit.odata.metadata import ServiceMetadata, parse_csdl
from d365kit.odata.paging import iter_pages
from d365kit.odata.parallel import merge_threaded
from d365kit.odata.query import Filter, Q, Query, key_segment
from d365kit.odata.session import ODataSession
from d365kit.reading import ByIds, collect, id_filters, indexed

DV_MAX_PAGE = 5_000
BULK_CHUNK = 500
_ENTITY_ID = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")
CREATED = "createdon"  # the partition column of parallel reads
LOOKUP_TYPE = "@Microsoft.Dynamics.CRM.lookuplogicalname"  # a lookup's target table (annotation)


def createdon_cuts(sample: Sequence[str | None], parts: int) -> list[datetime]:
    """Up to ``parts - 1`` strictly increasing cut points: the quantiles of a sample of ``createdon`` values."""
    stamps = pd.to_datetime(pd.Series(list(sample), dtype="object"), utc=True, format="ISO8601").dropna()
    if stamps.empty or parts < 2:
        return []
    ordered = stamps.sort_values(ignore_index=True)
    picks = ordered.iloc[[len(ordered) * i // parts for i in range(1, parts)]]
    return sorted(set(picks.dt.to_pydatetime()))


def createdon_ranges(cuts: Sequence[datetime]) -> list[Filter]:
    """Filters that split every row exactly once at ``cuts``: half-open ``[a, b)`` ranges.

    The first range also takes rows without ``createdon`` (never seen on Dataverse, where the column is
    system-set, but it keeps the split exact) and the last one has no upper bound, so it holds the newest
    row and rows created while the read runs. A row whose ``createdon`` equals a cut belongs to the range
    that starts there, so identical timestamps at a boundary are read once.
    """
    if not cuts:
        return []
    first = Q.lt(CREATED, cuts[0]) | Q.eq(CREATED, None)
    middle = [Q.ge(CREATED, lo) & Q.lt(CREATED, hi) for lo, hi in zip(cuts, cuts[1:], strict=False)]
    return [first, *middle, Q.ge(CREATED, cuts[-1])]


def bind(nav: str, entity_set: str, key: str) -> dict[str, str]:
    """The body fragment that sets a lookup: ``{"<nav>@odata.bind": "/<entity_set>(<key>)"}``."""
    return {f"{nav}@odata.bind": "/" + key_segment(entity_set, key)}


@dataclass
class Changes:
    """One change-tracking read: changed rows (typed frame), deleted ids and the next delta link."""

    changed: pd.DataFrame
    deleted: list[str]
    delta_link: str


class DataverseClient:
    def __init__(self, session: ODataSession, url: str):
        self.session = session
        self.url = url.rstrip("/")
        self.root = f"{self.url}/api/data/v9.2/"

    def __repr__(self) -> str:
        return f"DataverseClient({self.url!r})"

    def metadata(self) -> ServiceMetadata:
        if "_metadata" not in self.__dict__:
            resp = self.session.request("GET", self.root + "$metadata", headers={"Accept": "application/xml"})
            self.__dict__["_metadata"] = parse_csdl("Dataverse", resp.content)
        return self.__dict__["_metadata"]

    def entity_url(self, entity_set: str, key: str | None = None) -> str:
        self.metadata().entity(entity_set)
        return self.root + (key_segment(entity_set, key) if key else entity_set)

    def whoami(self) -> dict[str, Any]:
        return self.session.request("GET", self.root + "WhoAmI").json()

    # -- reads -------------------------------------------------------------------------------------

    @staticmethod
    def _prefer(formatted: bool, lookup_types: bool = False) -> dict[str, str]:
        """``Prefer: odata.include-annotations`` for FormattedValue and/or a lookup's target table."""
        wanted = [FORMATTED[1:]] if formatted else []
        if lookup_types:
            wanted.append(LOOKUP_TYPE[1:])
        return {"Prefer": f'odata.include-annotations="{",".join(wanted)}"'} if wanted else {}

    def pages(
        self,
        entity_set: str,
        query: Query | None = None,
        *,
        page_size: int = DV_MAX_PAGE,
        formatted: bool = False,
        lookup_types: bool = False,
        parallel: int = 1,
    ) -> Iterator[list[dict[str, Any]]]:
        """The rows page by page. ``formatted``/``lookup_types`` ask for the FormattedValue and the
        lookup-target (``lookuplogicalname``) annotations. ``parallel`` > 1 reads createdon partitions at
        once (pages then arrive in no particular order); see ``createdon_partitions``."""
        query = query or Query()
        if query.select:
            self.metadata().check_properties(entity_set, query.select)
        prefer = self._prefer(formatted, lookup_types)
        if parallel > 1:
            yield from self._partitioned_pages(entity_set, query, page_size, prefer, parallel)
        else:
            yield from self._chain(entity_set, query, page_size, prefer)

    def _chain(
        self, entity_set: str, query: Query, page_size: int, prefer: dict[str, str]
    ) -> Iterator[list[dict[str, Any]]]:
        """One nextLink chain: the pages of one query, in the service's order."""
        url = self.entity_url(entity_set)
        qs = query.query_string()
        for page in iter_pages(
            self.session, f"{url}?{qs}" if qs else url, page_size=page_size, headers=prefer
        ):
            yield page["value"]

    def createdon_partitions(
        self, entity_set: str, query: Query, parts: int, *, sample_size: int = DV_MAX_PAGE
    ) -> list[Filter]:
        """Up to ``parts`` filters on ``createdon`` that split the rows of ``query`` exactly; [] = do not split.

        Why ``createdon``: the service sets it once and it never changes, so no row can move from one
        partition to another while the read runs (``modifiedon`` and ``versionnumber`` change on every
        update). Why not ranges of the primary key: Dataverse compares uniqueidentifiers the SQL Server way
        (the last group of 12 hex digits weighs most, then the fourth, third, second and first group), not
        in text order, so cut points computed from GUID text would split the key space in the wrong places.

        Where the cuts go: at the quantiles of a sample, the first page (``sample_size`` rows) of the
        ``createdon`` values of the same query: one request for one narrow column. Equal-width ranges
        between the oldest and the newest row (two ``$top=1`` ordered queries) were tried and dropped:
        creation times are lumpy. In the read benchmark 62 seeded accounts span 400 days and 99,938
        bulk-created ones a few seconds, so equal widths put nearly every row into one partition. The
        sample is unbiased when the service's key order is unrelated to creation time, as with the
        sandbox's random GUIDs. UNVERIFIED for a real org: if its keys are sequential (creation ordered),
        the sample is the oldest rows and the last partition gets most of the rest; the split stays
        exact, only less even. When the sample is the whole result (no nextLink) there is nothing to split.
        """
        et = self.metadata().entity(entity_set)
        if CREATED not in et.properties:
            raise UsageError(
                f"{entity_set} has no {CREATED} column to partition a parallel read by; use parallel=1"
            )
        sample_query = Query(select=(CREATED,), filter=query.filter, extra=query.extra)
        url = f"{self.entity_url(entity_set)}?{sample_query.query_string()}"
        first = next(iter_pages(self.session, url, page_size=sample_size))
        if not first.get("@odata.nextLink"):
            return []
        return createdon_ranges(createdon_cuts([row.get(CREATED) for row in first["value"]], parts))

    def _partitioned_pages(
        self, entity_set: str, query: Query, page_size: int, prefer: dict[str, str], parallel: int
    ) -> Iterator[list[dict[str, Any]]]:
        """Each createdon partition on its own nextLink chain, at most the session's concurrency cap at once.

        The partitions must not overlap: a key seen twice raises ``TransportError`` (it would mean the
        service filtered a range differently from what was asked, and the frame would hold duplicates).
        """
        if query.orderby or query.top is not None:
            raise UsageError(
                "a parallel read splits the rows by createdon, so it cannot keep $orderby or $top; use parallel=1"
            )
        ranges = self.createdon_partitions(entity_set, query, parallel, sample_size=page_size)
        if len(ranges) < 2:
            yield from self._chain(entity_set, query, page_size, prefer)
            return
        key = self.metadata().entity(entity_set).key
        chains = [partial(self._chain, entity_set, query.where(r), page_size, prefer) for r in ranges]
        seen: set[str] = set()
        for page in merge_threaded(chains, min(len(chains), self.session.max_concurrency)):
            try:
                keys = {row[key] for row in page}
            except KeyError:
                raise TransportError(f"Dataverse: {entity_set} rows came without their key {key!r}") from None
            if len(keys) != len(page) or not seen.isdisjoint(keys):
                raise TransportError(
                    f"Dataverse: the createdon partitions of {entity_set} overlapped (a row came twice); "
                    "read it with parallel=1."
                )
            seen |= keys
            yield page

    def list(self, entity_set: str, query: Query | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        for rows in self.pages(entity_set, query, **kwargs):
            yield from rows

    def get(
        self, entity_set: str, key: str, *, select: tuple[str, ...] = (), formatted: bool = False
    ) -> dict[str, Any]:
        qs = Query(select=select).query_string()
        url = self.entity_url(entity_set, key)
        return self.session.request(
            "GET", f"{url}?{qs}" if qs else url, headers=self._prefer(formatted)
        ).json()

    def count(self, entity_set: str) -> int:
        return int(self.session.request("GET", self.entity_url(entity_set) + "/$count").text)

    def frames(
        self,
        entity_set: str,
        query: Query | None = None,
        *,
        page_size: int = DV_MAX_PAGE,
        formatted: bool = False,
        lookup_types: Iterable[str] = (),
        parallel: int = 1,
    ) -> Iterator[pd.DataFrame]:
        """The rows page by page, each page a typed frame (``$select`` columns, else all). For each attribute
        of ``lookup_types`` (a polymorphic lookup such as ``parentcustomerid``) its target table comes as
        ``<attribute>type``, Dataverse's own name for it."""
        types, columns, renames = self._frame_shape(entity_set, query, tuple(lookup_types))
        for rows in self.pages(
            entity_set,
            query,
            page_size=page_size,
            formatted=formatted,
            lookup_types=bool(renames),
            parallel=parallel,
        ):
            yield rows_to_frame(
                rows, types, columns, renames, source=entity_set, key=self.metadata().entity(entity_set).key
            )

    def _frame_shape(
        self, entity_set: str, query: Query | None, lookup_types: tuple[str, ...]
    ) -> tuple[dict[str, str], list[str], dict[str, str]]:
        et = self.metadata().entity(entity_set)
        renames = {f"_{a}_value{LOOKUP_TYPE}": f"{a}type" for a in lookup_types}
        types = {**et.properties, **{name: "Edm.String" for name in renames.values()}}
        columns = list(query.select) if query and query.select else list(et.properties)
        return types, [*columns, *renames.values()], renames

    def empty_frame(
        self, entity_set: str, columns: list[str], lookup_types: Iterable[str] = ()
    ) -> pd.DataFrame:
        types, _, renames = self._frame_shape(entity_set, None, tuple(lookup_types))
        return rows_to_frame([], types, [*columns, *renames.values()])

    def to_frame(
        self,
        entity_set: str,
        query: Query | None = None,
        *,
        page_size: int = DV_MAX_PAGE,
        formatted: bool = False,
        lookup_types: Iterable[str] = (),
        progress: bool = False,
        parallel: int = 1,
    ) -> pd.DataFrame:
        """All rows (paged) as a typed frame; FormattedValue columns (``<col>@formatted``) on request.

        ``parallel=N`` reads up to N createdon partitions at once (``pages``); rows then come in arrival
        order rather than the service's key order. It pays off when the service's latency, not its
        throughput, bounds the read.
        """
        _, columns, _ = self._frame_shape(entity_set, query, ())
        return collect(
            self.frames(
                entity_set,
                query,
                page_size=page_size,
                formatted=formatted,
                lookup_types=lookup_types,
                parallel=parallel,
            ),
            self.empty_frame(entity_set, columns, lookup_types),
            f"Dataverse {entity_set}",
            progress,
        )

    def rows_by_id(
        self,
        entity_set: str,
        ids: Iterable[object],
        columns: Iterable[str] = (),
        *,
        scope: Filter | None = None,
        lookup_types: Iterable[str] = (),
    ) -> pd.DataFrame:
        """Rows by primary key (``columns`` plus ``_etag`` and ``<attribute>type`` per ``lookup_types``),
        indexed by the lower-case key; ``scope`` narrows them. One read of ``rows_by_id_many``."""
        read = ByIds(
            entity_set, tuple(str(i) for i in ids), tuple(columns), scope, lookup_types=tuple(lookup_types)
        )
        return self.rows_by_id_many([read])[0]

    def rows_by_id_many(self, reads: Sequence[ByIds]) -> list[pd.DataFrame]:
        """Several by-id reads (``rows_by_id`` each) in one multipart ``$batch`` of GETs (1,000 per
        request), pages past the first followed as usual."""
        ops: list[tuple[int, BatchRequest]] = []
        for i, r in enumerate(reads):
            key = self.metadata().entity(r.entity_set).key
            select = tuple(dict.fromkeys([key, *r.columns]))
            headers = self._prefer(False, bool(r.lookup_types))
            for f in id_filters(key, r.ids, r.scope):
                url = f"{r.entity_set}?{Query(select=select, filter=f).query_string()}"
                ops.append((i, BatchRequest("GET", url, headers=headers)))
        rows: list[list[dict[str, Any]]] = [[] for _ in reads]
        if ops:
            for (i, _), result in zip(ops, self.batch([op for _, op in ops], changeset=False), strict=True):
                rows[i] += batch_rows(
                    self.session, result, headers=self._prefer(False, bool(reads[i].lookup_types))
                )
        frames = []
        for r, got in zip(reads, rows, strict=True):
            key = self.metadata().entity(r.entity_set).key
            query = Query(select=tuple(dict.fromkeys([key, *r.columns])))
            types, columns, renames = self._frame_shape(r.entity_set, query, r.lookup_types)
            frames.append(
                indexed(
                    rows_to_frame(got, types, [*columns, "_etag"], renames, source=r.entity_set, key=key), key
                )
            )
        return frames

    def option_values(self, entity_set: str, attribute: str) -> dict[str, int]:
        """{label: value} of a choice column: ``statecode``/``statuscode`` through their own metadata types,
        any other through ``PicklistAttributeMetadata`` (Microsoft's documented query; the service refuses a
        cast to their base type), all columns of that type of the table in one request. Empty when the
        service does not answer. Cached per client, as ``$metadata`` is."""
        kind = {"statecode": "State", "statuscode": "Status"}.get(attribute, "Picklist")
        return self._options(entity_set, kind).get(attribute, {})

    def _option_url(self, entity_set: str, kind: str) -> str:
        logical = self.metadata().entity(entity_set).name
        return (
            f"EntityDefinitions(LogicalName='{logical}')/Attributes/"
            f"Microsoft.Dynamics.CRM.{kind}AttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)"
        )

    @staticmethod
    def _option_labels(body: Any) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        try:
            for attribute in body["value"]:
                options = (attribute.get("OptionSet") or {}).get("Options") or []
                found[attribute["LogicalName"]] = {
                    str(((o.get("Label") or {}).get("UserLocalizedLabel") or {}).get("Label")): int(
                        o["Value"]
                    )
                    for o in options
                }
        except (KeyError, ValueError, TypeError):
            return {}
        return found

    def _options(self, entity_set: str, kind: str) -> dict[str, dict[str, int]]:
        cache = self.__dict__.setdefault("_option_cache", {})
        if (entity_set, kind) not in cache:
            try:
                body = self.session.request("GET", self.root + self._option_url(entity_set, kind)).json()
            except ODataError:
                body = None
            cache[(entity_set, kind)] = self._option_labels(body)
        return cache[(entity_set, kind)]

    def prefetch_options(self, columns: Iterable[tuple[str, str]]) -> None:
        """Read the option sets of several (entity set, attribute) choice columns in one ``$batch``, so
        that ``option_values`` answers them from the cache."""
        cache = self.__dict__.setdefault("_option_cache", {})
        kinds = {"statecode": "State", "statuscode": "Status"}
        wanted = list(dict.fromkeys((e, kinds.get(a, "Picklist")) for e, a in columns))
        wanted = [w for w in wanted if w not in cache]
        if not wanted:
            return
        try:
            results = self.batch(
                [BatchRequest("GET", self._option_url(e, k)) for e, k in wanted], changeset=False
            )
        except ODataError:
            return
        for key, result in zip(wanted, results, strict=True):
            cache[key] = {} if result.error is not None else self._option_labels(result.body)

    def writable_attributes(self, entity_set: str) -> dict[str, set[str]] | None:
        """The attributes valid for create and for update (``IsValidForCreate``/``IsValidForUpdate`` of
        ``EntityDefinitions(...)/Attributes``); None when the service does not say (then try them all)."""
        logical = self.metadata().entity(entity_set).name
        url = f"{self.root}EntityDefinitions(LogicalName='{logical}')/Attributes"
        try:
            rows = self.session.request("GET", url).json()["value"]
            return {
                use: {a["LogicalName"] for a in rows if a.get(f"IsValidFor{use.title()}", True)}
                for use in ("create", "update")
            }
        except (ODataError, KeyError, ValueError):
            return None

    # -- writes ------------------------------------------------------------------------------------

    def create(self, entity_set: str, values: dict[str, Any]) -> str:
        """POST; returns the new row's id. Put the primary key in ``values`` to make it idempotent."""
        key = self.metadata().entity(entity_set).key
        resp = self.session.request(
            "POST", self.entity_url(entity_set), json=values, idempotent=key in values
        )
        match = _ENTITY_ID.search(resp.headers.get("OData-EntityId", ""))
        if not match:
            raise TransportError(
                f"Dataverse: POST {entity_set} answered {resp.status_code} without OData-EntityId"
            )
        return match.group(1).lower()

    def update(self, entity_set: str, key: str, changes: dict[str, Any], *, etag: str = "*") -> None:
        """PATCH that never creates: ``If-Match`` is the row's etag (412 -> ConflictError) or ``*``."""
        self.session.request(
            "PATCH",
            self.entity_url(entity_set, key),
            json=changes,
            headers={"If-Match": etag},
            idempotent=True,
        )

    def upsert(self, entity_set: str, key: str, values: dict[str, Any]) -> None:
        """PATCH without If-Match: updates the row with this id, or creates it with this id."""
        self.session.request("PATCH", self.entity_url(entity_set, key), json=values, idempotent=True)

    def delete(self, entity_set: str, key: str, *, etag: str | None = None) -> None:
        headers = {"If-Match": etag} if etag else {}
        self.session.request("DELETE", self.entity_url(entity_set, key), headers=headers)

    def _typed(self, entity_set: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        logical = f"Microsoft.Dynamics.CRM.{self.metadata().entity(entity_set).name}"
        return [{"@odata.type": logical, **r} for r in rows]

    def create_multiple(
        self,
        entity_set: str,
        rows: list[dict[str, Any]],
        *,
        chunk_size: int = BULK_CHUNK,
        progress: bool = False,
    ) -> list[str]:
        """``CreateMultiple`` in chunks; returns the ids in input order. Each chunk is all-or-nothing."""
        ids: list[str] = []
        key = self.metadata().entity(entity_set).key
        url = self.entity_url(entity_set) + "/Microsoft.Dynamics.CRM.CreateMultiple"
        with tqdm(total=len(rows), desc=f"CreateMultiple {entity_set}", disable=not progress) as bar:
            for i in range(0, len(rows), chunk_size):
                chunk = rows[i : i + chunk_size]
                resp = self.session.request(
                    "POST",
                    url,
                    json={"Targets": self._typed(entity_set, chunk)},
                    idempotent=all(key in r for r in chunk),
                )
                ids.extend(str(x).lower() for x in resp.json()["Ids"])
                bar.update(len(chunk))
        return ids

    def update_multiple(
        self,
        entity_set: str,
        rows: list[dict[str, Any]],
        *,
        chunk_size: int = BULK_CHUNK,
        progress: bool = False,
    ) -> None:
        """``UpdateMultiple`` in chunks; every row carries its primary key."""
        key = self.metadata().entity(entity_set).key
        missing = [i for i, r in enumerate(rows) if key not in r]
        if missing:
            raise UsageError(f"UpdateMultiple needs {key!r} in every row; rows {missing[:5]} lack it")
        self._bulk(entity_set, "UpdateMultiple", rows, chunk_size, progress)

    def upsert_multiple(
        self,
        entity_set: str,
        rows: list[dict[str, Any]],
        *,
        chunk_size: int = BULK_CHUNK,
        progress: bool = False,
    ) -> None:
        self._bulk(entity_set, "UpsertMultiple", rows, chunk_size, progress)

    def _bulk(
        self, entity_set: str, action: str, rows: list[dict[str, Any]], chunk_size: int, progress: bool
    ) -> None:
        url = self.entity_url(entity_set) + f"/Microsoft.Dynamics.CRM.{action}"
        with tqdm(total=len(rows), desc=f"{action} {entity_set}", disable=not progress) as bar:
            for i in range(0, len(rows), chunk_size):
                chunk = rows[i : i + chunk_size]
                self.session.request(
                    "POST", url, json={"Targets": self._typed(entity_set, chunk)}, idempotent=True
                )
                bar.update(len(chunk))

    def batch(self, operations: list[BatchRequest], *, changeset: bool = True) -> list[BatchResponse]:
        return dataverse_batch(self.session, self.root, operations, changeset=changeset)

    # -- change tracking ---------------------------------------------------------------------------

    def changes(
        self, entity_set: str, *, select: tuple[str, ...] = (), delta_link: str | None = None
    ) -> Changes:
        """First call (no ``delta_link``): every row + a delta link. Later calls: what changed since."""
        et = self.metadata().entity(entity_set)
        if delta_link is None:
            qs = Query(select=select).query_string()
            url = self.entity_url(entity_set) + (f"?{qs}" if qs else "")
        else:
            url = delta_link
        rows: list[dict[str, Any]] = []
        deleted: list[str] = []
        link = None
        for page in iter_pages(self.session, url, headers={"Prefer": "odata.track-changes"}):
            for row in page["value"]:
                if (
                    str(row.get("@odata.context", "")).endswith("$deletedEntity")
                    or row.get("reason") == "deleted"
                ):
                    deleted.append(str(row["id"]).lower())
                else:
                    rows.append(row)
            link = page.get("@odata.deltaLink") or link
        if link is None:
            raise TransportError(f"Dataverse: change tracking on {entity_set} returned no @odata.deltaLink")
        columns = list(select) or list(et.properties)
        return Changes(
            rows_to_frame(rows, et.properties, columns, source=entity_set, key=et.key), deleted, link
        )


__all__ = ["FORMATTED", "Changes", "DataverseClient", "bind"]
