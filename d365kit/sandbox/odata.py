"""Server-side OData query options of both services: parse, validate against the schema, compile to SQL.

``parse_query`` turns the request's query pairs into a ``Query``; ``compile_filter`` turns a parsed
``$filter`` into SQL for ``store.query(where=..., params=...)``: property names become quoted identifiers
taken from ``schema.py`` only and every literal is a ``?`` parameter, so a literal holding quotes or SQL
text stays data. Nothing is silently ignored: an option or construct the sandbox does not implement is a
``QueryError`` with status 501 naming it; a malformed or unsupported one is a 400.

Dialect rules and the choices made where the reference is silent (UNVERIFIED = a chosen best guess):

- Option names are case-sensitive in both dialects (``$Filter`` is an unknown option -> 400).
- Dataverse: ``$skip``, ``$search``, ``$format`` -> 400 "The query parameter '$skip' is not supported."
  (ODataLib wording; the exact Dataverse text is UNVERIFIED); ``$apply``/``$compute`` -> 501; parameter
  aliases (``@p1``) -> 501; the ``in`` operator -> 400 syntax, Dataverse being OData 4.0 (UNVERIFIED);
  ``tolower``/``toupper`` -> 501: Dataverse documents only contains/startswith/endswith (UNVERIFIED);
  string comparisons and functions are case-insensitive, and ``%``/``_`` in contains/startswith/endswith
  values act as SQL wildcards as the reference says (``[]`` character classes are not emulated).
- BC: ``$skip`` allowed; ``$apply``/``$compute``/``$search`` -> 501; ``$deltatoken`` -> 400 (delta links
  were removed in BC v24); ``$count=true`` accepted (BC support UNVERIFIED); ``$schemaversion`` accepted as
  1.0, 2.0 or 2.1 with no change in behaviour: the sandbox always behaves like 2.1 (``in`` and nested
  function calls allowed); ``$format`` accepted only as ``json`` (the only format served). Strings compare
  case-sensitively (AL filters); ``tolower``/``toupper`` fold. ``or`` across distinct properties -> 400
  with BC's message. Lambdas (``any``/``all``), which BC silently ignores, are refused with 501 instead, so
  a filter never means something other than what it says.
- Both: ``ne`` is null-safe (``name ne 'x'`` includes rows whose name is null: OData semantics, and BC
  has blank rather than null text; Dataverse behaviour UNVERIFIED). ``not`` binds tighter than the
  comparison operators, as in ODataLib: write ``not (a eq 1)``. A date literal compared with a
  DateTimeOffset property means midnight UTC. A datetime literal without offset is read as UTC.
  Datetime literals are normalized to the storage form ``YYYY-MM-DDTHH:MM:SS.fffZ`` (UTC, milliseconds).
  Types are checked as ODataLib does: a GUID is written bare (a quoted GUID is an Edm.String -> 400).
  Property-to-property comparisons (``firstname eq lastname``) are allowed in both dialects.
- Not implemented (501): nav paths (``a/b``), lambdas, arithmetic (add sub mul div mod), ``has``,
  ``Microsoft.Dynamics.CRM.*`` functions, other OData functions (substring, length, year, ...), ``$it``
  and ``$root``, ordering by expressions, nested ``$expand`` paths and ``*``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Literal as TypingLiteral

from d365kit.sandbox import schema
from d365kit.sandbox.store import format_datetime, q

Dialect = TypingLiteral["bc", "dataverse"]


class QueryError(Exception):
    """A query option the service refuses (400) or the sandbox does not implement (501)."""

    def __init__(self, status: int, message: str, kind: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind

    def __str__(self) -> str:
        return self.message


def _bad(message: str, kind: str = "syntax") -> QueryError:
    return QueryError(400, message, kind)


def _todo(message: str) -> QueryError:
    return QueryError(501, message, "not_implemented")


# --------------------------------------------------------------------------------------------------
# Filter AST
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    """A typed literal; ``value`` is already in storage form (GUID lower-case, datetime normalized)."""

    kind: str  # string int decimal double bool null guid date datetime
    value: object
    pos: int = 0


@dataclass(frozen=True)
class PropRef:
    name: str
    pos: int = 0


@dataclass(frozen=True)
class Compare:
    op: str  # eq ne gt ge lt le
    left: Node
    right: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # and or
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Call:
    name: str  # contains startswith endswith tolower toupper
    args: tuple[Node, ...]


@dataclass(frozen=True)
class InList:
    operand: Node
    values: tuple[Literal, ...]


Node = Literal | PropRef | Compare | BoolOp | Not | Call | InList

# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------

_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![\w-])")
_DATETIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?([Zz]|[+-]\d{2}:\d{2})?(?![\w:.])"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?![\w:.-])")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?(?![\w.])")
_IDENT = re.compile(r"[$A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_ALIAS = re.compile(r"@[A-Za-z_][A-Za-z0-9_]*")
_PUNCT = {"(": "lparen", ")": "rparen", ",": "comma", "/": "slash", ":": "colon"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # literal ident alias lparen rparen comma slash colon other end
    text: str
    pos: int
    literal: Literal | None = None


def _unconvertible(text: str, edm: str, dialect: Dialect) -> QueryError:
    if dialect == "bc":
        return _bad(f"Unable to convert value to {edm.removeprefix('Edm.')}: '{text}'.")
    return _bad(f"The literal '{text}' is not a valid {edm} value.")


def _datetime_literal(m: re.Match[str], dialect: Dialect) -> str:
    day, hh, mm, ss, frac, tz = m.groups()
    try:
        value = datetime.fromisoformat(f"{day}T{hh}:{mm}:{ss or '00'}")
        if frac:
            value = value.replace(microsecond=int(frac[:6].ljust(6, "0")))
        if tz and tz not in "Zz":
            sign = 1 if tz[0] == "+" else -1
            offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
            value = value.replace(tzinfo=timezone(sign * offset))
        else:
            value = value.replace(tzinfo=UTC)
    except ValueError:
        raise _unconvertible(m.group(0), "Edm.DateTimeOffset", dialect) from None
    return format_datetime(value)


def _tokenize(text: str, dialect: Dialect) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "'":
            j, parts = i + 1, []
            while True:
                k = text.find("'", j)
                if k < 0:
                    raise _bad(f"There is an unterminated literal at position {n} in '{text}'.")
                parts.append(text[j:k])
                if text.startswith("''", k):
                    parts.append("'")
                    j = k + 2
                    continue
                break
            toks.append(_Tok("literal", text[i : k + 1], i, Literal("string", "".join(parts), i)))
            i = k + 1
            continue
        if ch in _PUNCT:
            toks.append(_Tok(_PUNCT[ch], ch, i))
            i += 1
            continue
        if m := _GUID.match(text, i):
            toks.append(_Tok("literal", m.group(0), i, Literal("guid", m.group(0).lower(), i)))
        elif m := _DATETIME.match(text, i):
            toks.append(_Tok("literal", m.group(0), i, Literal("datetime", _datetime_literal(m, dialect), i)))
        elif m := _DATE.match(text, i):
            try:
                day = date.fromisoformat(m.group(0)).isoformat()
            except ValueError:
                raise _unconvertible(m.group(0), "Edm.Date", dialect) from None
            toks.append(_Tok("literal", m.group(0), i, Literal("date", day, i)))
        elif m := _NUMBER.match(text, i):
            toks.append(_Tok("literal", m.group(0), i, _number(m, i)))
        elif m := _IDENT.match(text, i):
            word = m.group(0)
            keyword = {"true": ("bool", True), "false": ("bool", False), "null": ("null", None)}.get(word)
            lit = Literal(keyword[0], keyword[1], i) if keyword else None
            toks.append(_Tok("literal" if lit else "ident", word, i, lit))
        elif m := _ALIAS.match(text, i):
            toks.append(_Tok("alias", m.group(0), i))
        else:
            toks.append(_Tok("other", ch, i))
            i += 1
            continue
        i = m.end()
    toks.append(_Tok("end", "", n))
    return toks


def _number(m: re.Match[str], pos: int) -> Literal:
    text = m.group(0)
    if m.group(2):
        return Literal("double", float(text), pos)
    if m.group(1):
        return Literal("decimal", Decimal(text), pos)
    return Literal("int", int(text), pos)


# --------------------------------------------------------------------------------------------------
# Parser (recursive descent, ODataLib precedence: or < and < comparison < unary not < primary)
# --------------------------------------------------------------------------------------------------

_COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
_ARITHMETIC = ("add", "sub", "mul", "div", "divby", "mod", "has")
_STRING_PREDICATES = ("contains", "startswith", "endswith")
_STRING_FOLDS = ("tolower", "toupper")
_OTHER_FUNCTIONS = frozenset(
    (
        "substring",
        "length",
        "indexof",
        "concat",
        "trim",
        "year",
        "month",
        "day",
        "hour",
        "minute",
        "second",
        "fractionalseconds",
        "date",
        "time",
        "totaloffsetminutes",
        "totalseconds",
        "now",
        "maxdatetime",
        "mindatetime",
        "round",
        "floor",
        "ceiling",
        "cast",
        "isof",
        "matchespattern",
        "hassubset",
        "hassubsequence",
        "case",
        "substringof",
    )
)


class _Parser:
    def __init__(self, text: str, dialect: Dialect):
        self.text = text
        self.dialect = dialect
        self.toks = _tokenize(text, dialect)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def _peek(self, ahead: int = 1) -> _Tok:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def _is_word(self, word: str) -> bool:
        return self.tok.kind == "ident" and self.tok.text == word

    def _advance(self) -> _Tok:
        tok = self.tok
        self.i += 1
        return tok

    def _syntax(self, tok: _Tok | None = None) -> QueryError:
        tok = tok or self.tok
        if tok.kind == "end":
            return _bad(f"Expression expected at position {tok.pos} in '{self.text}'.")
        if tok.kind == "other":
            return _bad(
                f"Syntax error: character '{tok.text}' is not valid at position {tok.pos} in '{self.text}'."
            )
        return _bad(f"Syntax error at position {tok.pos} in '{self.text}'.")

    def _expect(self, kind: str) -> _Tok:
        if self.tok.kind != kind:
            raise self._syntax()
        return self._advance()

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise _bad("The $filter query option must not be empty.")
        node = self._or()
        if self.tok.kind != "end":
            raise self._syntax()
        return node

    def _or(self) -> Node:
        node = self._and()
        while self._is_word("or"):
            self._advance()
            node = BoolOp("or", node, self._and())
        return node

    def _and(self) -> Node:
        node = self._comparison()
        while self._is_word("and"):
            self._advance()
            node = BoolOp("and", node, self._comparison())
        return node

    def _comparison(self) -> Node:
        node = self._unary()
        while self.tok.kind == "ident":
            word = self.tok.text
            if word in _COMPARISONS:
                self._advance()
                node = Compare(word, node, self._unary())
            elif word == "in":
                node = self._in_list(node)
            elif word in _ARITHMETIC:
                raise _todo(f"The '{word}' operator in $filter is not implemented by the sandbox.")
            else:
                break
        return node

    def _in_list(self, operand: Node) -> InList:
        in_tok = self._advance()
        if self.dialect == "dataverse":
            raise _bad(
                f"Syntax error at position {in_tok.pos} in '{self.text}': the 'in' operator is not supported "
                "(Dataverse implements OData 4.0); combine 'eq' comparisons with 'or'."
            )
        self._expect("lparen")
        values = []
        while True:
            tok = self.tok
            if tok.kind != "literal" or tok.literal is None:
                raise self._syntax()
            values.append(tok.literal)
            self._advance()
            if self.tok.kind == "rparen":
                self._advance()
                return InList(operand, tuple(values))
            self._expect("comma")

    def _unary(self) -> Node:
        if self._is_word("not"):
            self._advance()
            return Not(self._unary())
        return self._primary()

    def _primary(self) -> Node:
        tok = self.tok
        if tok.kind == "lparen":
            self._advance()
            node = self._or()
            self._expect("rparen")
            return node
        if tok.kind == "literal" and tok.literal is not None:
            self._advance()
            return tok.literal
        if tok.kind == "alias":
            raise _todo(f"Parameter aliases ('{tok.text}') are not implemented by the sandbox.")
        if tok.kind != "ident" or tok.text in _COMPARISONS + _ARITHMETIC + ("and", "or", "in"):
            raise self._syntax()
        self._advance()
        if tok.text.startswith("$"):
            raise _todo(f"'{tok.text}' in $filter is not implemented by the sandbox.")
        if self.tok.kind == "lparen":
            return self._call(tok)
        if self.tok.kind == "slash":
            nxt = self._peek()
            if nxt.kind == "ident" and nxt.text in ("any", "all") and self._peek(2).kind == "lparen":
                raise _todo(
                    f"The lambda operator '{nxt.text}' ({tok.text}/{nxt.text}) in $filter is not implemented "
                    "by the sandbox."
                )
            raise _todo(
                f"Navigation paths in $filter ('{tok.text}/{nxt.text}') are not implemented by the sandbox."
            )
        return PropRef(tok.text, tok.pos)

    def _call(self, name_tok: _Tok) -> Call:
        name = name_tok.text
        if name.startswith("Microsoft.Dynamics.CRM."):
            if self.dialect == "dataverse":
                raise _todo(f"The Dataverse query function '{name}' is not implemented by the sandbox.")
            raise _unknown_function(name)
        if name in _OTHER_FUNCTIONS:
            raise _todo(f"The function '{name}' in $filter is not implemented by the sandbox.")
        if name in _STRING_FOLDS and self.dialect == "dataverse":
            raise _todo(
                f"The function '{name}' is not supported for Dataverse (string comparisons are already "
                "case-insensitive)."
            )
        if name not in _STRING_PREDICATES + _STRING_FOLDS:
            raise _unknown_function(name)
        self._expect("lparen")
        args: list[Node] = []
        if self.tok.kind != "rparen":
            args.append(self._or())
            while self.tok.kind == "comma":
                self._advance()
                args.append(self._or())
        self._expect("rparen")
        return Call(name, tuple(args))


def _unknown_function(name: str) -> QueryError:
    return _bad(
        f"An unknown function with name '{name}' was found. This may also be a function import or a key "
        "lookup on a navigation property, which is not allowed.",
        "unknown_function",
    )


def _children(node: Node) -> tuple[Node, ...]:
    match node:
        case Compare(left=a, right=b) | BoolOp(left=a, right=b):
            return (a, b)
        case Not(operand=a) | InList(operand=a):
            return (a,)
        case Call(args=args):
            return args
    return ()


def _props_of(node: Node) -> set[str]:
    """Property names a filter (sub)expression references (for BC's OR restriction)."""
    names = {node.name} if isinstance(node, PropRef) else set()
    return names.union(*map(_props_of, _children(node)))


def _check_bc_or(node: Node) -> None:
    if isinstance(node, BoolOp) and node.op == "or" and len(_props_of(node)) > 1:
        raise _bad("The 'OR' operator is not supported on distinct fields on an OData filter.", "restriction")
    for child in _children(node):
        _check_bc_or(child)


def parse_filter(text: str, dialect: Dialect) -> Node:
    """Parse a ``$filter`` expression into an AST; dialect-level rules (BC's OR restriction) apply here."""
    node = _Parser(text, dialect).parse()
    if dialect == "bc":
        _check_bc_or(node)
    return node


# --------------------------------------------------------------------------------------------------
# Compiler
# --------------------------------------------------------------------------------------------------

_SQL_OP = {"eq": "IS", "ne": "IS NOT", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_OP_KIND = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
    "and": "And",
    "or": "Or",
}
_LITERAL_EDM = {
    "string": "Edm.String",
    "int": "Edm.Int32",
    "decimal": "Edm.Decimal",
    "double": "Edm.Double",
    "bool": "Edm.Boolean",
    "guid": "Edm.Guid",
    "date": "Edm.Date",
    "datetime": "Edm.DateTimeOffset",
    "null": None,
}
_NUMERIC = frozenset({"Edm.Int32", "Edm.Int64", "Edm.Decimal", "Edm.Double"})
BOOL = "Edm.Boolean"


def _namespace(dialect: Dialect) -> str:
    return "Microsoft.NAV" if dialect == "bc" else "Microsoft.Dynamics.CRM"


def unknown_property(name: str, es: schema.EntitySet, dialect: Dialect) -> QueryError:
    """The services' 400 for a property name the entity type does not have."""
    return _bad(
        f"Could not find a property named '{name}' on type '{_namespace(dialect)}.{es.type_name}'.",
        "unknown_property",
    )


def _compatible(a: str | None, b: str | None) -> bool:
    if a is None or b is None or a == b:
        return True
    return {a, b} <= _NUMERIC


def _literal_edm(lit: Literal) -> str | None:
    if isinstance(lit.value, int) and lit.kind == "int" and not -(2**31) <= lit.value < 2**31:
        return "Edm.Int64"
    return _LITERAL_EDM[lit.kind]


@dataclass
class _Val:
    """A compiled expression: SQL text, its parameters, its EDM type (None for null) and source property."""

    sql: str
    params: list[object]
    edm: str | None
    prop: schema.Prop | None = None


class _Compiler:
    def __init__(self, es: schema.EntitySet, dialect: Dialect):
        self.es = es
        self.dialect = dialect

    def compile(self, node: Node) -> _Val:
        match node:
            case Literal():
                return _Val("?", [self._param(node, _literal_edm(node))], _literal_edm(node))
            case PropRef(name=name):
                prop = self.es.prop(name)
                if prop is None:
                    raise unknown_property(name, self.es, self.dialect)
                return _Val(q(prop.name), [], prop.edm, prop)
            case Compare():
                return self._compare(node)
            case BoolOp(op=op, left=a, right=b):
                left, right = self.compile(a), self.compile(b)
                if left.edm != BOOL or right.edm != BOOL:
                    raise _binary_types(left.edm, right.edm, op)
                return _Val(f"({left.sql} {op.upper()} {right.sql})", left.params + right.params, BOOL)
            case Not(operand=a):
                inner = self.compile(a)
                if inner.edm != BOOL:
                    raise _bad(
                        "A unary operator with an incompatible type was detected. Found operand type "
                        f"'{inner.edm}' for operator kind 'Not'."
                    )
                return _Val(f"(NOT {inner.sql})", inner.params, BOOL)
            case Call():
                return self._call(node)
            case InList(operand=a, values=values):
                left = self.compile(a)
                params = [self._coerce(v, left, "eq") for v in values]
                marks = ", ".join("?" * len(params))
                return _Val(f"({left.sql} IN ({marks}))", left.params + params, BOOL)
        raise TypeError(f"not a filter node: {node!r}")

    def _compare(self, node: Compare) -> _Val:
        a, b = node.left, node.right
        if isinstance(a, Literal) and not isinstance(b, Literal):
            right = self.compile(b)
            left = _Val("?", [self._coerce(a, right, node.op)], right.edm)
        else:
            left = self.compile(a)
            if isinstance(b, Literal):
                right = _Val("?", [self._coerce(b, left, node.op)], left.edm)
            else:
                right = self.compile(b)
        if not _compatible(left.edm, right.edm):
            raise _binary_types(left.edm, right.edm, node.op)
        nulls = [isinstance(n, Literal) and n.kind == "null" for n in (a, b)]
        if node.op in ("eq", "ne") and any(nulls):
            subject = right if nulls[0] else left
            null_sql = "IS NULL" if node.op == "eq" else "IS NOT NULL"
            return _Val(f"({subject.sql} {null_sql})", subject.params, BOOL)
        fold = (
            " COLLATE NOCASE" if self.dialect == "dataverse" and "Edm.String" in (left.edm, right.edm) else ""
        )
        sql = f"({left.sql} {_SQL_OP[node.op]} {right.sql}{fold})"
        return _Val(sql, left.params + right.params, BOOL)

    def _coerce(self, lit: Literal, other: _Val, op: str) -> object:
        """The literal as a parameter comparable with ``other`` (type-checked; BC enums validated)."""
        edm = _literal_edm(lit)
        date_as_datetime = other.edm == "Edm.DateTimeOffset" and edm == "Edm.Date"
        if not (_compatible(other.edm, edm) or date_as_datetime):
            raise _binary_types(other.edm, edm, op)
        prop = other.prop
        if prop is not None and prop.enum and lit.kind == "string" and lit.value not in prop.enum:
            allowed = ", ".join(f"'{v}'" for v in prop.enum)
            raise _bad(
                f"The value '{lit.value}' is not valid for the enum property '{prop.name}'"
                f"{f' ({prop.enum_type})' if prop.enum_type else ''}. Allowed values: {allowed}."
            )
        return self._param(lit, other.edm)

    @staticmethod
    def _param(lit: Literal, target: str | None) -> object:
        if lit.kind == "bool":
            return 1 if lit.value else 0
        if lit.kind == "decimal":
            return float(lit.value)  # type: ignore[arg-type]
        if lit.kind == "date" and target == "Edm.DateTimeOffset":
            return f"{lit.value}T00:00:00.000Z"
        return lit.value

    def _call(self, node: Call) -> _Val:
        args = [self.compile(a) for a in node.args]
        arity = 1 if node.name in _STRING_FOLDS else 2
        if len(args) != arity or any(a.edm not in ("Edm.String", None) for a in args):
            sig = ", ".join(["Edm.String Nullable=true"] * arity)
            raise _bad(
                f"No function signature for the function with name '{node.name}' matches the specified "
                f"arguments. The function signatures considered are: {node.name}({sig}).",
                "unknown_function",
            )
        params = [p for a in args for p in a.params]
        if arity == 1:
            fn = "lower" if node.name == "tolower" else "upper"
            return _Val(f"{fn}({args[0].sql})", params, "Edm.String")
        s, t = args[0].sql, args[1].sql
        if self.dialect == "dataverse":
            # LIKE is ASCII case-insensitive in SQLite; % and _ in the value stay wildcards as in Dataverse.
            pattern = {
                "contains": f"'%' || {t} || '%'",
                "startswith": f"{t} || '%'",
                "endswith": f"'%' || {t}",
            }
            return _Val(f"({s} LIKE {pattern[node.name]})", params, BOOL)
        if node.name == "contains":
            return _Val(f"(instr({s}, {t}) > 0)", params, BOOL)
        if node.name == "startswith":
            return _Val(f"(instr({s}, {t}) = 1)", params, BOOL)
        sp, tp = args[0].params, args[1].params
        sql = f"(length({s}) >= length({t}) AND substr({s}, length({s}) - length({t}) + 1) = {t})"
        return _Val(sql, sp + tp + sp + sp + tp + tp, BOOL)


def _binary_types(a: str | None, b: str | None, op: str) -> QueryError:
    return _bad(
        "A binary operator with incompatible types was detected. Found operand types "
        f"'{a or 'null'}' and '{b or 'null'}' for operator kind '{_OP_KIND[op]}'."
    )


def compile_filter(node: Node | None, es: schema.EntitySet, dialect: Dialect) -> tuple[str, list[object]]:
    """SQL for ``store.query(where=...)`` and its parameters; ``("", [])`` when there is no filter."""
    if node is None:
        return "", []
    val = _Compiler(es, dialect).compile(node)
    if val.edm != BOOL:
        raise _bad("The $filter expression must evaluate to a single boolean value.")
    return val.sql, val.params


# --------------------------------------------------------------------------------------------------
# Query options
# --------------------------------------------------------------------------------------------------


@dataclass
class Query:
    select: list[str] | None = None  # None = all properties
    filter: Node | None = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)  # (property, descending)
    top: int | None = None
    skip: int | None = None
    expand: list[ExpandItem] = field(default_factory=list)
    count: bool = False
    skiptoken: str | None = None
    deltatoken: str | None = None
    custom: dict[str, str] = field(default_factory=dict)  # allowed non-$ parameters (extra_params)
    schemaversion: str | None = None  # BC $schemaversion as given (no change in behaviour)


