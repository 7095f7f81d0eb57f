"""Business Central API v2.0 and the d365kit companion API (docs/sandbox.md#bc-api), served from the store.

``BCService(ctx).handle(req)`` answers one request relative to ``{origin}/v2.0/{tenant}/{environment}/api/``:
``v2.0/...`` (standard API) or ``d365kit/integration/v1.0/...`` (companion API); both share this machinery.
Wire facts: docs/sandbox.md, "BC API" and "Companion API". Choices made where a fact is UNVERIFIED
(each also noted at the code that makes it):

- ``$count=true`` adds ``@odata.count``; ``/$count`` answers text/plain (BC support undocumented).
- Record not found: 404 ``Internal_RecordNotFound``; unknown company: 404 ``Internal_CompanyNotFound``;
  wrong tenant/environment in the URL: 404 ``BadRequest_NotFound``.
- Duplicate key (supplied ``id`` or No./Code): 409 ``Internal_EntityWithSameKeyExists``.
- Stale If-Match: 409 ``Request_EntityChanged``; missing or malformed If-Match: 400 ``BadRequest_InvalidToken``.
- Paging with $orderby or $top uses an opaque offset ``$skiptoken``; key order uses the last id.
- ``Prefer: odata.maxpagesize`` outside 1..20,000 or not a number: 400.
- Query option errors: 400 ``BadRequest``; not implemented: 501 ``BadRequest_NotImplemented``.
- $batch: > 100 operations: 400; multipart: 501; ``Isolation: snapshot`` failure: see ``bc_batch``.
- Navigations of the real pages that are declared but not served, and bound actions, answer 501 naming
  them (``bc_pages``); an action the page does not declare is 404. Computed parts (``picture``) and
  the computed ``customerFinancialDetails`` view are served through ``bc_pages``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from d365kit.sandbox import bc_pages, bc_rules, metadata, odata, schema
from d365kit.sandbox.bc_batch import run_batch
from d365kit.sandbox.bc_wire import (
    BLANK_GUID,
    BCError,
    caption,
    error_response,
    etag,
    render,
    well_formed_etag,
)
from d365kit.sandbox.context import SandboxContext
from d365kit.sandbox.http import Headers, Req, Resp
from d365kit.sandbox.schema import EntitySet, Nav
from d365kit.sandbox.store import q

log = logging.getLogger(__name__)

API_ROOTS = {"v2.0": "bc", "d365kit/integration/v1.0": "companion"}
MAX_PAGE_SIZE = 20_000  # A.4 / Part D: default = max page size online
OFFSET_TOKEN = "offset-"  # opaque $skiptoken prefix for ordered / $top paging (see _page)
EXTRA_PARAMS = frozenset({"company", "aid", "tenant"})  # BC-STRUCT ?company=; nextLinks carry aid=FIN
_SEGMENT = re.compile(r"^(?P<name>[^()]+)(?:\((?P<key>[^()]*)\))?$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ROOT = re.compile(r"/v2\.0/([^/]+)/([^/]+)/api/$")
_ENTITY_ONLY_OPTIONS = ("$filter", "$orderby", "$top", "$skip", "$count", "$skiptoken")


@dataclass
class Target:
    """What a request path addresses."""

    service: str
    svc_root: str  # absolute service root with trailing slash (for @odata.context, Location, nextLink)
    kind: str  # servicedoc | metadata | batch | collection | entity
    es: EntitySet | None = None
    company: str | None = None
    key: str | None = None
    parent: tuple[str, Any] | None = None  # (child property, value) of a nested collection/entity
    context: str = ""  # entity-set path for @odata.context, e.g. "companies(<id>)/customers"
    count: bool = False  # /$count
    part: bc_pages.PartNav | None = None  # kind "computed": a computed page part (picture) of entity ``key``


def _companies() -> EntitySet:
    return schema.BC["companies"]


def _guid(text: str, what: str) -> str:
    if not _GUID.match(text):
        raise BCError(400, "BadRequest", f"The key value '{text}' of {what} is not a valid GUID.")
    return text.lower()


def method_not_allowed(method: str, es_name: str) -> BCError:
    """BC-ERR BadRequest_MethodNotAllowed wording ("'POST' requests for 'companies' ... are not allowed")."""
    return BCError(
        405,
        "BadRequest_MethodNotAllowed",
        f"'{method}' requests for '{es_name}' of EdmEntityType are not allowed within Dynamics 365 Business "
        "Central OData web services.",
    )


def not_implemented(what: str) -> BCError:
    return BCError(501, "BadRequest_NotImplemented", f"{what} is not implemented by the d365kit sandbox.")


class BCService:
    """The BC API v2.0 + companion API request handler (transport-neutral; $batch re-enters ``handle``)."""

    def __init__(self, ctx: SandboxContext):
        self.ctx = ctx
        self.store = ctx.store
        self.rules = bc_rules.Rules(ctx.store)

    # -- entry ---------------------------------------------------------------------------------------

    def handle(self, req: Req) -> Resp:
        """Answer one request; every failure becomes a BC error body, never a stack trace."""
        try:
            return self._dispatch(req)
        except BCError as exc:
            return exc.response()
        except odata.QueryError as exc:
            return self._query_error(exc).response()
        except Exception:
            log.exception("BC sandbox request failed: %s %s", req.method, req.path)
            return error_response(500, "Internal_ServerError", "An unexpected error occurred in the sandbox.")

    @staticmethod
    def _query_error(exc: odata.QueryError) -> BCError:
        """Query option errors: 501 BadRequest_NotImplemented for what the sandbox does not do, else 400
        BadRequest (the reference lists no dedicated code for filter syntax errors; choice)."""
        code = "BadRequest_NotImplemented" if exc.status == 501 else "BadRequest"
        return BCError(exc.status, code, exc.message)

    def _dispatch(self, req: Req) -> Resp:
        t = self._resolve(req)
        if req.method != "GET" and (req.headers.get("data-access-intent") or "").lower() == "readonly":
            raise BCError(
                400, "BadRequest", "Data-Access-Intent: ReadOnly only allows GET requests (BC-TIPS)."
            )
        if t.kind == "servicedoc":
            self._allow(req, ("GET",), "service document")
            return self._service_document(t)
        if t.kind == "metadata":
            self._allow(req, ("GET",), "$metadata")
            csdl = metadata.csdl(t.service)
            body = csdl.encode() if isinstance(csdl, str) else csdl
            return Resp(200, Headers({"content-type": "application/xml", "odata-version": "4.0"}), body)
        if t.kind == "batch":
            if req.in_batch:
                raise BCError(400, "BadRequest", "A $batch request cannot be nested inside a $batch request.")
            self._allow(req, ("POST",), "$batch")
            return run_batch(self, req, t.service)
        assert t.es is not None
        if t.kind == "computed":
            if req.method != "GET":
                raise not_implemented(f"'{req.method}' on the navigation property '{t.part.name}'")  # type: ignore[union-attr]
            return self._get_computed(req, t)
        if t.es.service == "bc" and req.method in bc_pages.page(t.es.name).not_implemented:
            raise not_implemented(f"'{req.method}' on '{t.es.name}'")
        self._prepare(t.es, t.company)
        handlers: dict[tuple[str, str], Callable[[Req, Target], Resp]] = {
            ("collection", "GET"): self._get_collection,
            ("collection", "POST"): self._post,
            ("entity", "GET"): self._get_entity,
            ("entity", "PATCH"): self._patch,
            ("entity", "DELETE"): self._delete,
        }
        handler = handlers.get((t.kind, req.method))
        if handler is None or req.method not in t.es.methods or (t.count and req.method != "GET"):
            raise method_not_allowed(req.method, t.es.name)
        return handler(req, t)

    @staticmethod
    def _allow(req: Req, methods: tuple[str, ...], what: str) -> None:
        if req.method not in methods:
            raise method_not_allowed(req.method, what)

    # -- routing -------------------------------------------------------------------------------------

    def _check_root(self, req: Req) -> None:
        """The URL's tenant and environment must be this sandbox's (A.1); else a 404 like BC's.

        UNVERIFIED: the code real BC uses for an unknown tenant/environment; we answer 404 BadRequest_NotFound.
        """
        m = _ROOT.search(req.root)
        if m is None:
            raise self._unknown(req)
        tenant, environment = m.group(1), m.group(2)
        if tenant.lower() != self.ctx.tenant_id:
            raise BCError(404, "BadRequest_NotFound", f"The tenant '{tenant}' was not found.")
        if environment.lower() != self.ctx.environment.lower():
            raise BCError(404, "BadRequest_NotFound", f"The environment '{environment}' does not exist.")

    def _unknown(self, req: Req) -> BCError:
        url = req.root + req.path
        return BCError(
            404, "BadRequest_NotFound", f"No HTTP resource was found that matches the request URI '{url}'."
        )

    def _resolve(self, req: Req) -> Target:
        self._check_root(req)
        path = req.path.strip("/")
        prefix = next((p for p in API_ROOTS if path == p or path.startswith(p + "/")), None)
        if prefix is None:
            raise self._unknown(req)
        service = API_ROOTS[prefix]
        svc_root = f"{req.root}{prefix}/"
        segs = [s for s in path[len(prefix) :].split("/") if s]
        if not segs:
            return Target(service, svc_root, "servicedoc")
        if segs == ["$metadata"]:
            return Target(service, svc_root, "metadata")
        if segs == ["$batch"]:
            return Target(service, svc_root, "batch")
        registry = schema.REGISTRIES[service]  # type: ignore[index]

        def entity_set(name: str) -> EntitySet:
            es = _companies() if name == "companies" else registry.get(name)
            if es is None and name in schema.UNSERVED.get(service, ()):
                raise not_implemented(f"The entity set '{name}'")
            if es is None:
                raise self._unknown(req)
            return es

        name, key = self._segment(segs[0], req)
        es = entity_set(name)
        company: str | None = None
        context = name
        rest = segs[1:]
        if es.name == "companies" and key is not None and rest and not rest[0].startswith("$"):
            company = self._company(_guid(key, "companies"))
            context = f"companies({company})"
            name, key = self._segment(rest[0], req)
            es, rest = entity_set(name), rest[1:]
            if not es.company_scoped:
                raise self._unknown(req)
            context = f"{context}/{name}"
        elif es.company_scoped:
            company = self._company_from_request(req)
            context = f"companies({company})/{name}"
        t = Target(service, svc_root, "collection", es, company, context=context)
        if key is not None:
            t.kind, t.key = "entity", _guid(key, es.name)
            t.context = f"{t.context}({t.key})"
        for seg in rest:
            self._step(req, t, seg)
        if t.kind == "entity":
            self._entity_row(t)  # 404 early for unknown keys, including the parent of a nested path
        return t

    def _segment(self, seg: str, req: Req) -> tuple[str, str | None]:
        m = _SEGMENT.match(seg)
        if not m:
            raise self._unknown(req)
        if m.group("name").startswith("Microsoft.NAV."):
            raise not_implemented(f"The bound action '{m.group('name')}'")
        return m.group("name"), m.group("key")

    def _step(self, req: Req, t: Target, seg: str) -> None:
        """Walk one more segment: ``/$count``, a navigation property, or a bound action (501)."""
        if seg == "$count" and t.kind == "collection" and not t.count:
            t.count = True
            return
        if t.kind == "computed":  # picture/pictureContent: the media stream
            assert t.part is not None
            columns = {c["name"]: c for c in bc_pages.part_types()[t.part.type].columns}
            if columns.get(seg, {}).get("edm") == "Edm.Stream":
                raise not_implemented(f"The media property '{t.part.name}/{seg}'")
            raise self._unknown(req)
        if seg.startswith("Microsoft.NAV.") and t.kind == "entity" and t.es is not None:
            self._entity_row(t)
            action = seg[len("Microsoft.NAV.") :]
            if t.es.service == "bc" and action in bc_pages.page(t.es.name).actions:
                raise not_implemented(f"The bound action '{seg}' of '{t.es.name}'")
            raise self._unknown(req)
        name, key = self._segment(seg, req)
        if t.kind != "entity" or t.count:
            raise self._unknown(req)
        assert t.es is not None
        nav = t.es.nav(name)
        if nav is None:
            part = bc_pages.page(t.es.name).declared(name) if t.es.service == "bc" else None
            if part is None:
                raise self._unknown(req)
            self._entity_row(t)
            if not part.computed:
                raise bc_pages.not_implemented_nav(t.es, name)
            if key is not None:
                raise self._unknown(req)
            t.kind, t.part, t.context = "computed", part, f"{t.context}/{name}"
            return
        parent = self._entity_row(t)
        child = bc_rules.target_of(t.es, nav)
        if child is None:
            raise self._unknown(req)
        self._prepare(child, t.company)
        t.context = f"{t.context}/{name}"
        t.es = child
        if nav.many:
            t.kind, t.key, t.parent = "collection", None, (nav.remote, parent.get(nav.local))
            if key is not None:
                t.kind, t.key = "entity", _guid(key, name)
                t.context = f"{t.context}({t.key})"
            return
        if key is not None:
            raise self._unknown(req)
        rows = self.store.query(
            child,
            where=f"{q(nav.remote)} = ?",
            params=[parent.get(nav.local)],
            limit=1,
            company=t.company if child.company_scoped else None,
        )
        if not rows:
            raise self._record_not_found(child, str(parent.get(nav.local)))
        t.kind, t.key = "entity", rows[0][child.key]
        t.context = f"{t.context}({t.key})"

    def _company(self, company_id: str) -> str:
        """UNVERIFIED status: an unknown company answers 404 Internal_CompanyNotFound (code from BC-ERR)."""
        if self.store.get(_companies(), company_id) is None:
            raise BCError(404, "Internal_CompanyNotFound", f"The company '{company_id}' does not exist.")
        return company_id

    def _company_from_request(self, req: Req) -> str:
        """BC-STRUCT ``?company=<id>``, or (A.6 batch example) a ``Company`` header; an id or a name."""
        value = next((v for k, v in req.query if k == "company"), None) or req.headers.get("company")
        if not value:
            raise BCError(
                400,
                "BadRequest_NotFound",
                "No company was specified: use companies(<id>)/<entity set> or the company=<id> query parameter.",
            )
        if _GUID.match(value):
            return self._company(value.lower())
        rows = self.store.query(
            _companies(), where=f"{q('name')} = ? OR {q('displayName')} = ?", params=[value, value], limit=1
        )
        if not rows:
            raise BCError(404, "Internal_CompanyNotFound", f"The company '{value}' does not exist.")
        return rows[0]["id"]

    # -- reads ---------------------------------------------------------------------------------------

    def _record_not_found(self, es: EntitySet, key: str) -> BCError:
        """UNVERIFIED status (A.7): record not found -> 404 Internal_RecordNotFound, BC-ERR wording."""
        if es.name == "companies":
            return BCError(404, "Internal_CompanyNotFound", f"The company '{key}' does not exist.")
        return BCError(
            404,
            "Internal_RecordNotFound",
            f"The {caption(es.type_name)} does not exist. Identification fields and values: Id='{key}'",
        )

    def _entity_row(self, t: Target) -> dict[str, Any]:
        assert t.es is not None and t.key is not None
        row = self.store.get(t.es, t.key, t.company if t.es.company_scoped else None)
        if row is None or (t.parent is not None and row.get(t.parent[0]) != t.parent[1]):
            raise self._record_not_found(t.es, t.key)
        return row

    def _service_document(self, t: Target) -> Resp:
        names = ["companies", *schema.REGISTRIES[t.service]]  # type: ignore[index]
        value = [{"name": n, "kind": "EntitySet", "url": n} for n in dict.fromkeys(names)]
        return Resp.json(200, {"@odata.context": f"{t.svc_root}$metadata", "value": value})

    def _query(self, req: Req, es: EntitySet) -> tuple[Any, list[tuple[bc_pages.PartNav, list[str] | None]]]:
        """The parsed query, and the computed page parts (picture) to expand, which the query layer does not
        know: they are taken out of ``$expand`` first; declared navigations not served answer 501."""
        pairs, computed = bc_pages.split_expand(es, list(req.query))
        return odata.parse_query(pairs, es, "bc", extra_params=EXTRA_PARAMS), computed

    def _prepare(self, es: EntitySet, company: str | None) -> None:
        """Computed sets are brought up to date before they are read (customerFinancialDetails)."""
        if bc_pages.touches_financial_details(es):
            bc_pages.refresh_financial_details(self.store, company)

    def _add_computed(
        self, rows: list[dict], out: list[dict], computed: list[tuple[bc_pages.PartNav, list[str] | None]]
    ) -> None:
        for part, select in computed:
            for row, rendered in zip(rows, out, strict=True):
                rendered[part.name] = bc_pages.picture(row, part, select)

    def _get_computed(self, req: Req, t: Target) -> Resp:
        """GET of a computed page part (``customers({id})/picture``): ``$select`` only."""
        assert t.part is not None and t.es is not None
        options = [(k, v) for k, v in req.query if k not in EXTRA_PARAMS]
        select = bc_pages.computed_select(t.part, options)
        row = self._entity_row(t)
        body = bc_pages.picture(row, t.part, select)
        sel = f"({','.join(select)})" if select else ""
        ctx = {"@odata.context": f"{t.svc_root}$metadata#{t.context}{sel}/$entity"}
        return Resp.json(200, {**ctx, **body}, {"etag": body["@odata.etag"]})

    def _where(self, t: Target, filter_node: Any) -> tuple[str, list[Any]]:
        assert t.es is not None
        clauses, params = [], []
        if filter_node is not None:
            sql, fparams = odata.compile_filter(filter_node, t.es, "bc")
            clauses.append(f"({sql})")
            params.extend(fparams)
        if t.parent is not None:
            clauses.append(f"{q(t.parent[0])} = ?")
            params.append(t.parent[1])
        return " AND ".join(clauses), params

    @staticmethod
    def _collection_path(t: Target) -> str:
        """The entity-set path of the target (an entity's path without its trailing key)."""
        return t.context[: -len(f"({t.key})")] if t.kind == "entity" else t.context

    def _context(self, t: Target, select: list[str] | None, entity: bool) -> str:
        sel = f"({','.join(select)})" if select else ""
        return f"{t.svc_root}$metadata#{self._collection_path(t)}{sel}" + ("/$entity" if entity else "")

    def _get_collection(self, req: Req, t: Target) -> Resp:
        assert t.es is not None
        query, computed = self._query(req, t.es)
        where, params = self._where(t, query.filter)
        company = t.company if t.es.company_scoped else None
        if t.count:
            n = self.store.count(t.es, where=where, params=params, company=company)
            return Resp(200, Headers({"content-type": "text/plain", "odata-version": "4.0"}), str(n).encode())
        page_size, applied = self._page_size(req)
        rows, token = self._page(t, query, where, params, page_size)
        body: dict[str, Any] = {"@odata.context": self._context(t, query.select, entity=False)}
        if query.count:
            body["@odata.count"] = self.store.count(t.es, where=where, params=params, company=company)
        body["value"] = self._render_rows(t.es, rows, query, t.company)
        self._add_computed(rows, body["value"], computed)
        if token is not None:
            body["@odata.nextLink"] = self._next_link(req, token)
        headers = {"preference-applied": f"odata.maxpagesize={applied}"} if applied else {}
        return Resp.json(200, body, headers)

    def _page(
        self, t: Target, query: Any, where: str, params: list[Any], page_size: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Server-driven paging (A.4).

        Key order without $top: keyset paging, ``$skiptoken=<id of the last row>`` (GH-BC-1528 and the
        observed v2.0 nextLink). With $orderby or $top the token is an opaque offset ``offset-<n>`` (our
        choice; BC's token for those is undocumented). With $top a nextLink appears only when $top exceeds
        the page size (GH-AL-6858). $skip applies once, before the first page.
        """
        assert t.es is not None
        company = t.company if t.es.company_scoped else None
        token = query.skiptoken
        skip = query.skip or 0
        if not query.orderby and query.top is None:
            after = None
            if token is not None:
                if not _GUID.match(token):
                    raise BCError(
                        400, "BadRequest", f"The $skiptoken '{token}' is not valid for this request."
                    )
                after, skip = token.lower(), 0
            rows = self.store.query(
                t.es,
                where=where,
                params=params,
                limit=page_size + 1,
                after_key=after,
                offset=skip,
                company=company,
            )
            more = len(rows) > page_size
            rows = rows[:page_size]
            return rows, (rows[-1][t.es.key] if more else None)
        done = 0
        if token is not None:
            digits = token[len(OFFSET_TOKEN) :] if token.startswith(OFFSET_TOKEN) else ""
            if not digits.isdigit():
                raise BCError(400, "BadRequest", f"The $skiptoken '{token}' is not valid for this request.")
            done = int(digits)
        budget = page_size if query.top is None else min(page_size, query.top - done)
        if budget <= 0:
            return [], None
        order = [(p, desc) for p, desc in query.orderby]
        rows = self.store.query(
            t.es,
            where=where,
            params=params,
            order=order,
            limit=budget + 1,
            offset=skip + done,
            company=company,
        )
        more = len(rows) > budget and (query.top is None or done + budget < query.top)
        rows = rows[:budget]
        return rows, (f"{OFFSET_TOKEN}{done + len(rows)}" if more else None)

    @staticmethod
    def _page_size(req: Req) -> tuple[int, int | None]:
        """``Prefer: odata.maxpagesize=N`` with 1 <= N <= 20,000 (BC-PAGING); anything else is a 400 (choice)."""
        for pref in (req.headers.get("prefer") or "").split(","):
            name, _, value = pref.strip().partition("=")
            if name.strip().lower() == "odata.maxpagesize":
                value = value.strip().strip('"')
                if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE_SIZE:
                    raise BCError(
                        400,
                        "BadRequest",
                        f"The odata.maxpagesize preference '{value}' is not valid: use a whole number from 1 "
                        f"to {MAX_PAGE_SIZE}.",
                    )
                return int(value), int(value)
        return MAX_PAGE_SIZE, None

    @staticmethod
    def _next_link(req: Req, token: str) -> str:
        pairs = [(k, v) for k, v in req.query if k != "$skiptoken"] + [("$skiptoken", token)]
        return f"{req.root}{req.path}?{urlencode(pairs, quote_via=quote, safe=chr(36) + chr(39) + '(),:')}"

    def _get_entity(self, req: Req, t: Target) -> Resp:
        assert t.es is not None
        present = [k for k, _ in req.query if k in _ENTITY_ONLY_OPTIONS]
        if present:
            raise BCError(
                400, "BadRequest", f"The query option '{present[0]}' cannot be applied to a single entity."
            )
        query, computed = self._query(req, t.es)
        row = self._entity_row(t)
        body = {"@odata.context": self._context(t, query.select, entity=True)}
        rendered = self._render_rows(t.es, [row], query, t.company)
        self._add_computed([row], rendered, computed)
        body.update(rendered[0])
        return Resp.json(200, body, {"etag": etag(row, t.es)})

    def _render_rows(
        self, es: EntitySet, rows: list[dict[str, Any]], query: Any, company: str | None
    ) -> list[dict]:
        out = [render(r, es, query.select) for r in rows]
        for item in query.expand or ():
            self._expand(es, rows, out, item, company)
        return out

    def _expand(
        self, es: EntitySet, rows: list[dict], out: list[dict], item: Any, company: str | None
    ) -> None:
        """``$expand=nav($select=..;$filter=..;$orderby=..;$top=..;$skip=..;$expand=..)`` (BC-PERF, BC-RATE)."""
        nav: Nav | None = es.nav(item.name)
        target = bc_rules.target_of(es, nav) if nav else None
        if nav is None or target is None:
            raise BCError(400, "BadRequest", f"Could not find a navigation property named '{item.name}'.")
        sub = item.query or odata.Query()
        self._prepare(target, company)
        values = sorted({r.get(nav.local) for r in rows if r.get(nav.local) not in (None, "", BLANK_GUID)})
        found: list[dict] = []
        for start in range(0, len(values), 5000):
            chunk = values[start : start + 5000]
            where = f"{q(nav.remote)} IN ({', '.join('?' * len(chunk))})"
            params: list[Any] = list(chunk)
            if sub.filter is not None:
                sql, fparams = odata.compile_filter(sub.filter, target, "bc")
                where, params = f"{where} AND ({sql})", params + list(fparams)
            found += self.store.query(
                target,
                where=where,
                params=params,
                order=list(sub.orderby or ()),
                company=company if target.company_scoped else None,
            )
        groups: dict[Any, list[dict]] = {}
        for r in found:
            groups.setdefault(r.get(nav.remote), []).append(r)
        for row, rendered in zip(rows, out, strict=True):
            matches = groups.get(row.get(nav.local), [])
            if nav.many:
                skip = sub.skip or 0
                matches = matches[skip : None if sub.top is None else skip + sub.top]
                if sub.count:
                    rendered[f"{item.name}@odata.count"] = len(groups.get(row.get(nav.local), []))
                rendered[item.name] = self._render_rows(target, matches, sub, company)
            else:
                rendered[item.name] = (
                    self._render_rows(target, matches[:1], sub, company)[0] if matches else None
                )

    # -- writes --------------------------------------------------------------------------------------

    @staticmethod
    def _body(req: Req) -> dict[str, Any]:
        try:
            body = req.json()
        except ValueError as exc:
            raise BCError(400, "BadRequest", f"Invalid Request Body. {exc}") from None
        if not isinstance(body, dict):
            raise BCError(400, "BadRequest", "Invalid Request Body. A JSON object was expected.")
        return body

    def _location(self, t: Target, row: dict[str, Any]) -> str:
        assert t.es is not None
        return f"{t.svc_root}{self._collection_path(t)}({row[t.es.key]})"

    def _post(self, req: Req, t: Target) -> Resp:
        assert t.es is not None
        if t.count:
            raise method_not_allowed("POST", "$count")
        body = self._body(req)
        with self.store.transaction():
            row = self.rules.create(t.es, body, t.company, t.parent)
        return Resp.json(
            201,
            {"@odata.context": self._context(t, None, entity=True), **render(row, t.es)},
            {"etag": etag(row, t.es), "location": self._location(t, row)},
        )

    def _check_if_match(self, req: Req, es: EntitySet, current: dict[str, Any]) -> None:
        """A.5: If-Match is required on PATCH/DELETE; ``*`` matches; a stale ETag is 409 Request_EntityChanged.

        UNVERIFIED: 409 vs 412 for a stale ETag; we answer 409 (BC-HTTP's description). A value that is
        not an ETag at all is the same 400 BadRequest_InvalidToken as a missing one.
        """
        presented = (req.headers.get("if-match") or "").strip()
        token_error = BCError(
            400,
            "BadRequest_InvalidToken",
            "Could not validate the client concurrency token required by the service. Please provide a valid "
            "token in the client request.",
        )
        if not presented:
            raise token_error
        candidates = [c.strip() for c in presented.split(",")]
        if "*" in candidates or etag(current, es) in candidates:
            return
        if not any(well_formed_etag(c) for c in candidates):
            raise token_error
        raise BCError(409, "Request_EntityChanged", "Another user has already changed the record.")

    def _patch(self, req: Req, t: Target) -> Resp:
        assert t.es is not None and t.key is not None
        body = self._body(req)
        with self.store.transaction():
            current = self._entity_row(t)
            self._check_if_match(req, t.es, current)
            row = self.rules.update(t.es, current, body, t.company)
        return Resp.json(
            200,
            {"@odata.context": self._context(t, None, entity=True), **render(row, t.es)},
            {"etag": etag(row, t.es)},
        )

    def _delete(self, req: Req, t: Target) -> Resp:
        assert t.es is not None and t.key is not None
        with self.store.transaction():
            current = self._entity_row(t)
            self._check_if_match(req, t.es, current)
            self.rules.delete(t.es, current, t.company)
        return Resp.empty(204)
