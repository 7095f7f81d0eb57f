"""Dataverse Web API v9.2 as the sandbox serves it: ``DataverseService(ctx).handle(Req) -> Resp``.

The wire contract is docs/sandbox.md, "Dataverse API". Choices where the sources are silent or UNVERIFIED
(each also noted where it is made):

- WhoAmI answers the fixed ids below; ``UserId`` is the application user the client-credentials app runs
  as (DV-S2S). Rows created through the API get it as owner, createdby and modifiedby.
- A create whose key already exists -> 412 ``0x80040237`` "A record with matching key values already
  exists." (DuplicateRecord is 412 in DV-COMPOSE; the status for a key clash on POST is UNVERIFIED).
- A bind to a missing row -> 404 ``0x80040217`` "<entity> With Id = <guid> Does Not Exist".
- ``"<nav>@odata.bind": null`` clears the lookup (PATCH); ``DELETE .../<nav>/$ref`` -> 501.
- ``$expand`` is honoured on writes with ``Prefer: return=representation`` (real PATCH ignores it; the
  sandbox never ignores a query option silently).
- ``statecode`` is refused on create ("not valid for create"); ``isocurrencycode`` refused on update when it
  would change; a contact/systemuser ``fullname`` is computed from first and last name.
- Paging and change tracking: see ``_read_collection`` and ``_delta``.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from d365kit.sandbox import dataverse_catalog, fetchxml, metadata, metadata_api
from d365kit.sandbox.context import SandboxContext
from d365kit.sandbox.dataverse_wire import (
    ASSOCIATED_NAV,
    CONCURRENCY,
    DUPLICATE,
    FORMATTED,
    GENERIC,
    GUID_RE,
    INTERNAL,
    LOOKUP_DIRECT,
    LOOKUP_LOGICAL,
    MAX_COUNT,
    MAX_PAGE_SIZE,
    TOTAL_COUNT,
    TOTAL_COUNT_EXCEEDED,
    DVError,
    PageCookie,
    Prefs,
    bad_request,
    coerce,
    delta_token,
    error_resp,
    formatted_value,
    is_money,
    not_found,
    not_implemented,
    parse_delta_token,
    parse_prefer,
    parse_skiptoken,
    segment_not_found,
    unknown_property,
    wire_value,
)
from d365kit.sandbox.http import Headers, Req, Resp
from d365kit.sandbox.odata import ExpandItem, Query, QueryError, compile_filter, parse_query
from d365kit.sandbox.schema import DATAVERSE, EntitySet, Lookup, Nav
from d365kit.sandbox.store import VERSION, DuplicateKey, NotFound, VersionMismatch, lookup_type_column, q

log = logging.getLogger(__name__)

# Fixed identities of the sandbox organization (WhoAmI). UserId is the application user of the demo app.
APPLICATION_USER_ID = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
BUSINESS_UNIT_ID = "6e5d4c3b-2a19-4807-9f6e-5d4c3b2a1908"
ORGANIZATION_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"

# Bulk operation actions bound to an entity set. Chosen limit: 1,000 targets per request (the docs give
# no hard number; 1,000 matches the $batch limit and keeps one request inside one transaction).
BULK_ACTIONS = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")
BULK_LIMIT = 1000
CRM = "Microsoft.Dynamics.CRM."

# Documented functions, actions and entity sets the sandbox does not implement answer 501 naming them
# (dataverse_catalog), not 404: a caller learns the operation exists but is not emulated.

_NAME_KEY = re.compile(r"^(?P<name>[^()]+?)(?:\((?P<key>.*)\))?$", re.S)


def etag(row: dict[str, Any]) -> str:
    """Weak ETag ``W/"<versionnumber>"`` (that it equals versionnumber is UNVERIFIED, plausible)."""
    return f'W/"{row[VERSION]}"'


def split_path(path: str) -> list[str]:
    """Split a resource path on ``/`` outside parentheses and quoted literals."""
    segs, buf, depth, quoted = [], [], 0, False
    for ch in path:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == "/" and depth == 0 and not quoted:
            segs.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    segs.append("".join(buf))
    return [s for s in segs if s != ""]


def _logical(es: EntitySet) -> str:
    return es.logical_name or es.type_name


def _is_operation(segment: str) -> bool:
    name = segment.split("(", 1)[0]
    return "." in name or "(" in segment or dataverse_catalog.operation_kind(name) is not None


def _operation_501(segment: str) -> DVError:
    name = segment.split("(", 1)[0]
    kind = dataverse_catalog.operation_kind(name.removeprefix(CRM))
    what = {"function": "The function", "action": "The action"}.get(kind or "", "The function or action")
    return not_implemented(f"{what} '{name}'")


def _methods_error(method: str) -> DVError:
    return DVError(405, GENERIC, f"The requested resource does not support http method '{method}'.")


def url_query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in pairs)


@dataclass
class _Render:
    """Per-response rendering state: what to show and the rows already looked up."""

    prefs: Prefs
    cache: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)


class DataverseService:
    """Dataverse Web API v9.2 over the sandbox store (not company scoped)."""

    def __init__(self, ctx: SandboxContext):
        self.ctx = ctx
        self.store = ctx.store
        self.by_logical = {_logical(es): es for es in DATAVERSE.values()}

    # -- entry -------------------------------------------------------------------------------------

    def handle(self, req: Req) -> Resp:
        """Answer one request; never lets an exception reach the client (500 body, logged here)."""
        try:
            return self._route(req)
        except DVError as exc:
            return exc.resp()
        except QueryError as exc:
            return error_resp(exc.status, GENERIC, exc.message)
        except Exception:
            log.exception("Dataverse sandbox failed on %s %s", req.method, req.path)
            return error_resp(500, INTERNAL, "An unexpected error occurred in the sandbox; see its log.")

    def _route(self, req: Req) -> Resp:
        segs = split_path(req.path)
        if not segs:
            return self._only(req, "GET", self._service_document)
        head = segs[0]
        if head == "$metadata":
            return self._only(req, "GET", self._metadata)
        if head == "$batch":
            from d365kit.sandbox.dataverse_batch import run_batch

            if req.in_batch:
                raise bad_request("A $batch request cannot contain another $batch request.")
            return self._only(req, "POST", lambda r: run_batch(self, r))
        m = _NAME_KEY.match(head)
        name, key_text = (m.group("name"), m.group("key")) if m else (head, None)
        if name in dataverse_catalog.METADATA_SETS:
            body = metadata_api.handle(req.method, req.root, segs, self._metadata_params(req))
            return Resp.json(200, body)
        if name == "WhoAmI" and key_text in (None, "") and len(segs) == 1:
            return self._only(req, "GET", self._who_am_i)
        if name == "RetrieveMetadataChanges" and len(segs) == 1:
            return self._only(req, "GET", lambda r: self._retrieve_metadata_changes(r, key_text))
        es = DATAVERSE.get(name)
        if es is None:
            if _is_operation(head):
                raise _operation_501(head)
            if name in dataverse_catalog.unserved_sets():
                raise not_implemented(f"The entity set '{name}'")
            raise segment_not_found(head)
        rest = segs[1:]
        if key_text is None:
            return self._collection_route(req, es, rest)
        key = self._parse_key(es, key_text)
        if not rest:
            return self._entity_route(req, es, key)
        return self._member_route(req, es, key, rest)

    def _only(self, req: Req, method: str, fn) -> Resp:
        if req.method != method:
            raise _methods_error(req.method)
        return fn(req)

    def _collection_route(self, req: Req, es: EntitySet, rest: list[str]) -> Resp:
        if not rest:
            if req.method not in es.methods or req.method not in ("GET", "POST"):
                raise _methods_error(req.method)
            return self._read_collection(req, es) if req.method == "GET" else self._create(req, es)
        if rest == ["$count"]:
            return self._only(req, "GET", lambda r: self._count(r, es))
        if len(rest) == 1 and rest[0].removeprefix(CRM) in BULK_ACTIONS:
            return self._only(req, "POST", lambda r: self._bulk(r, es, rest[0].removeprefix(CRM)))
        if _is_operation(rest[0]):
            raise _operation_501(rest[0])
        raise segment_not_found(rest[0])

    def _entity_route(self, req: Req, es: EntitySet, key: str) -> Resp:
        if req.method == "GET":
            return self._read_entity(req, es, key)
        if req.method not in es.methods or req.method not in ("PATCH", "DELETE"):
            raise _methods_error(req.method)
        return self._upsert(req, es, key) if req.method == "PATCH" else self._delete(req, es, key)

    def _member_route(self, req: Req, es: EntitySet, key: str, rest: list[str]) -> Resp:
        member = rest[0]
        if es.lookup(member) or es.nav(member):
            if rest[1:] == ["$ref"]:
                raise not_implemented(f"'$ref' on the navigation property '{member}'")
            raise not_implemented(f"Navigating through '{member}' (use $expand)")
        prop = es.prop(member)
        if prop is None:
            if _is_operation(member):
                raise _operation_501(member)
            raise segment_not_found(member)
        if len(rest) > 1:
            raise not_implemented(f"'{rest[1]}' on the property '{member}'")
        return self._property(req, es, key, member)

    # -- keys and queries ----------------------------------------------------------------------------

    @staticmethod
    def _parse_key(es: EntitySet, text: str) -> str:
        """``<guid>`` or ``<primary key>=<guid>``. A declared alternate key (``EntitySet.alternate_keys``) -> 501
        (addressing by it is not emulated yet); any other key -> 400 (DV-ALTKEY)."""
        text = text.strip()
        if GUID_RE.match(text):
            return text.lower()
        m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*=\s*(.+?)\s*", text)
        # systemusers cannot be addressed by systemuserid=<guid> (principal key is ownerid, B.2).
        if m and m.group(1) == es.key and GUID_RE.match(m.group(2)) and es.name != "systemusers":
            return m.group(2).lower()
        names = sorted(re.findall(r"([A-Za-z_]\w*)\s*=", text))
        for key_name, attributes in es.alternate_keys:
            if names == sorted(attributes):
                # A declared alternate key (EntityDefinitions/Keys lists it): served by the real service.
                raise not_implemented(f"Addressing rows by the alternate key '{key_name}'")
        if m or names:
            t = f"{CRM}{_logical(es)}"
            raise bad_request(
                f"The key in the request URI is not valid for resource '{t}'. Ensure that the names and number "
                f"of key properties match the declared or alternate key properties for the resource '{t}'."
            )
        raise bad_request(f"The key value '{text}' is not a valid Edm.Guid for '{es.name}'.")

    @staticmethod
    def _query(req: Req, es: EntitySet) -> Query:
        return parse_query(req.query, es, "dataverse")

    @staticmethod
    def _refuse_options(query: Query, what: str, allowed: frozenset[str]) -> None:
        present = {
            "$filter": query.filter is not None,
            "$orderby": bool(query.orderby),
            "$top": query.top is not None,
            "$count": query.count,
            "$skiptoken": query.skiptoken is not None,
            "$deltatoken": query.deltatoken is not None,
            "$expand": bool(query.expand),
            "$select": query.select is not None,
        }
        for option, used in present.items():
            if used and option not in allowed:
                raise bad_request(f"The query option '{option}' is not supported on {what}.")

    @staticmethod
    def _where(es: EntitySet, query: Query) -> tuple[str, list[Any]]:
        return compile_filter(query.filter, es, "dataverse")

    # -- small endpoints -----------------------------------------------------------------------------

    def _service_document(self, req: Req) -> Resp:
        names = [*DATAVERSE, *dataverse_catalog.METADATA_SETS]
        return Resp.json(
            200,
            {
                "@odata.context": f"{req.root}$metadata",
                "value": [{"name": n, "kind": "EntitySet", "url": n} for n in names],
            },
        )

    def _metadata(self, req: Req) -> Resp:
        params = dict(req.query)
        if set(params) - {"annotations"} or params.get("annotations", "true") not in ("true", "false"):
            raise bad_request("$metadata accepts only the query parameter 'annotations=true|false'.")
        body = metadata.csdl("dataverse", annotations=params.get("annotations") == "true")
        return Resp(200, Headers({"Content-Type": "application/xml", "OData-Version": "4.0"}), body.encode())

    def _who_am_i(self, req: Req) -> Resp:
        if req.query:
            raise bad_request("WhoAmI takes no query options.")
        return Resp.json(
            200,
            {
                "@odata.context": f"{req.root}$metadata#{CRM}WhoAmIResponse",
                "BusinessUnitId": BUSINESS_UNIT_ID,
                "UserId": APPLICATION_USER_ID,
                "OrganizationId": ORGANIZATION_ID,
            },
        )

    @staticmethod
    def _metadata_params(req: Req) -> dict[str, str]:
        params: dict[str, str] = {}
        for k, v in req.query:
            if k in params:
                raise bad_request(
                    f"Query option '{k}' was specified more than once, but it must be specified at most once."
                )
            params[k] = v
        return params

    def _retrieve_metadata_changes(self, req: Req, key_text: str | None) -> Resp:
        """``RetrieveMetadataChanges(Query=@p1)?@p1=<EntityQueryExpression JSON>`` (metadata_api)."""
        params = self._metadata_params(req)
        body = metadata_api.retrieve_metadata_changes(req.root, key_text, params)
        return Resp.json(200, body)

    # -- reads ---------------------------------------------------------------------------------------

    def _read_collection(self, req: Req, es: EntitySet) -> Resp:
        """A page of rows.

        Paging (DV-PAGE): ``Prefer: odata.maxpagesize=N`` (1..5000, default 5000); the nextLink is the
        request URL plus ``$skiptoken=<cookie pagenumber=.. pagingcookie=.. istracking=.. />``. The paging
        cookie holds the last key (keyset paging, stable under concurrent inserts) or, with ``$orderby``,
        the offset of the next page. When ``$top`` is combined with ``odata.maxpagesize`` the real service
        ignores ``$top`` (DV-PAGE): so does the sandbox. Without maxpagesize, ``$top`` caps the total.
        Change tracking (``Prefer: odata.track-changes``, DV-CT) returns the full result, paged the same way,
        and its last page carries ``@odata.deltaLink``.
        """
        prefs = parse_prefer(req.headers.get("Prefer"))
        names = {k for k, _ in req.query}
        if "sql" in names:
            raise not_implemented("The query parameter 'sql' (Dataverse SQL over the Web API)")
        if "fetchXml" in names:
            return self._fetch(req, es, prefs)
        query = self._query(req, es)
        if query.deltatoken is not None:
            return self._delta(req, es, query, prefs)
        tracking = prefs.track_changes
        if tracking:
            self._check_tracking(es, query)
            prefs.applied.append("odata.track-changes")
        where, params = self._where(es, query)
        order = list(query.orderby)
        page_size = prefs.max_page_size or MAX_PAGE_SIZE
        top = None if prefs.max_page_size else query.top
        cookie = parse_skiptoken(query.skiptoken, es.key) if query.skiptoken is not None else None
        if cookie is not None and (
            (cookie.offset is not None) != bool(order) or (cookie.version is not None) != tracking
        ):
            raise bad_request(
                "The $skiptoken does not belong to this query. Use the @odata.nextLink unchanged."
            )
        page = cookie.page if cookie else 1
        version = cookie.version if cookie else (self.store.current_version() if tracking else None)
        offset = (cookie.offset or 0) if cookie else 0
        returned = offset if order else (page - 1) * page_size
        limit = page_size if top is None else max(0, min(page_size, top - returned))
        rows = self.store.query(
            es,
            where=where,
            params=params,
            order=order,
            limit=limit + 1,
            after_key=cookie.last_key if cookie and not order else None,
            offset=offset if order else 0,
        )
        more = len(rows) > limit and (top is None or returned + limit < top)
        rows = rows[:limit]
        body: dict[str, Any] = {"@odata.context": self._context(req, es, query)}
        if query.count:
            total = self.store.count(es, where=where, params=params)
            body["@odata.count"] = min(total, MAX_COUNT)
            if prefs.wants(TOTAL_COUNT):
                body[f"@{TOTAL_COUNT}"] = min(total, MAX_COUNT)
            if prefs.wants(TOTAL_COUNT_EXCEEDED):
                body[f"@{TOTAL_COUNT_EXCEEDED}"] = total > MAX_COUNT
        body["value"] = self._render_rows(es, rows, query, _Render(prefs))
        if more:
            nxt = PageCookie(
                page + 1,
                last_key=None if order else rows[-1][es.key],
                offset=offset + len(rows) if order else None,
                version=version,
            )
            pairs = [(k, v) for k, v in req.query if k != "$skiptoken"]
            pairs.append(("$skiptoken", nxt.skiptoken(es.key)))
            body["@odata.nextLink"] = f"{req.root}{req.path}?{url_query(pairs)}"
        elif tracking:
            body["@odata.deltaLink"] = self._delta_link(req, es, query, version)
        return Resp.json(200, body, prefs.applied_header())

    def _fetch(self, req: Req, es: EntitySet, prefs: Prefs) -> Resp:
        """``?fetchXml=<fetch>``: one page of a single-table FetchXML query (fetchxml.py has the contract)."""
        others = [k for k, _ in req.query if k != "fetchXml"]
        if others or len(req.query) != 1:
            raise bad_request(
                f"The query option '{others[0] if others else 'fetchXml'}' can't be combined with fetchXml."
            )
        if prefs.max_page_size is not None:
            raise bad_request(
                "Prefer: odata.maxpagesize is not supported with fetchXml; use the count attribute."
            )
        if prefs.track_changes:
            raise bad_request("Change tracking is not supported with fetchXml.")
        fq = fetchxml.parse(req.query[0][1], es, _logical(es))
        if fq.top is not None:
            limit, offset = fq.top, 0
        else:
            limit = fq.count
            offset = 0 if fq.after_key is not None else (fq.page - 1) * fq.count
        rows = self.store.query(
            es,
            where=fq.where,
            params=fq.params,
            order=[] if fq.after_key is not None else fq.order,
            limit=limit + 1,
            offset=offset,
            after_key=fq.after_key,
        )
        more = fq.top is None and len(rows) > limit
        rows = rows[:limit]
        render = _Render(prefs)
        columns = None if fq.columns is None else list(dict.fromkeys([*fq.columns, es.key]))
        value = []
        for row in rows:
            entity = self._render(es, row, columns, render)
            value.append({k: v for k, v in entity.items() if v is not None})
        body: dict[str, Any] = {"@odata.context": f"{req.root}$metadata#{es.name}"}
        if fq.total:
            total = self.store.count(es, where=fq.where, params=fq.params)
            body[f"@{TOTAL_COUNT}"] = min(total, MAX_COUNT)
            body[f"@{TOTAL_COUNT_EXCEEDED}"] = total > MAX_COUNT
        if prefs.wants(fetchxml.PAGING_COOKIE) and more and rows:
            body[f"@{fetchxml.PAGING_COOKIE}"] = fetchxml.paging_cookie(
                fq.page, es.key, rows[0][es.key], rows[-1][es.key]
            )
        if prefs.wants(fetchxml.MORE_RECORDS):
            body[f"@{fetchxml.MORE_RECORDS}"] = more
        body["value"] = value
        return Resp.json(200, body, prefs.applied_header())

    def _check_tracking(self, es: EntitySet, query: Query) -> None:
        if not es.change_tracking:
            raise bad_request(f"Change tracking is not enabled for the entity '{_logical(es)}'.")
        used = {
            "$filter": query.filter is not None,
            "$orderby": bool(query.orderby),
            "$expand": bool(query.expand),
            "$top": query.top is not None,
            "$count": query.count,
        }
        for option, present in used.items():
            if present:
                raise bad_request(
                    f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.'
                )

    def _delta_link(self, req: Req, es: EntitySet, query: Query, version: int) -> str:
        pairs = [("$select", ",".join(query.select))] if query.select is not None else []
        pairs.append(("$deltatoken", delta_token(version)))
        return f"{req.root}{es.name}?{url_query(pairs)}"

    def _delta(self, req: Req, es: EntitySet, query: Query, prefs: Prefs) -> Resp:
        """Changes since a delta token: written rows (as entities, by version) then ``$deletedEntity`` items.

        Token = ``<store version>!<UTC time>``; kept 7 days (UNVERIFIED for the Web API, see
        dataverse_wire.DELTA_TOKEN_DAYS). A delta response is not paged (the sandbox's choice).
        """
        self._check_tracking(es, query)
        self._refuse_options(query, "a change tracking request", frozenset({"$select", "$deltatoken"}))
        current = self.store.current_version()
        since = parse_delta_token(query.deltatoken or "", current)
        rows, deleted = self.store.changes_since(es, since)
        live = {r[es.key] for r in rows}
        value = self._render_rows(es, rows, query, _Render(prefs))
        seen: set[str] = set()
        for tomb in deleted:
            if tomb["key"] in live or tomb["key"] in seen:
                continue
            seen.add(tomb["key"])
            value.append(
                {
                    "@odata.context": f"{req.root}$metadata#{es.name}/$deletedEntity",
                    "id": str(tomb["key"]).lower(),
                    "reason": "deleted",
                }
            )
        prefs.applied.append("odata.track-changes")
        body = {
            "@odata.context": self._context(req, es, query, "/$delta"),
            "value": value,
            "@odata.deltaLink": self._delta_link(req, es, query, current),
        }
        return Resp.json(200, body, prefs.applied_header())

    def _count(self, req: Req, es: EntitySet) -> Resp:
        """``/<set>/$count``: text/plain, capped at 5,000 like ``$count=true`` (DV-COUNT)."""
        query = self._query(req, es)
        if query.deltatoken is not None:
            self._refuse_options(query, "$count with $deltatoken", frozenset({"$deltatoken"}))
            rows, deleted = self.store.changes_since(
                es, parse_delta_token(query.deltatoken, self.store.current_version())
            )
            total = len(rows) + len({d["key"] for d in deleted})
        else:
            self._refuse_options(query, "$count", frozenset({"$filter"}))
            where, params = self._where(es, query)
            total = self.store.count(es, where=where, params=params)
        headers = Headers({"Content-Type": "text/plain", "OData-Version": "4.0"})
        return Resp(200, headers, str(min(total, MAX_COUNT)).encode())

    def _read_entity(self, req: Req, es: EntitySet, key: str) -> Resp:
        prefs = parse_prefer(req.headers.get("Prefer"))
        query = self._query(req, es)
        self._refuse_options(query, "a single entity", frozenset({"$select", "$expand"}))
        row = self.store.get(es, key)
        if row is None:
            raise not_found(_logical(es), key)
        tag = etag(row)
        # Conditional GET (DV-COND): never with $expand or include-annotations.
        inm = (req.headers.get("If-None-Match") or "").strip()
        if inm and inm != "null" and not query.expand and not prefs.annotations and inm in (tag, "*"):
            return Resp.empty(304, {"ETag": tag})
        body = {"@odata.context": self._context(req, es, query, "/$entity")}
        body.update(self._render_rows(es, [row], query, _Render(prefs))[0])
        return Resp.json(200, body, {"ETag": tag, **prefs.applied_header()})

    def _property(self, req: Req, es: EntitySet, key: str, name: str) -> Resp:
        """``<set>(<id>)/<property>``: GET ``{"value": ...}``, PUT ``{"value": ...}``, DELETE (set null)."""
        if req.query:
            raise bad_request("Query options are not supported on a single property.")
        if req.method == "GET":
            row = self.store.get(es, key)
            if row is None:
                raise not_found(_logical(es), key)
            value = wire_value(es.prop(name), row.get(name))  # type: ignore[arg-type]
            if value is None:
                return Resp.empty(204)
            return Resp.json(
                200, {"@odata.context": f"{req.root}$metadata#{es.name}({key})/{name}", "value": value}
            )
        if req.method == "PUT":
            body = self._body(req)
            if set(body) != {"value"}:
                raise bad_request('A PUT to a single property takes a body {"value": <new value>}.')
            changes = {name: body["value"]}
        elif req.method == "DELETE":
            changes = {name: None}
        else:
            raise _methods_error(req.method)
        with self.store.transaction():
            if self.store.get(es, key) is None:
                raise not_found(_logical(es), key)
            values, hidden = self._changes(es, changes, creating=False, key=key)
            self._update_row(es, key, values, hidden, None)
        return Resp.empty(204)

    # -- rendering -----------------------------------------------------------------------------------

    def _context(self, req: Req, es: EntitySet, query: Query, suffix: str = "") -> str:
        parts = list(query.select or [])
        for item in query.expand:
            nested = item.query.select if item.query else None
            parts.append(f"{item.name}({','.join(nested or [])})")
        sel = f"({','.join(parts)})" if parts else ""
        return f"{req.root}$metadata#{es.name}{sel}{suffix}"

    def _columns(self, es: EntitySet, select: list[str] | None) -> list[str]:
        if select is None:
            return list(es.prop_names)
        cols = list(select)
        # Selecting a Money column also returns the row's currency (DV-SELECT).
        if any(is_money(es.prop(c)) for c in cols) and es.prop("_transactioncurrencyid_value"):  # type: ignore[arg-type]
            cols.append("_transactioncurrencyid_value")
        cols.append(es.key)
        return list(dict.fromkeys(cols))

    def _render_rows(self, es: EntitySet, rows: list[dict[str, Any]], query: Query, r: _Render) -> list[dict]:
        expanded = {item.name: self._expand(es, rows, item, r) for item in query.expand}
        out = []
        for row in rows:
            entity = self._render(es, row, query.select, r)
            for name, by_key in expanded.items():
                entity[name] = by_key.get(row[es.key])
            out.append(entity)
        return out

    def _render(
        self, es: EntitySet, row: dict[str, Any], select: list[str] | None, r: _Render
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.etag": etag(row)}
        for name in self._columns(es, select):
            prop = es.prop(name)
            value = row.get(name)
            if r.prefs.annotations and value is not None:
                out.update(self._annotations(es, row, prop, r))  # type: ignore[arg-type]
            out[name] = wire_value(prop, value)  # type: ignore[arg-type]
        return out

    def _annotations(self, es: EntitySet, row: dict[str, Any], prop, r: _Render) -> dict[str, Any]:
        """Annotations of one value, in the order Dataverse writes them (before the value)."""
        name, value, out = prop.name, row[prop.name], {}
        if name.startswith("_") and name.endswith("_value"):
            column = name[1:-6]
            target = self._lookup_target(es, row, column, r)
            if target is None:
                return out
            if r.prefs.wants(FORMATTED) and target.primary_name:
                target_row = self._cached(target, value, r)
                if target_row is not None and target_row.get(target.primary_name) is not None:
                    out[f"{name}@{FORMATTED}"] = target_row[target.primary_name]
            navs = [lk.nav for lk in es.lookups if lk.column == column and lk.target == target.name]
            if r.prefs.wants(ASSOCIATED_NAV) and navs:
                out[f"{name}@{ASSOCIATED_NAV}"] = navs[0]
            if r.prefs.wants(LOOKUP_LOGICAL):
                out[f"{name}@{LOOKUP_LOGICAL}"] = _logical(target)
            return out
        if r.prefs.wants(FORMATTED) and name != "versionnumber" and name != es.key:
            text = formatted_value(
                prop, value, money_symbol=self._money_symbol(es, row, r) if is_money(prop) else None
            )
            if text is not None:
                out[f"{name}@{FORMATTED}"] = text
        return out

    def _money_symbol(self, es: EntitySet, row: dict[str, Any], r: _Render) -> str:
        currency_id = row.get("_transactioncurrencyid_value")
        currencies = DATAVERSE.get("transactioncurrencies")
        if currency_id and currencies is not None:
            currency = self._cached(currencies, currency_id, r)
            if currency and currency.get("currencysymbol"):
                return currency["currencysymbol"]
        return "$"

    def _cached(self, es: EntitySet, key: str, r: _Render) -> dict[str, Any] | None:
        ck = (es.name, key)
        if ck not in r.cache:
            r.cache[ck] = self.store.get(es, key)
        return r.cache[ck]

    def _lookup_target(self, es: EntitySet, row: dict[str, Any], column: str, r: _Render) -> EntitySet | None:
        """The entity set a lookup value points to: the stored ``__lk_`` type, else the only declared
        target, else (polymorphic, type not stored) the target where the row exists."""
        logical = row.get(lookup_type_column(column))
        if logical and logical in self.by_logical:
            return self.by_logical[logical]
        targets = list(dict.fromkeys(lk.target for lk in es.lookups if lk.column == column))
        if len(targets) == 1:
            return DATAVERSE.get(targets[0])
        for t in targets:
            if self._cached(DATAVERSE[t], row[f"_{column}_value"], r) is not None:
                return DATAVERSE[t]
        return None

    def _expand(
        self, es: EntitySet, rows: list[dict[str, Any]], item: ExpandItem, r: _Render
    ) -> dict[str, Any]:
        """Expanded values by parent key: single-valued lookups/navs -> entity or None; collections -> list."""
        lk: Lookup | None = es.lookup(item.name)
        nav: Nav | None = es.nav(item.name)
        if nav is None and lk is None:
            raise unknown_property(item.name, _logical(es))
        target = DATAVERSE[lk.target if lk else nav.target]  # type: ignore[union-attr]
        nested = item.query or Query()
        many = nav is not None and nav.many and lk is None
        if nested.expand:
            raise not_implemented(f"Nested $expand inside '{item.name}'")
        if not many:
            self._refuse_options(
                nested, f"the single-valued navigation property '{item.name}'", frozenset({"$select"})
            )
        local = lk.value_prop if lk else nav.local  # type: ignore[union-attr]
        remote = target.key if lk else nav.remote  # type: ignore[union-attr]
        parents = {
            row[es.key]: row[local]
            for row in rows
            if row.get(local) is not None
            and (lk is None or self._lookup_target(es, row, lk.column, r) is target)
        }
        where, params = compile_filter(nested.filter, target, "dataverse")
        matches: dict[Any, list[dict[str, Any]]] = {}
        values = list(dict.fromkeys(parents.values()))
        for i in range(0, len(values), 500):
            chunk = values[i : i + 500]
            clause = f"{q(remote)} IN ({', '.join('?' * len(chunk))})"
            sql = f"{clause} AND ({where})" if where else clause
            for t_row in self.store.query(target, where=sql, params=[*chunk, *params], order=nested.orderby):
                matches.setdefault(t_row[remote], []).append(t_row)
        out: dict[Any, Any] = {}
        for row in rows:
            found = matches.get(parents[row[es.key]], []) if row[es.key] in parents else []
            if many:
                found = found[: nested.top] if nested.top is not None else found
                out[row[es.key]] = [self._render(target, t, nested.select, r) for t in found]
            else:
                out[row[es.key]] = self._render(target, found[0], nested.select, r) if found else None
        return out

    # -- writes --------------------------------------------------------------------------------------

    @staticmethod
    def _body(req: Req) -> dict[str, Any]:
        try:
            body = req.json()
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        return body

    def _write_query(self, req: Req, es: EntitySet, prefs: Prefs) -> Query:
        query = self._query(req, es)
        self._refuse_options(query, f"a {req.method} request", frozenset({"$select", "$expand"}))
        if (query.select is not None or query.expand) and not prefs.return_representation:
            raise bad_request("$select and $expand on a write need the header Prefer: return=representation.")
        return query

    def _changes(
        self, es: EntitySet, body: dict[str, Any], *, creating: bool, key: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate a write payload into stored values and hidden lookup-type columns (raises DVError 400)."""
        logical = _logical(es)
        values: dict[str, Any] = {}
        hidden: dict[str, Any] = {}
        bound: set[str] = set()
        for name, value in body.items():
            if name.startswith("@odata."):
                if name == "@odata.type" and value != f"{CRM}{logical}" and value != f"#{CRM}{logical}":
                    raise bad_request(
                        f"The @odata.type '{value}' does not match the entity type '{CRM}{logical}'."
                    )
                continue  # @odata.etag/@odata.context/@odata.id of an echoed representation
            if "@" in name:
                nav, _, term = name.partition("@")
                if term != "odata.bind":
                    continue  # instance annotations (e.g. FormattedValue) carry no data on a write
                self._bind(es, nav, value, values, hidden, bound)
                continue
            prop = es.prop(name)
            if prop is None:
                if es.nav(name) is not None:
                    raise not_implemented(f"Deep insert or update through the navigation property '{name}'")
                raise unknown_property(name, logical)
            if name == es.key:
                v = coerce(prop, value, logical)
                if v is None or (key is not None and v != key):
                    raise bad_request(
                        f"The value of '{name}' in the body does not match the key of the request."
                    )
                values[name] = v
                continue
            if name.startswith("_") and name.endswith("_value"):
                raise DVError(
                    400,
                    LOOKUP_DIRECT,
                    "CRM do not support direct update of Entity Reference properties, Use Navigation properties "
                    "instead.",
                )
            if prop.read_only:
                raise bad_request(
                    f"The property '{name}' of '{CRM}{logical}' is read-only and cannot be set."
                )
            if name == "statecode" and creating:
                raise bad_request(
                    f"The 'statecode' attribute of the '{logical}' entity is not valid for create."
                )
            v = coerce(prop, value, logical)
            if v is None and prop.required:
                raise bad_request(f"The '{name}' attribute of the '{logical}' entity cannot be set to null.")
            values[name] = v
        return values, hidden

    def _bind(self, es: EntitySet, nav: str, value: Any, values: dict, hidden: dict, bound: set[str]) -> None:
        """``<nav>@odata.bind``: set the lookup column and its target type (polymorphic navs share a column)."""
        lk = es.lookup(nav)
        if lk is None:
            if es.nav(nav) is not None:
                raise not_implemented(f"Binding the collection-valued navigation property '{nav}'")
            raise bad_request(
                f"An undeclared property '{nav}' which only has property annotations in the payload but no property "
                "value was found in the payload. In OData, only declared navigation properties and declared named "
                "streams can be represented as properties without values."
            )
        if lk.column in bound:
            raise bad_request(
                f"More than one navigation property in the payload sets the lookup '{lk.column}'."
            )
        bound.add(lk.column)
        type_col = lookup_type_column(lk.column)
        if value is None:
            values[lk.value_prop] = None
            hidden[type_col] = None
            return
        if not isinstance(value, str):
            raise bad_request(
                f"The value of '{nav}@odata.bind' must be an entity URL like '/{lk.target}(<guid>)'."
            )
        path = urlsplit(value).path if "://" in value else value
        path = path.split("/api/data/v9.2/", 1)[-1].lstrip("/")
        m = _NAME_KEY.match(path)
        if not m or m.group("key") is None or "/" in path:
            raise bad_request(f"The value '{value}' of '{nav}@odata.bind' is not an entity URL.")
        if m.group("name") != lk.target:
            raise bad_request(
                f"The value '{value}' of '{nav}@odata.bind' must reference '{lk.target}', not '{m.group('name')}'."
            )
        target = DATAVERSE[lk.target]
        target_key = self._parse_key(target, m.group("key"))
        if self.store.get(target, target_key) is None:
            raise not_found(_logical(target), target_key)
        values[lk.value_prop] = target_key
        hidden[type_col] = _logical(target)

    def _derived(
        self, es: EntitySet, values: dict[str, Any], hidden: dict[str, Any], current: dict | None
    ) -> None:
        """Columns Dataverse computes on write: people stamps, owner, fullname, invoice number and account/contact."""
        creating = current is None
        if creating:
            if es.prop("_createdby_value"):
                values["_createdby_value"] = APPLICATION_USER_ID
            if es.lookup("ownerid") and values.get("_ownerid_value") is None:
                values["_ownerid_value"] = APPLICATION_USER_ID
                hidden[lookup_type_column("ownerid")] = "systemuser"
            if es.name == "invoices" and not values.get("invoicenumber"):
                # invoicenumber is SystemRequired but auto-numbered (format UNVERIFIED).
                values["invoicenumber"] = f"INV-{uuid.uuid4().hex[:8].upper()}"
        if es.prop("_modifiedby_value"):
            values["_modifiedby_value"] = APPLICATION_USER_ID
        if es.prop("fullname") and ("firstname" in values or "lastname" in values):
            merged = {**(current or {}), **values}
            values["fullname"] = (
                " ".join(p for p in (merged.get("firstname"), merged.get("lastname")) if p) or None
            )
        if "_customerid_value" in values and es.prop("_accountid_value") and es.prop("_contactid_value"):
            kind = hidden.get(lookup_type_column("customerid"))
            values["_accountid_value"] = values["_customerid_value"] if kind == "account" else None
            values["_contactid_value"] = values["_customerid_value"] if kind == "contact" else None
        if (
            not creating
            and "isocurrencycode" in values
            and values["isocurrencycode"] != current.get("isocurrencycode")
        ):
            raise bad_request(
                "The 'isocurrencycode' attribute of the 'transactioncurrency' entity is not valid for update."
            )

    def _insert_row(
        self, es: EntitySet, values: dict, hidden: dict, key: str | None = None
    ) -> dict[str, Any]:
        values[es.key] = values.get(es.key) or key or str(uuid.uuid4())
        for prop in es.props:
            if prop.required and prop.default is None and values.get(prop.name) in (None, ""):
                raise bad_request(f"The '{prop.name}' attribute of the '{_logical(es)}' entity is required.")
        self._derived(es, values, hidden, None)
        try:
            return self.store.insert(es, values, hidden=hidden)
        except DuplicateKey:
            raise DVError(412, DUPLICATE, "A record with matching key values already exists.") from None

    def _update_row(
        self, es: EntitySet, key: str, values: dict, hidden: dict, expected: int | None
    ) -> dict[str, Any]:
        values.pop(es.key, None)
        current = self.store.get(es, key)
        if current is None:
            raise not_found(_logical(es), key)
        self._derived(es, values, hidden, current)
        try:
            return self.store.update(es, key, values, expected_version=expected, hidden=hidden)
        except NotFound:
            raise not_found(_logical(es), key) from None
        except VersionMismatch:
            raise DVError(
                412,
                CONCURRENCY,
                "The version of the existing record doesn't match the RowVersion property provided.",
            ) from None

    @staticmethod
    def _etag_version(header: str) -> int:
        m = re.fullmatch(r'\s*(?:W/)?"(\d+)"\s*', header)
        if not m:
            raise bad_request(f"The If-Match header value '{header}' is not a valid ETag.")
        return int(m.group(1))

    def _written(self, req: Req, es: EntitySet, row: dict, prefs: Prefs, query: Query, status: int) -> Resp:
        entity_url = f"{req.root}{es.name}({row[es.key]})"
        if not prefs.return_representation:
            return Resp.empty(204, {"OData-EntityId": entity_url})
        prefs.applied.insert(0, "return=representation")
        body = {"@odata.context": self._context(req, es, query, "/$entity")}
        body.update(self._render_rows(es, [row], query, _Render(prefs))[0])
        return Resp.json(status, body, {"ETag": etag(row), **prefs.applied_header()})

    def _create(self, req: Req, es: EntitySet) -> Resp:
        """POST: 204 + OData-EntityId, or 201 + entity with return=representation. The client may supply
        the key (idempotent creates); an existing key -> 412 DuplicateRecord."""
        prefs = parse_prefer(req.headers.get("Prefer"))
        query = self._write_query(req, es, prefs)
        body = self._body(req)
        with self.store.transaction():
            values, hidden = self._changes(es, body, creating=True)
            row = self._insert_row(es, values, hidden)
        return self._written(req, es, row, prefs, query, 201)

    def _upsert(self, req: Req, es: EntitySet, key: str) -> Resp:
        """PATCH = upsert (DV-UPSERT): ``If-Match: *`` update only, ``If-Match: W/"n"`` optimistic update,
        ``If-None-Match: *`` create only. 204 either way; 201/200 with return=representation."""
        prefs = parse_prefer(req.headers.get("Prefer"))
        query = self._write_query(req, es, prefs)
        body = self._body(req)
        if_match = (req.headers.get("If-Match") or "").strip() or None
        if_none = (req.headers.get("If-None-Match") or "").strip() or None
        if if_none not in (None, "null", "*"):
            raise bad_request("On PATCH, If-None-Match supports only '*' (create only).")
        expected = self._etag_version(if_match) if if_match not in (None, "*") else None
        with self.store.transaction():
            current = self.store.get(es, key)
            if current is None:
                if if_match:
                    raise not_found(_logical(es), key)
                values, hidden = self._changes(es, body, creating=True, key=key)
                row, status = self._insert_row(es, values, hidden, key), 201
            else:
                if if_none == "*":
                    raise DVError(412, DUPLICATE, "A record with matching key values already exists.")
                values, hidden = self._changes(es, body, creating=False, key=key)
                row, status = self._update_row(es, key, values, hidden, expected), 200
        return self._written(req, es, row, prefs, query, status)

    def _delete(self, req: Req, es: EntitySet, key: str) -> Resp:
        if req.query:
            raise bad_request("Query options are not supported on DELETE.")
        if_match = (req.headers.get("If-Match") or "").strip() or None
        expected = self._etag_version(if_match) if if_match not in (None, "*") else None
        try:
            self.store.delete(es, key, expected_version=expected)
        except NotFound:
            raise not_found(_logical(es), key) from None
        except VersionMismatch:
            raise DVError(
                412,
                CONCURRENCY,
                "The version of the existing record doesn't match the RowVersion property provided.",
            ) from None
        return Resp.empty(204)

    def _bulk(self, req: Req, es: EntitySet, action: str) -> Resp:
        """CreateMultiple (200 + Ids) / UpdateMultiple (204) / UpsertMultiple (204), all-or-nothing.

        Every target must carry ``@odata.type`` = ``Microsoft.Dynamics.CRM.<table>``; UpdateMultiple needs the
        primary key in each target; UpsertMultiple takes the key or ``@odata.id`` (``<set>(<guid>)``).
        """
        if req.query:
            raise bad_request(f"Query options are not supported on {action}.")
        body = self._body(req)
        logical = _logical(es)
        targets = body.get("Targets")
        if set(body) != {"Targets"} or not isinstance(targets, list) or not targets:
            raise bad_request(f'{action} takes a body {{"Targets": [...]}} with at least one {CRM}{logical}.')
        if len(targets) > BULK_LIMIT:
            raise bad_request(f"{action} accepts at most {BULK_LIMIT} Targets; {len(targets)} were sent.")
        for i, target in enumerate(targets):
            if not isinstance(target, dict) or "@odata.type" not in target:
                raise bad_request(
                    f'Targets[{i}] of {action} must be an object with "@odata.type": "{CRM}{logical}".'
                )
        ids: list[str] = []
        with self.store.transaction():
            for target in targets:
                payload = {k: v for k, v in target.items() if k != "@odata.id"}
                if payload["@odata.type"] not in (f"{CRM}{logical}", f"#{CRM}{logical}"):
                    raise bad_request(
                        f"The @odata.type '{payload['@odata.type']}' does not match '{CRM}{logical}'."
                    )
                key = self._target_key(es, target)
                if action == "CreateMultiple":
                    values, hidden = self._changes(es, payload, creating=True)
                    ids.append(self._insert_row(es, values, hidden)[es.key])
                    continue
                if key is None:
                    raise bad_request(f"Every target of {action} must contain its primary key '{es.key}'.")
                exists = self.store.get(es, key) is not None
                if action == "UpdateMultiple" and not exists:
                    raise not_found(logical, key)
                values, hidden = self._changes(es, payload, creating=not exists, key=key)
                if exists:
                    self._update_row(es, key, values, hidden, None)
                else:
                    self._insert_row(es, values, hidden, key)
        if action == "CreateMultiple":
            return Resp.json(
                200, {"@odata.context": f"{req.root}$metadata#{CRM}CreateMultipleResponse", "Ids": ids}
            )
        return Resp.empty(204)

    def _target_key(self, es: EntitySet, target: dict[str, Any]) -> str | None:
        if target.get(es.key) is not None:
            value = target[es.key]
            if not isinstance(value, str) or not GUID_RE.match(value):
                raise bad_request(f"The value of '{es.key}' is not a valid Edm.Guid.")
            return value.lower()
        odata_id = target.get("@odata.id")
        if odata_id is None:
            return None
        m = _NAME_KEY.match(str(odata_id).rsplit("/", 1)[-1])
        if not m or m.group("name") != es.name or m.group("key") is None:
            raise bad_request(f"The @odata.id '{odata_id}' does not identify a row of '{es.name}'.")
        return self._parse_key(es, m.group("key"))
