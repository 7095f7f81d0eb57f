"""The Dataverse metadata paths: ``EntityDefinitions``, ``RelationshipDefinitions``, ``GlobalOptionSetDefinitions``.

Served from ``entity_metadata.model()`` as "Query table definitions using the Web API" documents them
(docs/sandbox.md, "Table definitions"):

- ``EntityDefinitions``, ``EntityDefinitions(<MetadataId>)`` / ``(LogicalName='x')``; below an entity
  ``Attributes`` (+ ``(<MetadataId>)`` / ``(LogicalName='x')``), ``Keys``, ``ManyToOneRelationships``,
  ``OneToManyRelationships``, ``ManyToManyRelationships``. The Attributes collection or one attribute can
  be cast (``/Microsoft.Dynamics.CRM.PicklistAttributeMetadata`` ...): a cast collection holds only the
  attributes of that type and lets ``$select`` name its own properties and ``$expand`` its ``OptionSet`` /
  ``GlobalOptionSet``; ``.../<cast>/OptionSet`` addresses the option set itself. Casting to
  ``EnumAttributeMetadata`` is refused, as documented.
- ``RelationshipDefinitions`` (+ cast to ``OneToManyRelationshipMetadata`` /
  ``ManyToManyRelationshipMetadata``, ``(<MetadataId>)`` / ``(SchemaName='x')``).
- ``GlobalOptionSetDefinitions`` (+ ``(<MetadataId>)`` / ``(Name='x')``); no ``$filter`` (documented).
- Query options: ``$select`` (``MetadataId`` is always returned), ``$filter`` (``eq ne gt ge lt le``,
  ``and or not``, parentheses, ``startswith``/``endswith``/``contains``, enum literals
  ``Microsoft.Dynamics.CRM.OwnershipTypes'UserOwned'`` or plain strings, one-level complex paths such as
  ``RequiredLevel/Value``), ``$expand`` of navigation properties with nested ``$select``/``$filter``.
  No paging (documented: all matches in one response). Any other option (``$top``, ``$orderby``,
  ``$count`` ...) and any other construct (lambdas, other functions, deeper paths) -> 501 naming it.
- Choices (UNVERIFIED): string comparisons in metadata filters are case-sensitive (the names are stored
  lower-case, which is why clients lower-case them); a cast that does not match a single addressed
  attribute -> 404; writes to definitions (POST/PUT/PATCH/DELETE: creating tables, columns, keys,
  relationships) -> 501.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from d365kit.sandbox.dataverse_wire import GENERIC, NOT_FOUND, DVError, bad_request, not_implemented
from d365kit.sandbox.entity_metadata import CRM, MetaObject, model
from d365kit.sandbox.odata import top_level_items

ENTITY_NAVS = (
    "Attributes",
    "Keys",
    "ManyToOneRelationships",
    "OneToManyRelationships",
    "ManyToManyRelationships",
)
_RELATIONSHIP_NAVS = ENTITY_NAVS[2:]
OPTION_NAVS = ("OptionSet", "GlobalOptionSet")
ENUM_ATTRIBUTE_TYPES = frozenset(
    {
        "PicklistAttributeMetadata",
        "StateAttributeMetadata",
        "StatusAttributeMetadata",
        "BooleanAttributeMetadata",
        "MultiSelectPicklistAttributeMetadata",
        "EntityNameAttributeMetadata",
    }
)
# Attribute types of the metadata model (AttributeMetadata's derived types): a cast to one the sandbox
# has no column of answers an empty collection, not an error.
ATTRIBUTE_TYPES = frozenset(
    {
        "AttributeMetadata",
        "BigIntAttributeMetadata",
        "BooleanAttributeMetadata",
        "DateTimeAttributeMetadata",
        "DecimalAttributeMetadata",
        "DoubleAttributeMetadata",
        "EntityNameAttributeMetadata",
        "FileAttributeMetadata",
        "ImageAttributeMetadata",
        "IntegerAttributeMetadata",
        "LookupAttributeMetadata",
        "ManagedPropertyAttributeMetadata",
        "MemoAttributeMetadata",
        "MoneyAttributeMetadata",
        "MultiSelectPicklistAttributeMetadata",
        "PicklistAttributeMetadata",
        "StateAttributeMetadata",
        "StatusAttributeMetadata",
        "StringAttributeMetadata",
        "UniqueIdentifierAttributeMetadata",
    }
)
RELATIONSHIP_TYPES = frozenset({"OneToManyRelationshipMetadata", "ManyToManyRelationshipMetadata"})
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _base_type(obj_type: str) -> str:
    if obj_type.endswith("AttributeMetadata"):
        return "AttributeMetadata"
    if obj_type.endswith("RelationshipMetadata"):
        return "RelationshipMetadataBase"
    if obj_type.endswith("OptionSetMetadata"):
        return "OptionSetMetadataBase"
    return obj_type


def _common_props(objs: list[MetaObject]) -> set[str]:
    """Property names every object of ``objs`` has (the base type's properties)."""
    sets = [set(o.props) for o in objs]
    return set.intersection(*sets) if sets else set()


class _Types:
    """Property and navigation names per metadata type, learnt from the model."""

    def __init__(self) -> None:
        m = model()
        attrs = [a for e in m.entities for a in e.navs["Attributes"]]
        self.props: dict[str, set[str]] = {
            "EntityMetadata": set(m.entities[0].props) if m.entities else set(),
            "AttributeMetadata": _common_props(attrs),
            "EntityKeyMetadata": {
                "MetadataId",
                "HasChanged",
                "LogicalName",
                "SchemaName",
                "EntityLogicalName",
                "KeyAttributes",
                "DisplayName",
                "EntityKeyIndexStatus",
                "IsCustomizable",
                "IsManaged",
                "IsSecondaryKey",
                "IsSynchronous",
                "IntroducedVersion",
                "AsyncJob",
            },
            "RelationshipMetadataBase": {
                "MetadataId",
                "HasChanged",
                "SchemaName",
                "RelationshipType",
                "IsCustomRelationship",
                "IsManaged",
                "IsValidForAdvancedFind",
                "IsCustomizable",
                "IntroducedVersion",
                "SecurityTypes",
            },
            "ManyToManyRelationshipMetadata": {
                "Entity1LogicalName",
                "Entity2LogicalName",
                "Entity1IntersectAttribute",
                "Entity2IntersectAttribute",
                "IntersectEntityName",
                "Entity1NavigationPropertyName",
                "Entity2NavigationPropertyName",
                "Entity1AssociatedMenuConfiguration",
                "Entity2AssociatedMenuConfiguration",
            },
            "OptionSetMetadataBase": {
                "MetadataId",
                "HasChanged",
                "Name",
                "IsGlobal",
                "IsCustomOptionSet",
                "IsManaged",
                "IsCustomizable",
                "IntroducedVersion",
                "ExternalTypeName",
                "ParentOptionSetName",
                "OptionSetType",
                "DisplayName",
                "Description",
            },
        }
        for obj in [*attrs, *m.relationships, *m.global_option_sets, *self._option_sets(attrs)]:
            self.props.setdefault(obj.type, set()).update(obj.props)
        for t in ATTRIBUTE_TYPES:
            self.props.setdefault(t, set()).update(self.props["AttributeMetadata"])
        for t in ("OptionSetMetadata", "BooleanOptionSetMetadata"):
            self.props.setdefault(t, set()).update(self.props["OptionSetMetadataBase"])
        self.props.setdefault("OneToManyRelationshipMetadata", set())
        self.props["OneToManyRelationshipMetadata"] |= self.props["RelationshipMetadataBase"]
        self.props["ManyToManyRelationshipMetadata"] |= self.props["RelationshipMetadataBase"]

    @staticmethod
    def _option_sets(attrs: list[MetaObject]) -> list[MetaObject]:
        return [a.navs["OptionSet"] for a in attrs if a.navs.get("OptionSet") is not None]

    def navs(self, view: str) -> tuple[str, ...]:
        if view == "EntityMetadata":
            return ENTITY_NAVS
        if view in ENUM_ATTRIBUTE_TYPES:
            return OPTION_NAVS
        return ()


_TYPES: _Types | None = None


def types() -> _Types:
    global _TYPES
    if _TYPES is None:
        _TYPES = _Types()
    return _TYPES


# --------------------------------------------------------------------------------------------------
# $filter over metadata objects
# --------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^']|'')*')
    | (?P<enum>[A-Za-z_][\w.]*'(?:[^']|'')*')
    | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<ident>[$@A-Za-z_][\w.]*(?:/[A-Za-z_][\w.]*)*)
    | (?P<punct>[(),])
    | (?P<other>\S)
    )""",
    re.X,
)
_COMPARE = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and b is not None and a > b,
    "ge": lambda a, b: a is not None and b is not None and a >= b,
    "lt": lambda a, b: a is not None and b is not None and a < b,
    "le": lambda a, b: a is not None and b is not None and a <= b,
}
_FUNCTIONS = {
    "startswith": lambda a, b: isinstance(a, str) and a.startswith(b),
    "endswith": lambda a, b: isinstance(a, str) and a.endswith(b),
    "contains": lambda a, b: isinstance(a, str) and b in a,
}


@dataclass(frozen=True)
class _Path:
    parts: tuple[str, ...]


@dataclass(frozen=True)
class _Const:
    value: Any


class _FilterParser:
    """Recursive descent: or < and < not < comparison < primary (ODataLib precedence)."""

    def __init__(self, text: str, type_name: str, props: set[str]):
        self.text, self.type_name, self.props = text, type_name, props
        self.toks: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                break
            pos = m.end()
            kind = m.lastgroup or "other"
            self.toks.append((kind, m.group(kind)))
        self.toks.append(("end", ""))
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i]

    def take(self) -> tuple[str, str]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def word(self, *words: str) -> bool:
        kind, text = self.peek()
        return kind == "ident" and text in words

    def syntax(self) -> DVError:
        return bad_request(f"Syntax error in the $filter '{self.text}' near '{self.peek()[1]}'.")

    def parse(self):
        node = self.or_()
        if self.peek()[0] != "end":
            raise self.syntax()
        return node

    def or_(self):
        node = self.and_()
        while self.word("or"):
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self):
        node = self.unary()
        while self.word("and"):
            self.take()
            node = ("and", node, self.unary())
        return node

    def unary(self):
        if self.word("not"):
            self.take()
            return ("not", self.unary())
        return self.comparison()

    def comparison(self):
        left = self.primary()
        if self.word(*_COMPARE):
            op = self.take()[1]
            return (op, left, self.primary())
        if self.word("in", "has", "add", "sub", "mul", "div", "mod"):
            raise not_implemented(f"The operator '{self.peek()[1]}' in a $filter on {self.type_name}")
        return left

    def primary(self):
        kind, text = self.take()
        if kind == "punct" and text == "(":
            node = self.or_()
            if self.take() != ("punct", ")"):
                raise self.syntax()
            return node
        if kind == "str":
            return _Const(text[1:-1].replace("''", "'"))
        if kind == "enum":
            type_name, _, member = text.partition("'")
            if not type_name.startswith(f"{CRM}."):
                raise bad_request(f"The enum type '{type_name}' in the $filter '{self.text}' is unknown.")
            return _Const(member[:-1].replace("''", "'"))
        if kind == "guid":
            return _Const(text.lower())
        if kind == "num":
            return _Const(float(text) if "." in text else int(text))
        if kind == "ident":
            if text in ("true", "false", "null"):
                return _Const({"true": True, "false": False, "null": None}[text])
            if self.peek() == ("punct", "("):
                return self.call(text)
            if text.startswith(("$", "@")):
                raise not_implemented(f"'{text}' in a $filter on {self.type_name}")
            return self.path(text)
        raise self.syntax()

    def call(self, name: str):
        if name not in _FUNCTIONS:
            raise not_implemented(f"The function '{name}' in a $filter on {self.type_name}")
        self.take()
        first = self.or_()
        if self.take() != ("punct", ","):
            raise self.syntax()
        second = self.or_()
        if self.take() != ("punct", ")"):
            raise self.syntax()
        return ("call", name, first, second)

    def path(self, text: str) -> _Path:
        parts = tuple(text.split("/"))
        if parts[0] not in self.props:
            raise _unknown(parts[0], self.type_name)
        if len(parts) > 1 and parts[1] in ("any", "all"):
            raise not_implemented(f"The lambda operator '{parts[1]}' in a $filter on {self.type_name}")
        if len(parts) > 2:
            raise not_implemented(
                f"The path '{text}' (more than one level deep) in a $filter on {self.type_name}"
            )
        return _Path(parts)


def _value(node, obj: MetaObject) -> Any:
    if isinstance(node, _Const):
        return node.value
    if isinstance(node, _Path):
        value: Any = obj.props.get(node.parts[0])
        if len(node.parts) == 2:
            if not isinstance(value, dict) or node.parts[1] not in value:
                if value is None:
                    return None
                raise bad_request(
                    f"The path '{'/'.join(node.parts)}' does not name a primitive property; filters on "
                    "Label properties are not supported."
                )
            value = value[node.parts[1]]
        if isinstance(value, dict | list):
            raise bad_request(
                f"The property '{node.parts[-1]}' is not a primitive or enum value; use its /Value."
            )
        return value
    return _truth(node, obj)


def _truth(node, obj: MetaObject) -> bool:
    op = node[0] if isinstance(node, tuple) else None
    if op == "and":
        return _truth(node[1], obj) and _truth(node[2], obj)
    if op == "or":
        return _truth(node[1], obj) or _truth(node[2], obj)
    if op == "not":
        return not _truth(node[1], obj)
    if op == "call":
        a, b = _value(node[2], obj), _value(node[3], obj)
        if not isinstance(b, str):
            raise bad_request(f"The function '{node[1]}' takes two Edm.String arguments.")
        return _FUNCTIONS[node[1]](a, b)
    if op in _COMPARE:
        a, b = _value(node[1], obj), _value(node[2], obj)
        if a is not None and b is not None and isinstance(a, bool) != isinstance(b, bool):
            raise bad_request("A binary operator with incompatible types was detected in the $filter.")
        try:
            return bool(_COMPARE[op](a, b))
        except TypeError:
            raise bad_request(
                "A binary operator with incompatible types was detected in the $filter."
            ) from None
    if isinstance(node, _Path) and isinstance(_value(node, obj), bool):
        return bool(_value(node, obj))
    raise bad_request("The $filter expression must evaluate to a single boolean value.")


def _unknown(name: str, type_name: str) -> DVError:
    return bad_request(f"Could not find a property named '{name}' on type '{CRM}.{type_name}'.")


# --------------------------------------------------------------------------------------------------
# Query options
# --------------------------------------------------------------------------------------------------


@dataclass
class _Options:
    select: list[str] | None = None
    filter: Any = None
    expand: list[tuple[str, _Options]] | None = None


def _options(
    params: dict[str, str],
    view: str,
    *,
    collection: bool,
    allowed: tuple[str, ...] = ("$select", "$filter", "$expand"),
) -> _Options:
    t = types()
    for name in params:
        if name.startswith("$") and name not in allowed:
            if name == "$filter" and not collection:
                raise bad_request("The query option '$filter' is not supported on a single entity.")
            raise not_implemented(f"The query option '{name}' on {CRM}.{view}")
        if not name.startswith("$"):
            raise bad_request(f"The query parameter '{name}' is not supported.")
    out = _Options()
    props = t.props.get(view, set())
    navs = t.navs(view)
    if "$select" in params:
        out.select = [s.strip() for s in params["$select"].split(",") if s.strip()]
        for name in out.select:
            if name in navs:
                raise bad_request(
                    f"The navigation property '{name}' cannot be used in $select; use $expand={name} instead."
                )
            if name not in props and name != "@odata.type":
                raise _unknown(name, view)
    if "$filter" in params:
        out.filter = _FilterParser(params["$filter"], view, props).parse()
    if "$expand" in params:
        out.expand = []
        for item in top_level_items(params["$expand"], ","):
            m = re.fullmatch(r"([\w.]+)(?:\((.*)\))?", item, re.S)
            if not m:
                raise bad_request(f"The $expand item '{item}' is not valid.")
            name, inner = m.group(1), m.group(2)
            if name not in navs:
                if name == "*":
                    raise not_implemented("$expand=* on metadata")
                raise _unknown(name, view)
            nested: dict[str, str] = {}
            for opt in top_level_items(inner or "", ";"):
                key, _, value = opt.partition("=")
                nested[key.strip()] = value
            target = _nav_view(view, name)
            if name in OPTION_NAVS:
                target = (
                    "BooleanOptionSetMetadata" if view == "BooleanAttributeMetadata" else "OptionSetMetadata"
                )
            many = name not in OPTION_NAVS
            out.expand.append(
                (name, _options(nested, target, collection=many, allowed=_nested_allowed(many)))
            )
    return out


def _nested_allowed(many: bool) -> tuple[str, ...]:
    return ("$select", "$filter") if many else ("$select",)


def _nav_view(view: str, nav: str) -> str:
    if nav == "Attributes":
        return "AttributeMetadata"
    if nav == "Keys":
        return "EntityKeyMetadata"
    if nav in OPTION_NAVS:
        return "OptionSetMetadataBase"
    if nav == "ManyToManyRelationships":
        return "ManyToManyRelationshipMetadata"
    return "OneToManyRelationshipMetadata"


def _typed(obj: MetaObject) -> bool:
    return obj.type.endswith(("AttributeMetadata", "RelationshipMetadata"))


def render(obj: MetaObject, opts: _Options) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if _typed(obj):
        out["@odata.type"] = f"#{CRM}.{obj.type}"
    if opts.select:
        for name in opts.select:
            if name in obj.props:
                out[name] = obj.props[name]
        out["MetadataId"] = obj.props.get("MetadataId")
    else:
        out.update(obj.props)
    for name, nested in opts.expand or ():
        value = obj.navs.get(name)
        if isinstance(value, list):
            out[name] = [
                render(v, nested) for v in value if nested.filter is None or _truth(nested.filter, v)
            ]
        else:
            out[name] = render(value, nested) if value is not None else None
    return out


def _collection(root: str, context: str, objs: list[MetaObject], opts: _Options) -> dict[str, Any]:
    value = [render(o, opts) for o in objs if opts.filter is None or _truth(opts.filter, o)]
    return {"@odata.context": f"{root}$metadata#{context}", "value": value}


def _single(root: str, context: str, obj: MetaObject, opts: _Options) -> dict[str, Any]:
    return {"@odata.context": f"{root}$metadata#{context}/$entity", **render(obj, opts)}


# --------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------


def _cast(segment: str) -> str | None:
    return segment.removeprefix(f"{CRM}.") if segment.startswith(f"{CRM}.") else None


def _by_key(objs: list[MetaObject], key_text: str, name_prop: str, what: str) -> MetaObject:
    key = key_text.strip()
    m = re.fullmatch(rf"(?:{name_prop}\s*=\s*)?'((?:[^']|'')*)'", key)
    if m:
        wanted = m.group(1).replace("''", "'")
        found = [o for o in objs if o.props.get(name_prop) == wanted]
    elif _GUID.fullmatch(key.removeprefix("MetadataId=")):
        wanted = key.removeprefix("MetadataId=").lower()
        found = [o for o in objs if o.props.get("MetadataId") == wanted]
    else:
        raise bad_request(
            f"The key '{key_text}' is not valid for {what}: use a MetadataId or {name_prop}='<name>'."
        )
    if not found:
        raise DVError(404, NOT_FOUND, f"Could not find {what} with {key}.")
    return found[0]


_NAME_KEY = re.compile(r"^(?P<name>[^()]+?)(?:\((?P<key>.*)\))?$", re.S)


def _split(segment: str) -> tuple[str, str | None]:
    m = _NAME_KEY.match(segment)
    return (m.group("name"), m.group("key")) if m else (segment, None)


def handle(method: str, root: str, segs: list[str], params: dict[str, str]) -> dict[str, Any]:
    """The JSON body answering a GET of a metadata path (raises DVError); ``segs`` start at the set name."""
    head, key = _split(segs[0])
    if method != "GET":
        raise not_implemented(f"Changing table definitions ({method} {head})")
    if head == "EntityDefinitions":
        return _entity_definitions(root, key, segs[1:], params)
    if head == "RelationshipDefinitions":
        return _relationship_definitions(root, key, segs[1:], params)
    return _global_option_sets(root, key, segs[1:], params)


def _entity_definitions(
    root: str, key: str | None, rest: list[str], params: dict[str, str]
) -> dict[str, Any]:
    m = model()
    if key is None:
        if rest:
            cast = _cast(rest[0])
            if cast:
                raise not_implemented(f"The cast '{rest[0]}' on EntityDefinitions")
            raise DVError(404, GENERIC, f"Resource not found for the segment '{rest[0]}'.")
        opts = _options(params, "EntityMetadata", collection=True)
        return _collection(root, _context("EntityDefinitions", opts), m.entities, opts)
    entity = _by_key(m.entities, key, "LogicalName", "an entity")
    ctx = f"EntityDefinitions({entity.props['MetadataId']})"
    if not rest:
        opts = _options(params, "EntityMetadata", collection=False)
        return _single(root, _context("EntityDefinitions", opts), entity, opts)
    nav, nav_key = _split(rest[0])
    if nav not in ENTITY_NAVS:
        if nav in types().props["EntityMetadata"]:
            raise not_implemented(f"Addressing the property '{nav}' of an entity definition (use $select)")
        raise DVError(404, GENERIC, f"Resource not found for the segment '{rest[0]}'.")
    objs: list[MetaObject] = entity.navs[nav]
    view = _nav_view("EntityMetadata", nav)
    tail = rest[1:]
    if nav == "Attributes":
        return _attributes(root, f"{ctx}/Attributes", objs, nav_key, tail, params)
    if nav == "Keys":
        view = "EntityKeyMetadata"
    elif nav in _RELATIONSHIP_NAVS:
        view = _nav_view("EntityMetadata", nav)
    if tail:
        raise not_implemented(f"The path segment '{tail[0]}' below {nav}")
    if nav_key is not None:
        name_prop = "LogicalName" if nav == "Keys" else "SchemaName"
        obj = _by_key(objs, nav_key, name_prop, f"a {view}")
        opts = _options(params, view, collection=False)
        return _single(root, f"{ctx}/{nav}", obj, opts)
    opts = _options(params, view, collection=True)
    return _collection(root, f"{ctx}/{nav}", objs, opts)


def _attributes(
    root: str, ctx: str, attrs: list[MetaObject], key: str | None, rest: list[str], params: dict[str, str]
) -> dict[str, Any]:
    cast = None
    if rest:
        cast = _cast(rest[0])
        if cast is None:
            raise DVError(404, GENERIC, f"Resource not found for the segment '{rest[0]}'.")
        if cast == "EnumAttributeMetadata":
            raise bad_request(
                f"The attributes cannot be cast to '{CRM}.EnumAttributeMetadata'; cast to a derived type "
                "(PicklistAttributeMetadata, StateAttributeMetadata, ...) instead."
            )
        if cast not in ATTRIBUTE_TYPES:
            raise bad_request(f"The type '{CRM}.{cast}' is not an attribute type.")
        rest = rest[1:]
    view = cast or "AttributeMetadata"
    if key is None:
        if rest:
            raise not_implemented(f"The path segment '{rest[0]}' below the Attributes collection")
        chosen = [a for a in attrs if cast in (None, "AttributeMetadata", a.type)]
        opts = _options(params, view, collection=True)
        return _collection(root, f"{ctx}{f'/{CRM}.{cast}' if cast else ''}", chosen, opts)
    attr = _by_key(attrs, key, "LogicalName", "an attribute")
    if cast not in (None, "AttributeMetadata", attr.type):
        raise DVError(
            404,
            GENERIC,
            f"The attribute '{attr.props['LogicalName']}' is a {CRM}.{attr.type}, not a {CRM}.{cast}.",
        )
    actx = f"{ctx}({attr.props['MetadataId']}){f'/{CRM}.{cast}' if cast else ''}"
    if rest:
        nav = rest[0]
        if nav not in types().navs(view):
            raise _unknown(nav, view)
        if rest[1:]:
            raise not_implemented(f"The path segment '{rest[1]}' below {nav}")
        value = attr.navs.get(nav)
        if value is None:
            return {"@odata.context": f"{root}$metadata#{actx}/{nav}/$entity", "value": None}
        opts = _options(params, value.type, collection=False, allowed=("$select",))
        return _single(root, f"{actx}/{nav}", value, opts)
    opts = _options(params, view, collection=False)
    return _single(root, actx, attr, opts)


def _relationship_definitions(
    root: str, key: str | None, rest: list[str], params: dict[str, str]
) -> dict[str, Any]:
    rels = model().relationships
    cast = None
    if rest:
        cast = _cast(rest[0])
        if cast not in RELATIONSHIP_TYPES:
            raise DVError(404, GENERIC, f"Resource not found for the segment '{rest[0]}'.")
        if rest[1:]:
            raise not_implemented(f"The path segment '{rest[1]}' below RelationshipDefinitions")
    view = cast or "RelationshipMetadataBase"
    chosen = [r for r in rels if cast in (None, r.type)]
    ctx = f"RelationshipDefinitions{f'/{CRM}.{cast}' if cast else ''}"
    if key is not None:
        obj = _by_key(chosen, key, "SchemaName", "a relationship")
        return _single(root, ctx, obj, _options(params, view, collection=False))
    return _collection(root, ctx, chosen, _options(params, view, collection=True))


def _global_option_sets(
    root: str, key: str | None, rest: list[str], params: dict[str, str]
) -> dict[str, Any]:
    sets = model().global_option_sets
    if rest:
        raise not_implemented(f"The path segment '{rest[0]}' below GlobalOptionSetDefinitions")
    if "$filter" in params:
        raise bad_request("The query option '$filter' is not supported on GlobalOptionSetDefinitions.")
    view = "OptionSetMetadataBase"
    if key is not None:
        obj = _by_key(sets, key, "Name", "an option set")
        opts = _options(params, obj.type, collection=False, allowed=("$select",))
        return _single(root, "GlobalOptionSetDefinitions", obj, opts)
    opts = _options(params, view, collection=True, allowed=("$select",))
    return _collection(root, "GlobalOptionSetDefinitions", sets, opts)


def _context(base: str, opts: _Options) -> str:
    return f"{base}({','.join(opts.select)})" if opts.select else base


# --------------------------------------------------------------------------------------------------
# RetrieveMetadataChanges(Query=@p1)
# --------------------------------------------------------------------------------------------------

_MDC_OPERATORS = {
    "Equals": lambda a, b: a == b,
    "NotEquals": lambda a, b: a != b,
    "In": lambda a, b: a in (b or []),
    "NotIn": lambda a, b: a not in (b or []),
    "GreaterThan": lambda a, b: a is not None and a > b,
    "LessThan": lambda a, b: a is not None and b is not None and a < b,
}


def _mdc_value(value: Any) -> Any:
    if isinstance(value, dict) and "Value" in value:
        return value["Value"]
    if isinstance(value, dict) and "Values" in value:
        return [_mdc_value(v) for v in value["Values"]]
    return value


def _mdc_match(criteria: Any, obj: MetaObject, what: str) -> bool:
    if not criteria:
        return True
    if not isinstance(criteria, dict):
        raise bad_request(f"The {what} Criteria must be a MetadataFilterExpression object.")
    operator = criteria.get("FilterOperator", "And")
    if criteria.get("Filters"):
        raise not_implemented(f"Nested Filters in the {what} Criteria of RetrieveMetadataChanges")
    results = []
    for cond in criteria.get("Conditions") or []:
        op = cond.get("ConditionOperator")
        if op not in _MDC_OPERATORS:
            raise not_implemented(f"The metadata condition operator '{op}' of RetrieveMetadataChanges")
        name = cond.get("PropertyName")
        value = obj.props.get(name)
        if isinstance(value, dict) and "Value" in value:
            value = value["Value"]
        results.append(bool(_MDC_OPERATORS[op](value, _mdc_value(cond.get("Value")))))
    if not results:
        return True
    return all(results) if operator == "And" else any(results)


def _mdc_pick(obj: MetaObject, properties: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if _typed(obj):
        out["@odata.type"] = f"#{CRM}.{obj.type}"
    names = (properties or {}).get("PropertyNames") if isinstance(properties, dict) else None
    if properties and properties.get("AllProperties") or not names:
        out.update(obj.props)
        return out
    for name in names:
        if name in obj.props:
            out[name] = obj.props[name]
    out.setdefault("MetadataId", obj.props.get("MetadataId"))
    return out


def retrieve_metadata_changes(root: str, key_text: str | None, params: dict[str, str]) -> dict[str, Any]:
    """The entities (and their attributes) an EntityQueryExpression selects; no version stamps or deletions."""
    import json

    m = re.fullmatch(r"\s*Query\s*=\s*(@\w+)\s*", key_text or "")
    if not m or m.group(1) not in params:
        raise bad_request(
            "RetrieveMetadataChanges takes the parameter Query=@p1 with @p1 an EntityQueryExpression."
        )
    extra = set(params) - {m.group(1)}
    if extra:
        raise not_implemented(f"The parameter '{sorted(extra)[0]}' of RetrieveMetadataChanges")
    try:
        query = json.loads(params[m.group(1)])
    except ValueError:
        raise bad_request("The Query of RetrieveMetadataChanges is not valid JSON.") from None
    if not isinstance(query, dict):
        raise bad_request("The Query of RetrieveMetadataChanges must be an EntityQueryExpression object.")
    for name in ("RelationshipQuery", "KeyQuery", "ClientVersionStamp", "DeletedMetadataFilters"):
        if query.get(name):
            raise not_implemented(f"'{name}' in RetrieveMetadataChanges")
    labels = query.get("LabelQuery") or {}
    if labels and set(labels.get("FilterLanguages") or [1033]) != {1033}:
        raise not_implemented("Label languages other than 1033 in RetrieveMetadataChanges")
    entity_props = query.get("Properties") or {}
    attr_query = query.get("AttributeQuery") or {}
    wanted = (entity_props.get("PropertyNames") or []) if isinstance(entity_props, dict) else []
    with_attributes = not wanted or "Attributes" in wanted or entity_props.get("AllProperties")
    out = []
    for entity in model().entities:
        if not _mdc_match(query.get("Criteria"), entity, "entity"):
            continue
        item = _mdc_pick(entity, entity_props)
        if with_attributes:
            item["Attributes"] = [
                _mdc_pick(a, attr_query.get("Properties"))
                for a in entity.navs["Attributes"]
                if _mdc_match(attr_query.get("Criteria"), a, "attribute")
            ]
        out.append(item)
    return {
        "@odata.context": f"{root}$metadata#{CRM}.RetrieveMetadataChangesResponse",
        "EntityMetadata": out,
        "ServerVersionStamp": "1!sandbox",
        "DeletedMetadata": None,
    }
