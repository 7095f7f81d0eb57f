"""Query builder with correct OData literal escaping.

``literal()`` turns Python values into OData literals: strings quoted with ``'`` doubled, GUIDs bare,
datetimes as UTC ISO 8601 with ``Z``, dates as ``YYYY-MM-DD``, booleans ``true``/``false``, ``None`` as
``null``. ``Enum`` members render their value (BC enums compare as strings: ``status eq 'Open'``).
Build filters from ``Q`` helpers rather than by string formatting, so a value can never become syntax.

A plain string is accepted wherever a filter goes (``Query(filter="number eq '10000'")``, ``where(...)``,
``Filter & "..."``): it is taken as filter text as written, wrapped in ``Filter``, and combines with the
others in parentheses. Strings for ``select``/``orderby`` are comma-separated lists (``"number,displayName"``);
``expand`` keeps a string whole (nested options contain commas). Anything else is a ``UsageError``.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from d365kit.errors import UsageError
from d365kit.timestamps import iso

_GUID_LEN = 36


class Guid(str):
    """A string that renders as a bare GUID literal (validated)."""

    def __new__(cls, value: str | uuid.UUID) -> Guid:
        return super().__new__(cls, str(uuid.UUID(str(value))))


def literal(value: Any) -> str:
    """The OData literal for ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return literal(value.value)
    if isinstance(value, uuid.UUID | Guid):
        return str(value)
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise UsageError(f"{value!r} has no OData literal")
        return repr(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise UsageError(f"naive datetime {value!r}: give it a timezone (e.g. datetime.now(UTC))")
        return iso(value)  # type: ignore[return-value]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise UsageError(f"no OData literal for {type(value).__name__} value {value!r}")


def _name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "_/" for c in name):
        raise UsageError(f"{name!r} is not a property name")
    return name


@dataclass(frozen=True)
class Filter:
    """A filter expression; combine with ``&``, ``|`` and ``~`` (with another ``Filter`` or filter text)."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise UsageError(f"a filter is non-empty OData filter text, not {self.text!r}")

    def __and__(self, other: Filter | str) -> Filter:
        return Filter(f"({self.text}) and ({as_filter(other).text})")

    def __rand__(self, other: str) -> Filter:
        return as_filter(other) & self

    def __or__(self, other: Filter | str) -> Filter:
        return Filter(f"({self.text}) or ({as_filter(other).text})")

    def __ror__(self, other: str) -> Filter:
        return as_filter(other) | self

    def __invert__(self) -> Filter:
        return Filter(f"not ({self.text})")

    def __str__(self) -> str:
        return self.text


def as_filter(value: Filter | str) -> Filter:
    """``value`` as a ``Filter``: a ``Filter`` as is, a string as filter text; else ``UsageError``."""
    if isinstance(value, Filter):
        return value
    if isinstance(value, str):
        return Filter(value)
    raise UsageError(
        f"a filter is a Filter (from Q: Q.eq('number', '10000')) or OData filter text, not "
        f"{type(value).__name__} {value!r}"
    )


def _names(option: str, value: Any, *, split: bool = True) -> tuple[str, ...]:
    """A tuple option from a tuple/list of strings or one string (comma-separated when ``split``)."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")] if split else [value.strip()]
        return tuple(v for v in items if v)
    items = list(value) if isinstance(value, Iterable) else None
    if items is not None and all(isinstance(v, str) for v in items):
        return tuple(items)
    raise UsageError(f"{option} is a string or a tuple of strings, not {type(value).__name__} {value!r}")