@dataclass
class ExpandItem:
    """One ``$expand`` item. ``query`` holds the parsed nested options when the target entity set is known
    from the schema; ``options`` keeps the raw nested pairs for ``parse_expand_options``."""

    name: str
    query: Query | None = None
    options: list[tuple[str, str]] = field(default_factory=list)
    target: str | None = None  # target entity set name (Nav.target / Lookup.target)


_OPTIONS: dict[Dialect, frozenset[str]] = {
    "bc": frozenset(
        (
            "$filter",
            "$select",
            "$orderby",
            "$top",
            "$skip",
            "$expand",
            "$count",
            "$skiptoken",
            "$schemaversion",
            "$format",
        )
    ),
    "dataverse": frozenset(
        (
            "$filter",
            "$select",
            "$orderby",
            "$top",
            "$expand",
            "$count",
            "$skiptoken",
            "$deltatoken",
        )
    ),
}
_NOT_IMPLEMENTED: dict[Dialect, frozenset[str]] = {
    "bc": frozenset({"$apply", "$compute", "$search"}),
    "dataverse": frozenset({"$apply", "$compute"}),
}
_NOT_IN_EXPAND = frozenset({"$skiptoken", "$deltatoken", "$schemaversion", "$format"})
_SCHEMA_VERSIONS = frozenset({"1.0", "2.0", "2.1"})


