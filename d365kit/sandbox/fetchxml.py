"""FetchXML on the Dataverse Web API (``GET <set>?fetchXml=<url-encoded fetch>``), single-table queries.

What is served ("Use FetchXml to query data", "Page results using FetchXml"; docs/sandbox.md, "FetchXML"):

- ``<fetch>`` with ``count``, ``page``, ``paging-cookie``, ``top``, ``returntotalrecordcount``, and the
  inert ``version``/``mapping``/``no-lock``/``output-format``; one ``<entity name>`` whose name is the
  logical name of the addressed entity set; ``<attribute name>`` (no attribute, or ``<all-attributes/>``:
  every column), ``<order attribute descending>``, ``<filter type="and|or">`` nested to any depth with
  ``<condition attribute operator value>`` (``<value>`` children for ``in``/``not-in``/``between``).
- Operators: eq ne gt ge lt le like not-like null not-null in not-in between not-between begins-with
  not-begin-with ends-with not-end-with. Values are read as the column's type; lookups are named by their
  column (``parentcustomerid``) and read as ``_<column>_value``.
- Paging: ``count`` rows per page (default and maximum 5,000); ``page`` numbers from 1. The answer carries
  ``@Microsoft.Dynamics.CRM.morerecords`` and, when more rows exist,
  ``@Microsoft.Dynamics.CRM.fetchxmlpagingcookie``: ``<cookie pagenumber="N+1" pagingcookie="<double
  URL-encoded cookie>" istracking="False" />`` whose inner cookie is ``<cookie page="N"><pk last="{GUID}"
  first="{GUID}" /></cookie>`` (the documented shape), only when asked for with ``Prefer:
  odata.include-annotations``. A cookie on a query ordered by the primary key only pages by key (rows
  after ``last``); otherwise by page number.
- 501, naming it: ``link-entity``, ``aggregate``, ``distinct``, attribute aliases, ``condition
  entityname``/``valueof``, every other operator (``on``, ``last-x-days``, ``eq-userid``, ``under`` ...).

Choices (UNVERIFIED): null columns are left out of a row (as FetchXML results leave them out); ``ne``,
``not-like``, ``not-in`` ... exclude rows whose value is null (SQL semantics); string comparisons are
case-insensitive and ``%``/``_`` in ``like``/``begins-with``/``ends-with`` values act as wildcards; ``top``
with ``count``/``page`` -> 400; ``Prefer: odata.maxpagesize`` with fetchXml -> 400 (use ``count``); invalid
XML or an unknown element or attribute -> 400; an unknown column -> 400 code ``0x80041103``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote, unquote
from xml.etree.ElementTree import Element

from d365kit.sandbox.dataverse_wire import GUID_RE, MAX_PAGE_SIZE, DVError, bad_request, not_implemented
from d365kit.sandbox.schema import EntitySet, Prop
from d365kit.sandbox.store import format_datetime, q

try:  # defusedxml refuses entity expansion bombs; it is installed with the notebook stack
    from defusedxml.ElementTree import ParseError
    from defusedxml.ElementTree import fromstring as _fromstring
except ImportError:  # pragma: no cover - the standard library parser (no external entities either)
    from xml.etree.ElementTree import ParseError
    from xml.etree.ElementTree import fromstring as _fromstring

NO_ATTRIBUTE = "0x80041103"  # QueryBuilderNoAttribute
INVALID = "0x80041129"  # FetchXML parse/validation failure (code chosen, UNVERIFIED)

PAGING_COOKIE = "Microsoft.Dynamics.CRM.fetchxmlpagingcookie"
MORE_RECORDS = "Microsoft.Dynamics.CRM.morerecords"

_FETCH_ATTRS = frozenset(
    {
        "version",
        "mapping",
        "count",
        "page",
        "paging-cookie",
        "top",
        "returntotalrecordcount",
        "no-lock",
        "output-format",
        "distinct",
        "aggregate",
        "aggregatelimit",
        "latematerialize",
        "useraworderby",
        "datasource",
        "options",
        "min-active-row-version",
    }
)
_UNSUPPORTED_FETCH = ("aggregate", "latematerialize", "datasource", "min-active-row-version", "useraworderby")
_OPERATORS = frozenset(
    {
        "eq",
        "ne",
        "neq",
        "gt",
        "ge",
        "lt",
        "le",
        "like",
        "not-like",
        "null",
        "not-null",
        "in",
        "not-in",
        "between",
        "not-between",
        "begins-with",
        "not-begin-with",
        "ends-with",
        "not-end-with",
    }
)
_SQL_COMPARE = {"eq": "=", "ne": "<>", "neq": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


@dataclass
class FetchQuery:
    """A parsed single-table fetch: what to read, how to order, which page."""

    columns: list[str] | None  # stored property names; None = all
    where: str = ""
    params: list[Any] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)
    count: int = MAX_PAGE_SIZE
    page: int = 1
    top: int | None = None
    after_key: str | None = None  # keyset paging from the cookie (primary-key order only)
    total: bool = False


def _error(message: str) -> DVError:
    return bad_request(message, INVALID)


def _int_attr(el: Element, name: str, low: int, high: int) -> int | None:
    text = el.get(name)
    if text is None:
        return None
    if not re.fullmatch(r"\d+", text.strip()) or not low <= int(text) <= high:
        raise _error(f"The '{name}' attribute of the fetch element must be an integer from {low} to {high}.")
    return int(text)


def parse(text: str, es: EntitySet, logical: str) -> FetchQuery:
    """Parse ``text`` for entity set ``es`` (raises DVError 400 for bad input, 501 for what is not served)."""
    try:
        root = _fromstring(text)
    except ParseError as exc:
        raise _error(f"The fetchXml parameter is not valid XML: {exc}.") from None
    except Exception as exc:  # defusedxml's refusals (entities, DTDs)
        raise _error(f"The fetchXml parameter was refused: {exc}.") from None
    if root.tag != "fetch":
        raise _error(f"The root element of a FetchXML query must be 'fetch', not '{root.tag}'.")
    for name in root.attrib:
        if name not in _FETCH_ATTRS:
            raise _error(f"The attribute '{name}' is not valid on the fetch element.")
    for name in _UNSUPPORTED_FETCH:
        if root.get(name) not in (None, "false", "0"):
            raise not_implemented(f"FetchXML '{name}'")
    if root.get("distinct") in ("true", "1"):
        raise not_implemented("FetchXML 'distinct'")
    entities = [child for child in root if child.tag == "entity"]
    others = [child.tag for child in root if child.tag != "entity"]
    if others:
        raise _error(f"The element '{others[0]}' is not valid inside the fetch element.")
    if len(entities) != 1:
        raise _error("A FetchXML query must have exactly one entity element.")
    entity = entities[0]
    if entity.get("name") != logical:
        raise _error(
            f"The entity '{entity.get('name')}' of the FetchXML query does not match the entity set '{es.name}' "
            f"(entity '{logical}')."
        )
    query = FetchQuery(columns=[])
    top = _int_attr(root, "top", 1, MAX_PAGE_SIZE)
    count = _int_attr(root, "count", 1, MAX_PAGE_SIZE)
    page = _int_attr(root, "page", 1, 10**9)
    if top is not None and (count is not None or page is not None):
        raise _error("The 'top' attribute can't be used with the 'count' or 'page' attributes.")
    query.top, query.count, query.page = top, count or MAX_PAGE_SIZE, page or 1
    query.total = root.get("returntotalrecordcount") in ("true", "1")
    all_attributes = False
    filters: list[Element] = []
    for child in entity:
        if child.tag == "attribute":
            if set(child.attrib) - {"name"}:
                extra = sorted(set(child.attrib) - {"name"})[0]
                raise not_implemented(f"The FetchXML attribute option '{extra}'")
            query.columns.append(_column(es, logical, child.get("name")))  # type: ignore[union-attr]
        elif child.tag == "all-attributes":
            all_attributes = True
        elif child.tag == "order":
            if set(child.attrib) - {"attribute", "descending"}:
                raise not_implemented(
                    f"FetchXML order by '{sorted(set(child.attrib) - {'attribute', 'descending'})[0]}'"
                )
            query.order.append(
                (_column(es, logical, child.get("attribute")), child.get("descending") in ("true", "1"))
            )
        elif child.tag == "filter":
            filters.append(child)
        elif child.tag == "link-entity":
            raise not_implemented("FetchXML link-entity (joins)")
        else:
            raise _error(f"The element '{child.tag}' is not valid inside the entity element.")
    if all_attributes or not query.columns:
        query.columns = None
    if len(filters) > 1:
        raise _error("The entity element can hold at most one filter element.")
    if filters:
        query.where, query.params = _filter(es, logical, filters[0])
    cookie = root.get("paging-cookie")
    if cookie and query.page > 1 and [c for c, _ in query.order] in ([], [es.key]):
        descending = any(d for _, d in query.order)
        if not descending:
            query.after_key = _cookie_last(cookie, es.key)
    return query


def _column(es: EntitySet, logical: str, name: str | None) -> str:
    if not name:
        raise _error("An attribute, order or condition element is missing its attribute name.")
    for candidate in (name, f"_{name}_value"):
        if es.prop(candidate) is not None and (candidate == name) != candidate.endswith("_value"):
            return candidate
    raise DVError(
        400,
        NO_ATTRIBUTE,
        f"'{logical}' entity doesn't contain attribute with Name = '{name}' and NameMapping = 'Logical'.",
    )


def _filter(es: EntitySet, logical: str, el: Element) -> tuple[str, list[Any]]:
    kind = el.get("type", "and")
    if kind not in ("and", "or"):
        raise _error(f"The filter type '{kind}' is not valid; use 'and' or 'or'.")
    if set(el.attrib) - {"type"}:
        raise not_implemented(f"The FetchXML filter option '{sorted(set(el.attrib) - {'type'})[0]}'")
    parts, params = [], []
    for child in el:
        if child.tag == "condition":
            sql, p = _condition(es, logical, child)
        elif child.tag == "filter":
            sql, p = _filter(es, logical, child)
        elif child.tag == "link-entity":
            raise not_implemented("FetchXML link-entity (joins)")
        else:
            raise _error(f"The element '{child.tag}' is not valid inside a filter element.")
        if sql:
            parts.append(f"({sql})")
            params.extend(p)
    return f" {kind.upper()} ".join(parts), params


def _condition(es: EntitySet, logical: str, el: Element) -> tuple[str, list[Any]]:
    for name in ("entityname", "valueof", "aggregate", "alias", "rowaggregate", "uiname", "uitype"):
        if el.get(name):
            raise not_implemented(f"The FetchXML condition option '{name}'")
    op = el.get("operator")
    if op not in _OPERATORS:
        if not op:
            raise _error("A condition element is missing its operator.")
        raise not_implemented(f"The FetchXML condition operator '{op}'")
    column = _column(es, logical, el.get("attribute"))
    prop = es.prop(column)
    assert prop is not None
    col = q(column)
    values = [v.text or "" for v in el if v.tag == "value"]
    if [c.tag for c in el if c.tag != "value"]:
        raise _error("A condition element can only hold value elements.")
    single = el.get("value")
    fold = " COLLATE NOCASE" if prop.edm == "Edm.String" else ""
    if op in ("null", "not-null"):
        return f"{col} IS {'NOT ' if op == 'not-null' else ''}NULL", []
    if op in ("in", "not-in"):
        items = values or ([single] if single is not None else [])
        if not items:
            raise _error(f"The condition operator '{op}' needs at least one value element.")
        marks = ", ".join("?" * len(items))
        return f"{col}{fold} {'NOT ' if op == 'not-in' else ''}IN ({marks})", [_typed(prop, v) for v in items]
    if op in ("between", "not-between"):
        if len(values) != 2:
            raise _error(f"The condition operator '{op}' needs exactly two value elements.")
        low, high = (_typed(prop, v) for v in values)
        return f"{col} {'NOT ' if op == 'not-between' else ''}BETWEEN ? AND ?", [low, high]
    if single is None:
        if len(values) != 1:
            raise _error(f"The condition operator '{op}' needs a value.")
        single = values[0]
    if op in _SQL_COMPARE:
        return f"{col} {_SQL_COMPARE[op]} ?{fold}", [_typed(prop, single)]
    if prop.edm != "Edm.String":
        raise _error(
            f"The condition operator '{op}' applies to string columns only ('{el.get('attribute')}')."
        )
    pattern = {
        "like": single,
        "not-like": single,
        "begins-with": f"{single}%",
        "not-begin-with": f"{single}%",
        "ends-with": f"%{single}",
        "not-end-with": f"%{single}",
    }[op]
    negate = op.startswith("not-")
    return f"{col} {'NOT ' if negate else ''}LIKE ?", [pattern]


def _typed(prop: Prop, text: str) -> Any:
    """A condition value as stored for the column's type (400 when it does not convert)."""
    value = text.strip()

    def wrong() -> DVError:
        return _error(f"The value '{text}' is not valid for the {prop.edm} column '{prop.name}'.")

    if prop.edm == "Edm.String":
        return text
    if prop.edm == "Edm.Guid":
        value = value.strip("{}")
        if not GUID_RE.match(value):
            raise wrong()
        return value.lower()
    if prop.edm == "Edm.Boolean":
        if value.lower() not in ("1", "0", "true", "false"):
            raise wrong()
        return 1 if value.lower() in ("1", "true") else 0
    if prop.edm in ("Edm.Int32", "Edm.Int64"):
        if not re.fullmatch(r"-?\d+", value):
            raise wrong()
        return int(value)
    if prop.edm in ("Edm.Decimal", "Edm.Double"):
        try:
            return float(value)
        except ValueError:
            raise wrong() from None
    try:
        if prop.edm == "Edm.Date":
            return date.fromisoformat(value[:10]).isoformat()
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise wrong() from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return format_datetime(parsed)


def _cookie_last(cookie: str, key: str) -> str | None:
    """The ``last`` primary key of an inner paging cookie (``<cookie page="1"><key last="{GUID}" .../>``)."""
    try:
        root = _fromstring(cookie)
    except Exception:
        raise _error("The paging-cookie of the fetch element is not a valid paging cookie.") from None
    el = root.find(key)
    if el is None or not el.get("last"):
        return None
    last = el.get("last", "").strip("{}")
    if not GUID_RE.match(last):
        raise _error("The paging-cookie of the fetch element is not a valid paging cookie.")
    return last.lower()


def paging_cookie(page: int, key: str, first: str, last: str) -> str:
    """The ``fetchxmlpagingcookie`` annotation value for the page after ``page`` (documented shape)."""
    inner = f'<cookie page="{page}"><{key} last="{{{last.upper()}}}" first="{{{first.upper()}}}" /></cookie>'
    encoded = quote(quote(inner, safe=""), safe="")
    return f'<cookie pagenumber="{page + 1}" pagingcookie="{encoded}" istracking="False" />'


def unquote_cookie(value: str) -> str:
    """The inner cookie of a ``pagingcookie`` attribute (for tests and clients)."""
    return unquote(unquote(value))