class Q:
    """Filter constructors: ``Q.eq("number", "10000") & Q.gt("lastModifiedDateTime", since)``."""

    @staticmethod
    def _cmp(op: str, name: str, value: Any) -> Filter:
        return Filter(f"{_name(name)} {op} {literal(value)}")

    @classmethod
    def eq(cls, name: str, value: Any) -> Filter:
        return cls._cmp("eq", name, value)

    @classmethod
    def ne(cls, name: str, value: Any) -> Filter:
        return cls._cmp("ne", name, value)

    @classmethod
    def gt(cls, name: str, value: Any) -> Filter:
        return cls._cmp("gt", name, value)

    @classmethod
    def ge(cls, name: str, value: Any) -> Filter:
        return cls._cmp("ge", name, value)

    @classmethod
    def lt(cls, name: str, value: Any) -> Filter:
        return cls._cmp("lt", name, value)

    @classmethod
    def le(cls, name: str, value: Any) -> Filter:
        return cls._cmp("le", name, value)

    @staticmethod
    def contains(name: str, value: str) -> Filter:
        return Filter(f"contains({_name(name)},{literal(value)})")

    @staticmethod
    def startswith(name: str, value: str) -> Filter:
        return Filter(f"startswith({_name(name)},{literal(value)})")

    @staticmethod
    def endswith(name: str, value: str) -> Filter:
        return Filter(f"endswith({_name(name)},{literal(value)})")

    @staticmethod
    def in_(name: str, values: Iterable[Any]) -> Filter:
        """``name in (...)`` for BC; Dataverse has no ``in`` (OData 4.0), so use ``any_of`` there."""
        items = list(values)
        if not items:
            raise UsageError("in_() needs at least one value")
        return Filter(f"{_name(name)} in ({','.join(literal(v) for v in items)})")

    @staticmethod
    def any_of(name: str, values: Iterable[Any]) -> Filter:
        """``name eq a or name eq b ...`` (same field, so BC's OR restriction is respected)."""
        items = list(values)
        if not items:
            raise UsageError("any_of() needs at least one value")
        return Filter(" or ".join(f"{_name(name)} eq {literal(v)}" for v in items))


@dataclass(frozen=True)
class Query:
    """Immutable query options for one entity set; ``params()`` gives the encoded query string pairs.

    ``filter`` is a ``Filter`` or filter text (kept as ``Filter``); ``select``/``orderby``/``expand`` take
    a tuple or one string (see the module docstring)."""

    select: tuple[str, ...] = ()
    filter: Filter | None = None
    orderby: tuple[str, ...] = ()
    top: int | None = None
    expand: tuple[str, ...] = ()
    count: bool = False
    extra: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)  # frozen: normalized once, here

        if self.filter is not None:
            put("filter", as_filter(self.filter))
        put("select", _names("select", self.select))
        put("orderby", _names("orderby", self.orderby))
        put("expand", _names("expand", self.expand, split=False))

    def with_select(self, *names: str) -> Query:
        return replace(self, select=tuple(_name(n) for n in names))

    def where(self, f: Filter | str) -> Query:
        f = as_filter(f)
        return replace(self, filter=f if self.filter is None else self.filter & f)

    def order_by(self, *terms: str) -> Query:
        for t in terms:
            _name(t.split()[0])
        return replace(self, orderby=tuple(terms))

    def limit(self, n: int) -> Query:
        if n < 0:
            raise UsageError("top must be >= 0")
        return replace(self, top=n)

    def params(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.select:
            out.append(("$select", ",".join(self.select)))
        if self.filter is not None:
            out.append(("$filter", self.filter.text))
        if self.orderby:
            out.append(("$orderby", ",".join(self.orderby)))
        if self.top is not None:
            out.append(("$top", str(self.top)))
        if self.expand:
            out.append(("$expand", ",".join(self.expand)))
        if self.count:
            out.append(("$count", "true"))
        out.extend(self.extra)
        return out

    def query_string(self) -> str:
        """Percent-encoded (spaces as %20, quotes kept readable as %27)."""
        return "&".join(f"{k}={quote(v, safe=',()/')}" for k, v in self.params())


def key_segment(entity_set: str, key: str | uuid.UUID) -> str:
    """``accounts(<guid>)`` — keys here are always GUIDs; anything else is refused."""
    text = str(key)
    if len(text) != _GUID_LEN:
        raise UsageError(f"{text!r} is not a GUID key")
    return f"{entity_set}({uuid.UUID(text)})"


__all__: Sequence[str] = ["Filter", "Guid", "Q", "Query", "as_filter", "key_segment", "literal"]