def _unsupported(name: str) -> QueryError:
    return _bad(f"The query parameter '{name}' is not supported.", "unsupported_option")


def parse_query(
    pairs: list[tuple[str, str]],
    es: schema.EntitySet,
    dialect: Dialect,
    *,
    extra_params: frozenset[str] = frozenset(),
) -> Query:
    """Validate and parse a request's query pairs (already URL-decoded) for entity set ``es``."""
    return _parse(pairs, es, dialect, extra_params, nested=False)


def parse_expand_options(item: ExpandItem, target_es: schema.EntitySet, dialect: Dialect) -> Query:
    """Parse an expand item's nested options against its target entity set."""
    return _parse(item.options, target_es, dialect, frozenset(), nested=True)


def _parse(
    pairs: list[tuple[str, str]],
    es: schema.EntitySet,
    dialect: Dialect,
    extra_params: frozenset[str],
    *,
    nested: bool,
) -> Query:
    seen: dict[str, str] = {}
    for name, value in pairs:
        if name in seen:
            raise _bad(
                f"Query option '{name}' was specified more than once, but it must be specified at most once."
            )
        if name.startswith("@"):
            raise _todo(f"Parameter aliases ('{name}') are not implemented by the sandbox.")
        if name.startswith("$"):
            if name in _NOT_IMPLEMENTED[dialect]:
                raise _todo(f"The query option '{name}' is not implemented by the sandbox.")
            if name not in _OPTIONS[dialect]:
                raise _unsupported(name)
            if nested and name in _NOT_IN_EXPAND:
                raise _bad(f"The query option '{name}' is not allowed inside $expand.", "unsupported_option")
        elif name not in extra_params:
            raise _unsupported(name)
        seen[name] = value

    query = Query(custom={k: v for k, v in seen.items() if not k.startswith("$")})
    if "$filter" in seen:
        query.filter = parse_filter(seen["$filter"], dialect)
        compile_filter(query.filter, es, dialect)  # names and types are checked now, not at execution
    if "$select" in seen:
        query.select = _parse_select(seen["$select"], es, dialect)
    if "$orderby" in seen:
        query.orderby = _parse_orderby(seen["$orderby"], es, dialect)
    if "$top" in seen:
        query.top = _non_negative("$top", seen["$top"])
    if "$skip" in seen:
        query.skip = _non_negative("$skip", seen["$skip"])
    if "$count" in seen:
        if seen["$count"] not in ("true", "false"):
            raise _bad(f"'{seen['$count']}' is not a valid count option.")
        query.count = seen["$count"] == "true"
    if "$expand" in seen:
        query.expand = _parse_expand(seen["$expand"], es, dialect)
    if "$skiptoken" in seen:
        query.skiptoken = seen["$skiptoken"]
    if "$deltatoken" in seen:
        query.deltatoken = seen["$deltatoken"]
    if "$schemaversion" in seen:
        if seen["$schemaversion"] not in _SCHEMA_VERSIONS:
            raise _bad(
                f"The schema version '{seen['$schemaversion']}' is not supported; use 1.0, 2.0 or 2.1."
            )
        query.schemaversion = seen["$schemaversion"]
    if "$format" in seen and seen["$format"] not in ("json", "application/json"):
        raise _bad(f"The format '{seen['$format']}' is not supported; this service answers JSON only.")
    return query


