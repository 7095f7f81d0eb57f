"""Business Central API v2.0 client (and the d365kit companion API of the same tenant).

Entity sets live under ``companies(<id>)``; the company is resolved once, by id or by name. Updates and
deletes always send ``If-Match`` (the row's ``@odata.etag``, or ``*`` only when the caller says so), so a
row changed since it was read fails with ``ConflictError`` instead of being overwritten.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any

import pandas as pd

from d365kit.errors import NotFoundError, UnknownNameError
from d365kit.frames import rows_to_frame
from d365kit.odata.batch import BatchRequest, BatchResponse, batch_rows, bc_batch
from d365kit.odata.metadata import ServiceMetadata, parse_csdl
from d365kit.odata.paging import iter_pages
from d365kit.odata.query import Filter, Q, Query, key_segment
from d365kit.odata.session import ODataSession
from d365kit.reading import ByIds, collect, id_filters, indexed

BC_MAX_PAGE = 20_000
STANDARD = "v2.0"
COMPANION = "d365kit/integration/v1.0"
# The companion API's entity sets (bc-extension/: BC tables 5331, 5335, 5336, 5338, 5339): named here only.
COUPLINGS = "crmIntegrationRecords"
TABLE_MAPPINGS = "integrationTableMappings"
FIELD_MAPPINGS = "integrationFieldMappings"
SYNC_JOBS = "integrationSynchJobs"
SYNC_JOB_ERRORS = "integrationSynchJobErrors"
COMPANION_SETS = (COUPLINGS, TABLE_MAPPINGS, FIELD_MAPPINGS, SYNC_JOBS, SYNC_JOB_ERRORS)


class BCClient:
    """CRUD, typed frames, incremental reads and $batch against one BC company."""

    def __init__(self, session: ODataSession, api_url: str, company: str | None = None):
        self.session = session
        self.api_url = api_url.rstrip("/")  # .../v2.0/<tenant>/<environment>/api
        self._company = company

    def __repr__(self) -> str:
        return f"BCClient({self.api_url!r}, company={self._company!r})"

    def root(self, api: str = STANDARD) -> str:
        return f"{self.api_url}/{api}/"

    # -- metadata and company ----------------------------------------------------------------------

    def metadata(self, api: str = STANDARD) -> ServiceMetadata:
        cache = self.__dict__.setdefault("_metadata", {})
        if api not in cache:
            resp = self.session.request(
                "GET", self.root(api) + "$metadata", headers={"Accept": "application/xml"}
            )
            cache[api] = parse_csdl(f"Business Central ({api})", resp.content)
        return cache[api]

    def companies(self) -> list[dict[str, Any]]:
        return list(self.session.request("GET", self.root() + "companies").json()["value"])

    @cached_property
    def company_id(self) -> str:
        companies = self.companies()
        if not companies:
            raise NotFoundError(404, "Internal_CompanyNotFound", "the environment has no company")
        if self._company is None:
            return companies[0]["id"]
        for c in companies:
            if self._company.lower() in (
                c["id"].lower(),
                c["name"].lower(),
                (c.get("displayName") or "").lower(),
            ):
                return c["id"]
        names = ", ".join(repr(c["name"]) for c in companies)
        raise NotFoundError(
            404,
            "Internal_CompanyNotFound",
            f"no company {self._company!r} in this environment (there are: {names})",
        )

    def url(self, entity_set: str, key: str | None = None, api: str = STANDARD) -> str:
        self.metadata(api).entity(entity_set)  # a clear error for an unknown entity set
        base = f"{self.root(api)}companies({self.company_id})/"
        return base + (key_segment(entity_set, key) if key else entity_set)

    # -- reads -------------------------------------------------------------------------------------

    def pages(
        self,
        entity_set: str,
        query: Query | None = None,
        *,
        page_size: int = BC_MAX_PAGE,
        api: str = STANDARD,
    ) -> Iterator[list[dict[str, Any]]]:
        query = query or Query()
        if query.select:
            self.metadata(api).check_properties(entity_set, query.select)
        url = self.url(entity_set, api=api)
        qs = query.query_string()
        for page in iter_pages(self.session, f"{url}?{qs}" if qs else url, page_size=page_size):
            yield page["value"]

    def list(self, entity_set: str, query: Query | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        for rows in self.pages(entity_set, query, **kwargs):
            yield from rows

    def get(
        self, entity_set: str, key: str, *, select: tuple[str, ...] = (), api: str = STANDARD
    ) -> dict[str, Any]:
        qs = Query(select=select).query_string()
        url = self.url(entity_set, key, api)
        return self.session.request("GET", f"{url}?{qs}" if qs else url).json()

    def frames(
        self,
        entity_set: str,
        query: Query | None = None,
        *,
        page_size: int = BC_MAX_PAGE,
        api: str = STANDARD,
    ) -> Iterator[pd.DataFrame]:
        """The rows page by page, each page a typed frame (``d365kit.frames``: ``$select`` columns, else all)."""
        props = self.metadata(api).entity(entity_set).properties
        columns = list(query.select) if query and query.select else list(props)
        for rows in self.pages(entity_set, query, page_size=page_size, api=api):
            yield rows_to_frame(rows, props, columns, source=entity_set)

    def empty_frame(self, entity_set: str, columns: list[str], api: str = STANDARD) -> pd.DataFrame:
        return rows_to_frame([], self.metadata(api).entity(entity_set).properties, columns)

    def to_frame(
        self,
        entity_set: str,
        query: Query | None = None,
        *,
        page_size: int = BC_MAX_PAGE,
        progress: bool = False,
        api: str = STANDARD,
    ) -> pd.DataFrame:
        """All rows (paged) as a typed frame; see d365kit.frames for the column conventions."""
        columns = (
            list(query.select)
            if query and query.select
            else list(self.metadata(api).entity(entity_set).properties)
        )
        return collect(
            self.frames(entity_set, query, page_size=page_size, api=api),
            self.empty_frame(entity_set, columns, api),
            f"BC {entity_set}",
            progress,
        )

    def rows_by_id(
        self,
        entity_set: str,
        ids: Iterable[object],
        columns: Iterable[str] = (),
        *,
        scope: Filter | None = None,
        api: str = STANDARD,
    ) -> pd.DataFrame:
        """Rows by ``id`` (``columns`` plus ``_etag``), indexed by the lower-case id; ``scope`` narrows them.
        One read of ``rows_by_id_many``."""
        ids = tuple(str(i) for i in ids)
        return self.rows_by_id_many([ByIds(entity_set, ids, tuple(columns), scope, api=api)])[0]

    def modified_since(
        self, entity_set: str, since: datetime, query: Query | None = None, **kwargs: Any
    ) -> pd.DataFrame:
        """Rows with ``lastModifiedDateTime`` after ``since`` (BC has no delta links; deletes are not seen)."""
        q = (query or Query()).where(Q.gt("lastModifiedDateTime", since))
        return self.to_frame(entity_set, q, **kwargs)

    def rows_by_id_many(self, reads: Sequence[ByIds]) -> list[pd.DataFrame]:
        """Several by-id reads (``rows_by_id`` each) in as few requests as ``$batch`` allows: one JSON
        batch of GETs per API (100 per request), pages past the first followed as usual."""
        ops: list[tuple[int, BatchRequest]] = []
        for i, r in enumerate(reads):
            select = tuple(dict.fromkeys(["id", *r.columns]))
            for f in id_filters("id", r.ids, r.scope):
                ops.append(
                    (
                        i,
                        BatchRequest(
                            "GET", f"{r.entity_set}?{Query(select=select, filter=f).query_string()}"
                        ),
                    )
                )
        rows: list[list[dict[str, Any]]] = [[] for _ in reads]
        for api in dict.fromkeys(reads[i].api for i, _ in ops):
            mine = [(i, op) for i, op in ops if reads[i].api == api]
            for (i, _), result in zip(mine, self.batch([op for _, op in mine], api=api), strict=True):
                rows[i] += batch_rows(self.session, result)
        frames = []
        for r, got in zip(reads, rows, strict=True):
            columns = [*dict.fromkeys(["id", *r.columns]), "_etag"]
            frames.append(
                indexed(
                    rows_to_frame(
                        got,
                        self.metadata(r.api).entity(r.entity_set).properties,
                        columns,
                        source=r.entity_set,
                    ),
                    "id",
                )
            )
        return frames

    # -- writes ------------------------------------------------------------------------------------

    def create(self, entity_set: str, values: dict[str, Any], *, api: str = STANDARD) -> dict[str, Any]:
        """POST; pass ``id`` in ``values`` to make the create idempotent (a retry then cannot duplicate)."""
        return self.session.request(
            "POST", self.url(entity_set, api=api), json=values, idempotent="id" in values
        ).json()

    def update(
        self, entity_set: str, key: str, changes: dict[str, Any], *, etag: str, api: str = STANDARD
    ) -> dict[str, Any]:
        """PATCH with ``If-Match: etag`` (use the row's ``@odata.etag``; ``"*"`` overwrites blindly)."""
        return self.session.request(
            "PATCH", self.url(entity_set, key, api), json=changes, headers={"If-Match": etag}, idempotent=True
        ).json()

    def delete(self, entity_set: str, key: str, *, etag: str = "*", api: str = STANDARD) -> None:
        self.session.request("DELETE", self.url(entity_set, key, api), headers={"If-Match": etag})

    def upsert(
        self, entity_set: str, key: str, values: dict[str, Any], *, api: str = STANDARD
    ) -> dict[str, Any]:
        """BC has no upsert: update the row with this id if it exists, else create it with this id."""
        try:
            current = self.get(entity_set, key, api=api)
        except NotFoundError:
            return self.create(entity_set, {**values, "id": key}, api=api)
        return self.update(entity_set, key, values, etag=current["@odata.etag"], api=api)

    def batch(
        self, operations: list[BatchRequest], *, atomic: bool = False, api: str = STANDARD
    ) -> list[BatchResponse]:
        """JSON $batch (100 operations per request); operation URLs relative to ``companies(<id>)/``."""
        prefix = f"companies({self.company_id})/"
        for op in operations:
            if not op.url.startswith(("http", "companies(")):
                op.url = prefix + op.url
        return bc_batch(self.session, self.root(api), operations, atomic=atomic)

    # -- companion API (couplings, mappings, sync log) ---------------------------------------------

    def companion_installed(self) -> bool:
        try:
            self.metadata(COMPANION)
        except (NotFoundError, UnknownNameError):
            return False
        return True

    def companion_frame(self, entity_set: str, query: Query | None = None, **kwargs: Any) -> pd.DataFrame:
        return self.to_frame(entity_set, query, api=COMPANION, **kwargs)

    def couplings(self, **kwargs: Any) -> pd.DataFrame:
        return self.companion_frame(COUPLINGS, **kwargs)

    def table_mappings(self) -> pd.DataFrame:
        return self.companion_frame(TABLE_MAPPINGS)

    def field_mappings(self) -> pd.DataFrame:
        return self.companion_frame(FIELD_MAPPINGS)

    def sync_jobs(self, query: Query | None = None) -> pd.DataFrame:
        return self.companion_frame(SYNC_JOBS, query)

    def sync_job_errors(self, query: Query | None = None) -> pd.DataFrame:
        return self.companion_frame(SYNC_JOB_ERRORS, query)

    def add_coupling(self, values: dict[str, Any]) -> dict[str, Any]:
        return self.create(COUPLINGS, {"id": str(uuid.uuid4()), **values}, api=COMPANION)

    def remove_coupling(self, coupling_id: str) -> None:
        self.delete(COUPLINGS, coupling_id, api=COMPANION)
