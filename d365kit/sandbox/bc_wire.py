"""Business Central wire conventions: error bodies, ETags, and typed values on the way in and out.

Facts from docs/sandbox.md#bc-api (A.2 shapes, A.5 writes, A.7 errors). BC has no
nulls on the wire: every empty value renders as its type's blank (A.2), so the API path stores blanks too.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from datetime import datetime
from typing import Any

from d365kit.sandbox.http import Resp, correlation_id
from d365kit.sandbox.schema import EntitySet, Prop
from d365kit.sandbox.store import VERSION, format_datetime

BLANK_GUID = "00000000-0000-0000-0000-000000000000"
BLANK_DATE = "0001-01-01"
BLANK_DATETIME = "0001-01-01T00:00:00.000Z"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ENUM_ESCAPE = re.compile(r"[^A-Za-z0-9_]")  # A.1: enum values spell spaces (and other signs) _xHHHH_
_ETAG = re.compile(r'^W/"([A-Za-z0-9+/=]+)"$')


class BCError(Exception):
    """An error answered with BC's body: ``{"error":{"code","message":"<text>  CorrelationId:  <guid>."}}``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> Resp:
        return error_response(self.status, self.code, self.message)


def error_response(status: int, code: str, message: str) -> Resp:
    """A.7: the message ends with two spaces, ``CorrelationId:``, two spaces, the id and a period."""
    body = {"error": {"code": code, "message": f"{message}  CorrelationId:  {correlation_id()}."}}
    return Resp.json(status, body)


def caption(name: str) -> str:
    """A table caption for messages from an entity type name: ``salesInvoice`` -> ``Sales Invoice``."""
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", name).split()
    return " ".join(w[:1].upper() + w[1:] for w in words)


# -- ETags ------------------------------------------------------------------------------------------


def etag(row: dict[str, Any], es: EntitySet) -> str:
    """A.2: ``W/"<base64 of '44;<base64 sha256>1;00;'>"`` (quotes included); clients treat it as opaque.

    The hash covers the key and the store's row version, so any write changes the ETag.
    """
    digest = base64.b64encode(hashlib.sha256(f"{row[es.key]}:{row[VERSION]}".encode()).digest()).decode()
    inner = f"'{len(digest)};{digest}1;00;'"
    return f'W/"{base64.b64encode(inner.encode()).decode()}"'


def well_formed_etag(value: str) -> bool:
    """Whether an If-Match value has BC's ETag shape (so a mismatch is a conflict, not a bad token)."""
    m = _ETAG.match(value.strip())
    if not m:
        return False
    try:
        inner = base64.b64decode(m.group(1), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return False
    return inner.startswith("'") and inner.endswith(";'")


# -- values out ---------------------------------------------------------------------------------------


def blank(prop: Prop) -> Any:
    """The value BC shows for an empty field of this type (A.2)."""
    if prop.enum is not None:
        return " " if " " in prop.enum else (prop.enum[0] if prop.enum else "")
    return {
        "Edm.Guid": BLANK_GUID,
        "Edm.String": "",
        "Edm.Date": BLANK_DATE,
        "Edm.DateTimeOffset": BLANK_DATETIME,
        "Edm.Boolean": False,
        "Edm.Int32": 0,
        "Edm.Int64": 0,
        "Edm.Decimal": 0,
        "Edm.Double": 0,
    }[prop.edm]


def to_wire(prop: Prop, value: Any) -> Any:
    """A stored value as BC renders it: blanks for empties, decimals as JSON numbers, lower-case GUIDs."""
    if value is None or (prop.enum is not None and value == ""):
        return blank(prop)
    if prop.edm == "Edm.Guid":
        return str(value).lower()
    if prop.edm in ("Edm.Decimal", "Edm.Double") and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def render(row: dict[str, Any], es: EntitySet, select: list[str] | None = None) -> dict[str, Any]:
    """One entity: ``@odata.etag`` first, then the (selected) properties in schema order."""
    out: dict[str, Any] = {"@odata.etag": etag(row, es)}
    wanted = set(select) if select else None
    for p in es.props:
        if wanted is None or p.name in wanted:
            out[p.name] = to_wire(p, row.get(p.name))
    return out


# -- values in ----------------------------------------------------------------------------------------


def _bad_value(prop: Prop, value: Any) -> BCError:
    return BCError(
        400,
        "BadRequest",
        f"Invalid Request Body. Cannot convert the value {value!r} of property '{prop.name}' to "
        f"the expected type '{prop.edm}'.",
    )


def from_wire(prop: Prop, value: Any) -> Any:
    """Validate and convert one property value from a request body to its stored form.

    Error texts follow A.7 (BadRequest "Invalid Request Body" / "Unable to convert value to Date",
    Application_StringExceededLength); the enum message follows the BC-BATCH sample, code "Unknown" as
    in that sample.
    """
    if value is None:
        return blank(prop)
    edm = prop.edm
    if prop.enum is not None:
        if not isinstance(value, str):
            raise _bad_value(prop, value)
        wire = _ENUM_ESCAPE.sub(lambda m: f"_x{ord(m.group()):04X}_", value) if value.strip() else value
        if wire not in prop.enum:
            options = ",".join(prop.enum)
            raise BCError(400, "Unknown", f"'{value}' is not an option. The existing options are: {options}")
        return wire
    if edm == "Edm.String":
        if not isinstance(value, str):
            raise _bad_value(prop, value)
        if prop.max_length is not None and len(value) > prop.max_length:
            raise BCError(
                400,
                "Application_StringExceededLength",
                f"The length of the string is {len(value)}, but it must be less than or equal to "
                f"{prop.max_length} characters. Value: {value}",
            )
        return value
    if edm == "Edm.Guid":
        try:
            return str(uuid.UUID(value)) if isinstance(value, str) else _raise(prop, value)
        except ValueError:
            raise _bad_value(prop, value) from None
    if edm == "Edm.Boolean":
        return value if isinstance(value, bool) else _raise(prop, value)
    if edm in ("Edm.Int32", "Edm.Int64"):
        return value if isinstance(value, int) and not isinstance(value, bool) else _raise(prop, value)
    if edm in ("Edm.Decimal", "Edm.Double"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else _raise(prop, value)
    if edm == "Edm.Date":
        if isinstance(value, str) and _DATE.match(value):
            try:
                datetime.strptime(value, "%Y-%m-%d")
                return value
            except ValueError:
                pass
        raise BCError(400, "BadRequest", f"Unable to convert value to Date. Value: {value!r}")
    if edm == "Edm.DateTimeOffset":
        try:
            parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise BCError(400, "BadRequest", f"Unable to convert value to DateTime. Value: {value!r}")
        return format_datetime(parsed)
    raise _bad_value(prop, value)


def _raise(prop: Prop, value: Any) -> Any:
    raise _bad_value(prop, value)