def _non_negative(option: str, value: str) -> int:
    if not re.fullmatch(r"\d+", value):
        raise _bad(
            f"Invalid value '{value}' for {option} query option found. The {option} query option requires a "
            "non-negative integer value."
        )
    return int(value)


def _items(option: str, value: str) -> list[str]:
    items = [part.strip() for part in _split_top_level(value, ",")]
    if not value.strip() or any(not item for item in items):
        raise _bad(f"The {option} query option '{value}' has an empty item.")
    return items


def _property(name: str, option: str, es: schema.EntitySet, dialect: Dialect) -> str:
    if "/" in name:
        raise _todo(f"Navigation paths in {option} ('{name}') are not implemented by the sandbox.")
    if "(" in name:
        raise _todo(f"Expressions in {option} ('{name}') are not implemented by the sandbox.")
    if es.prop(name) is None:
        raise unknown_property(name, es, dialect)
    return name


def _parse_select(value: str, es: schema.EntitySet, dialect: Dialect) -> list[str] | None:
    items = _items("$select", value)
    if items == ["*"]:
        return None
    return list(dict.fromkeys(_property(item, "$select", es, dialect) for item in items))


def _parse_orderby(value: str, es: schema.EntitySet, dialect: Dialect) -> list[tuple[str, bool]]:
    order = []
    for item in _items("$orderby", value):
        words = item.split()
        if len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            if "(" in item:
                raise _todo(f"Expressions in $orderby ('{item}') are not implemented by the sandbox.")
            raise _bad(
                f"Syntax error in $orderby item '{item}': expected a property name and 'asc' or 'desc'."
            )
        order.append((_property(words[0], "$orderby", es, dialect), len(words) == 2 and words[1] == "desc"))
    return order


