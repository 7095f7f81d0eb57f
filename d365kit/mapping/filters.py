"""BC table-view filter text -> OData ``$filter``: the tenant's Table Filter and Integration Table Filter
(table 5335 fields 14/15, docs/reconcile.md#scope-filters) applied to the reading side.

BC keeps a filter as a table view: ``WHERE(Blocked=FILTER(' '),Company No.=FILTER(<>''))`` — field
captions (or names), each with a filter expression. The expressions translated here are the ones BC's
filter syntax documents for equality and ranges: ``a|b`` (or), ``<>a``, ``>a``, ``>=a``, ``<a``, ``<=a``,
``a..b``, ``''`` (blank), ``' '`` (a blank option), ``{guid}``, ``Yes``/``No``, option captions, and
``*x*`` / ``x*`` / ``*x`` (contains / starts with / ends with). Anything else — a field that the API does
not expose, an option caption with no known value, ``&``, ``@`` (case-insensitive), ``?`` — makes the
side *untranslatable*: ``translate`` says which term and why, and the caller keeps the mapping marked
rather than reading a wider (or narrower) scope than the tenant's. Source: "Filtering" in the Business
Central docs (https://learn.microsoft.com/en-us/dynamics365/business-central/ui-enter-criteria-filters).

A Dataverse side's company term (``CompanyId=FILTER(<own>|{blank})``) is the mapping's company scope,
which reconcile applies itself (``dv_company_field``); it is left out of the translated text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from d365kit.errors import UsageError
from d365kit.odata.query import Filter, Guid, Q

_TERM = re.compile(r"\s*([^=,]+?)\s*=\s*(?:FILTER|CONST)\((.*?)\)\s*(?:,|$)", re.S)
_GUID = re.compile(r"^\{?([0-9a-fA-F-]{36})\}?$")
BLANK_GUID = "00000000-0000-0000-0000-000000000000"
COMPANY = "companyid"

Resolve = Callable[[str], str | None]  # caption -> API property (None: not exposed)
Options = Callable[[str, str], int | None]  # (property, option caption) -> option value


@dataclass(frozen=True)
class Translation:
    """The OData filter of a table view (None: no filter), or why it cannot be translated."""

    filter: str | None
    problem: str | None = None
    company: bool = False  # the view has a company term (the mapping's own company scope)
    lookup_types: tuple[tuple[str, str], ...] = ()  # (lookup attribute, target table) from <X>Type terms


def terms(view: str) -> list[tuple[str, str]] | None:
    """(caption, filter expression) of each term of a ``WHERE(...)`` table view; None when it is not one."""
    text = view.strip()
    if not text:
        return []
    where = re.search(r"WHERE\((.*)\)\s*$", text, re.S)
    if where is None:
        return None
    body, out, pos = where.group(1), [], 0
    while pos < len(body):
        m = _TERM.match(body, pos)
        if m is None:
            return None
        out.append((m.group(1).strip(), m.group(2).strip()))
        pos = m.end()
    return out


def _value(raw: str, edm: str, prop: str, options: Options) -> object:
    """One filter value as a Python value of the property's type; raises ValueError when it has none."""
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1].replace("''", "'")
    if edm == "Edm.Boolean":
        lowered = text.lower()
        if lowered in ("yes", "true", "1"):
            return True
        if lowered in ("no", "false", "0", ""):
            return False
        raise UsageError(f"{raw!r} is not Yes or No")
    if edm == "Edm.Guid":
        if text in ("", "{}"):
            return None
        m = _GUID.match(text)
        if not m:
            raise UsageError(f"{raw!r} is not a GUID")
        return None if m.group(1) == BLANK_GUID else Guid(m.group(1))
    if edm in ("Edm.Int32", "Edm.Int64", "Edm.Int16", "Edm.Byte"):
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        value = options(prop, text)
        if value is None:
            raise UsageError(f"option {text!r} of {prop} has no known value")
        return value
    if edm in ("Edm.Decimal", "Edm.Double"):
        return float(text)
    if edm.startswith("Microsoft.NAV."):  # a BC enum: the wire spelling of the caption
        return text.replace(" ", "_x0020_").replace("-", "_x002D_") if text != " " else " "
    return text


def _condition(prop: str, expr: str, edm: str, options: Options) -> Filter:
    """One field's filter expression as an OData condition (``a|b`` -> or; ranges; wildcards)."""
    if re.search(r"[&@?]", expr):
        raise UsageError(f"{expr!r} uses &, @ or ?, which are not translated")
    parts = []
    for alt in expr.split("|"):
        alt = alt.strip()
        if ".." in alt and not alt.startswith("'"):
            lo, hi = alt.split("..", 1)
            conds = []
            if lo.strip():
                conds.append(Q.ge(prop, _value(lo, edm, prop, options)))
            if hi.strip():
                conds.append(Q.le(prop, _value(hi, edm, prop, options)))
            parts.append(conds[0] if len(conds) == 1 else conds[0] & conds[1])
            continue
        op = next((o for o in ("<>", ">=", "<=", ">", "<") if alt.startswith(o)), "")
        value_text = alt[len(op) :]
        if "*" in value_text and edm == "Edm.String":
            core = value_text.strip("*")
            if "*" in core or op:
                raise UsageError(f"{alt!r}: only *x*, x* and *x are translated")
            fn = (
                Q.contains
                if value_text.startswith("*") and value_text.endswith("*")
                else Q.startswith
                if value_text.endswith("*")
                else Q.endswith
            )
            parts.append(fn(prop, core))
            continue
        value = _value(value_text, edm, prop, options)
        make = {"": Q.eq, "<>": Q.ne, ">": Q.gt, ">=": Q.ge, "<": Q.lt, "<=": Q.le}[op]
        parts.append(make(prop, value))
    out = parts[0]
    for p in parts[1:]:
        out = out | p
    return out


def translate(view: str, resolve: Resolve, types: Mapping[str, str], options: Options) -> Translation:
    """The OData filter of table view ``view``; ``resolve`` names a caption's API property, ``types`` its
    EDM type, ``options`` an option caption's value."""
    found = terms(view)
    if found is None:
        return Translation(None, f"the filter text {view!r} is not a WHERE(...) table view")
    conditions: list[Filter] = []
    company = False
    kinds: list[tuple[str, str]] = []
    for caption, expr in found:
        if caption.replace(" ", "").lower() == COMPANY:
            company = True
            continue
        owner = caption[:-4] if caption.lower().endswith("type") else ""
        if owner and resolve(caption) is None and (resolve(owner) or "").startswith("_"):
            kinds.append(
                (owner.lower(), expr.strip("'"))
            )  # a polymorphic lookup's target: ParentCustomerIdType
            continue
        prop = resolve(caption)
        if prop is None:
            return Translation(
                None, f"{caption}=FILTER({expr}): no API property for field {caption!r}", company
            )
        try:
            conditions.append(_condition(prop, expr, types.get(prop, "Edm.String"), options))
        except ValueError as exc:
            return Translation(None, f"{caption}=FILTER({expr}): {exc}", company)
    if not conditions:
        return Translation(None, None, company, tuple(kinds))
    combined = conditions[0]
    for c in conditions[1:]:
        combined = combined & c
    return Translation(combined.text, None, company, tuple(kinds))


__all__ = ["Translation", "terms", "translate"]