_EXPAND_ITEM = re.compile(r"([^()\s]+)\s*(?:\((.*)\))?", re.S)


def _parse_expand(value: str, es: schema.EntitySet, dialect: Dialect) -> list[ExpandItem]:
    items = []
    for text in _items("$expand", value):
        m = _EXPAND_ITEM.fullmatch(text)
        if not m:
            raise _bad(f"Syntax error in $expand item '{text}'.")
        name, inner = m.group(1), m.group(2)
        if name == "*" or "/" in name:
            raise _todo(f"$expand of '{name}' is not implemented by the sandbox.")
        target = _expand_target(name, es, dialect)
        options = []
        for part in _split_top_level(inner, ";") if inner else []:
            key, eq, val = part.strip().partition("=")
            if not eq:
                raise _bad(f"Syntax error in the options of $expand item '{name}': '{part}'.")
            options.append((key.strip(), val.strip()))
        item = ExpandItem(name, options=options, target=target)
        target_es = _resolve(es, target)
        if target_es is not None:
            item.query = parse_expand_options(item, target_es, dialect)
        items.append(item)
    if len({i.name for i in items}) != len(items):
        raise _bad(f"The $expand query option '{value}' names a navigation property more than once.")
    return items


def _expand_target(name: str, es: schema.EntitySet, dialect: Dialect) -> str:
    nav = es.nav(name)
    if nav is not None:
        return nav.target
    lookup = es.lookup(name)
    if lookup is not None:
        return lookup.target
    raise unknown_property(name, es, dialect)


def _resolve(es: schema.EntitySet, target: str) -> schema.EntitySet | None:
    return schema.entity_set(es.service, target) or next(
        (t for t in schema.all_entity_sets() if t.name == target), None
    )


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses and quoted literals (for $expand/$select/$orderby lists)."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def top_level_items(text: str, sep: str) -> list[str]:
    """The non-empty, stripped parts of ``text`` split on ``sep`` outside parentheses and quoted literals
    ($expand items, their ``;``-separated options, ...)."""
    return [p.strip() for p in _split_top_level(text, sep) if p.strip()]
