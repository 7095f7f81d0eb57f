"""Dataverse Web API v9.2 wire details: error bodies, Prefer header, value rendering, paging and delta tokens.

Kept apart from ``dataverse_api`` (routing and operations) so each piece can be read against
docs/sandbox.md#dataverse-api on its own.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from d365kit.sandbox.http import Resp
from d365kit.sandbox.metadata import DECIMAL_ATTRIBUTES
from d365kit.sandbox.schema import Prop

MAX_PAGE_SIZE = 5000  # Dataverse default and maximum page size (DV-PAGE)
MAX_COUNT = 5000  # @odata.count and /$count stop at 5,000 (DV-COUNT)
# Change-tracking token lifetime. Documented for the SDK message RetrieveEntityChanges
# (organization.ExpireChangeTrackingInDays, default 7); assumed the same for the Web API (UNVERIFIED).
DELTA_TOKEN_DAYS = 7

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_LOGICAL = "Microsoft.Dynamics.CRM.lookuplogicalname"
ASSOCIATED_NAV = "Microsoft.Dynamics.CRM.associatednavigationproperty"
TOTAL_COUNT = "Microsoft.Dynamics.CRM.totalrecordcount"
TOTAL_COUNT_EXCEEDED = "Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"

# Error codes of B.8. Codes marked UNVERIFIED in the contract are chosen here and used consistently.
NOT_FOUND = "0x80040217"  # ObjectDoesNotExist
DUPLICATE = "0x80040237"  # DuplicateRecord
CONCURRENCY = "0x80060882"  # ConcurrencyVersionMismatch (hex UNVERIFIED)
VALIDATION = "0x80044331"
SEGMENT = "0x8006088a"
GENERIC = "0x0"
# "CRM do not support direct update of Entity Reference properties" — the code is UNVERIFIED.
LOOKUP_DIRECT = "0x80060888"
INTERNAL = "0x80040216"  # UnExpected (UNVERIFIED as the code of an unexpected server fault)


class DVError(Exception):
    """An error the service answers with ``{"error":{"code","message"}}``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def resp(self) -> Resp:
        return error_resp(self.status, self.code, self.message)


def error_resp(status: int, code: str, message: str) -> Resp:
    return Resp.json(status, {"error": {"code": code, "message": message}})


def bad_request(message: str, code: str = GENERIC) -> DVError:
    return DVError(400, code, message)


def not_implemented(what: str) -> DVError:
    return DVError(501, GENERIC, f"{what} is not implemented by the d365kit sandbox.")


def not_found(logical_name: str, key: str) -> DVError:
    return DVError(404, NOT_FOUND, f"{logical_name} With Id = {key} Does Not Exist")


def segment_not_found(segment: str) -> DVError:
    return DVError(404, SEGMENT, f"Resource not found for the segment '{segment}'.")


def unknown_property(name: str, logical_name: str) -> DVError:
    return bad_request(
        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{logical_name}'."
    )


# --------------------------------------------------------------------------------------------------
# Prefer header
# --------------------------------------------------------------------------------------------------


@dataclass
class Prefs:
    """The preferences of one request (DV-COMPOSE, DV-PAGE, DV-CT, DV-BATCH)."""

    return_representation: bool = False
    annotations: tuple[str, ...] = ()
    max_page_size: int | None = None
    track_changes: bool = False
    continue_on_error: bool = False
    applied: list[str] = field(default_factory=list)

    def wants(self, term: str) -> bool:
        """Whether annotation ``term`` was asked for: exact, ``*``, or a ``Namespace.*`` pattern."""
        for pattern in self.annotations:
            if pattern == "*" or pattern == term:
                return True
            if pattern.endswith(".*") and term.startswith(pattern[:-1]):
                return True
        return False

    def applied_header(self) -> dict[str, str]:
        return {"Preference-Applied": ",".join(self.applied)} if self.applied else {}


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts, buf, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


def parse_prefer(header: str | None) -> Prefs:
    """Parse ``Prefer``; unknown preferences are ignored, as RFC 7240 asks of servers."""
    prefs = Prefs()
    for item in _split_outside_quotes(header or "", ","):
        name, _, value = item.partition("=")
        name, value = name.strip().lower(), value.strip()
        if name == "return" and value.lower() == "representation":
            prefs.return_representation = True
        elif name == "odata.include-annotations":
            prefs.annotations = tuple(_split_outside_quotes(value.strip('"'), ","))
            prefs.applied.append(f'odata.include-annotations="{value.strip(chr(34))}"')
        elif name == "odata.maxpagesize":
            if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE_SIZE:
                # Real Dataverse caps silently; the sandbox refuses oversize page requests so a client that
                # asks for more than it can get learns so at once.
                raise bad_request(
                    f"The odata.maxpagesize preference must be an integer from 1 to {MAX_PAGE_SIZE}; "
                    f"'{value}' was requested."
                )
            prefs.max_page_size = int(value)
            prefs.applied.append(f"odata.maxpagesize={value}")
        elif name == "odata.track-changes":
            prefs.track_changes = True
        elif name == "odata.continue-on-error":
            prefs.continue_on_error = True
    return prefs


# --------------------------------------------------------------------------------------------------
# Values: wire form, validation of written values, FormattedValue
# --------------------------------------------------------------------------------------------------


def is_money(prop: Prop) -> bool:
    """Edm.Decimal is Money unless metadata lists it as a Decimal attribute (same rule as EntityDefinitions)."""
    return prop.edm == "Edm.Decimal" and prop.name not in DECIMAL_ATTRIBUTES


def wire_value(prop: Prop, value: Any) -> Any:
    """A stored value as Dataverse puts it on the wire.

    GUIDs lower-case. DateTimeOffset values are rendered exactly as stored (``YYYY-MM-DDTHH:MM:SS.fffZ``):
    real Dataverse returns whole seconds, but couplings compare ``modifiedon`` with millisecond timestamps,
    so the sandbox keeps what the store holds rather than truncating it.
    """
    if value is None:
        return None
    if prop.edm == "Edm.Guid":
        return str(value).lower()
    if prop.edm in ("Edm.Decimal", "Edm.Double"):
        return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 2**53 else value
    return value


def coerce(prop: Prop, value: Any, logical_name: str) -> Any:
    """Validate one written value and turn it into its stored form (raises DVError 400)."""
    if value is None:
        return None
    edm, name = prop.edm, prop.name

    def wrong(expected: str) -> DVError:
        return bad_request(
            f"Cannot convert the literal '{value}' to the expected type '{expected}' for property '{name}'."
        )

    if edm == "Edm.String":
        if not isinstance(value, str):
            raise wrong("Edm.String")
        if prop.max_length is not None and len(value) > prop.max_length:
            # Wording (two spaces included) from the DV-BATCH sample error.
            raise bad_request(
                f"A validation error occurred.  The length of the '{name}' attribute of the '{logical_name}' "
                f"entity exceeded the maximum allowed length of '{prop.max_length}'.",
                VALIDATION,
            )
        return value
    if edm == "Edm.Guid":
        if not isinstance(value, str) or not GUID_RE.match(value):
            raise wrong("Edm.Guid")
        return value.lower()
    if edm == "Edm.Boolean":
        if not isinstance(value, bool):
            raise wrong("Edm.Boolean")
        return value
    if edm in ("Edm.Int32", "Edm.Int64"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong(edm)
        if edm == "Edm.Int32" and not -(2**31) <= value < 2**31:
            raise wrong(edm)
        if prop.options is not None and value not in {v for v, _ in prop.options}:
            accepted = ",".join(str(v) for v, _ in prop.options)
            raise bad_request(
                f"A validation error occurred.  The value {value} of '{name}' on record of type "
                f"'{logical_name}' is outside the valid range. Accepted Values: {accepted}",
                VALIDATION,
            )
        return value
    if edm in ("Edm.Decimal", "Edm.Double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong(edm)
        return float(value)
    if edm == "Edm.Date":
        try:
            return datetime.strptime(value, "%Y-%m-%d").date().isoformat()
        except (TypeError, ValueError):
            raise wrong("Edm.Date") from None
    if edm == "Edm.DateTimeOffset":
        try:
            parsed = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise wrong("Edm.DateTimeOffset") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
        return parsed.strftime("%Y-%m-%dT%H:%M:%S.") + f"{parsed.microsecond // 1000:03d}Z"
    raise wrong(edm)


def formatted_value(prop: Prop, value: Any, *, money_symbol: str | None) -> str | None:
    """The ``@OData.Community.Display.V1.FormattedValue`` of a value, or None when Dataverse gives none.

    Dates and times are formatted in UTC as the en-US user locale would show them (the sandbox has no
    user time zone setting).
    """
    if value is None:
        return None
    if prop.options is not None:
        return dict(prop.options).get(value, str(value))
    if prop.edm == "Edm.Boolean":
        return "Yes" if value else "No"
    if prop.edm in ("Edm.Int32", "Edm.Int64"):
        return f"{value:,}"
    if prop.edm in ("Edm.Decimal", "Edm.Double"):
        if money_symbol is not None:
            sign = "-" if value < 0 else ""
            return f"{sign}{money_symbol}{abs(value):,.2f}"
        return f"{value:,.2f}" if prop.edm == "Edm.Decimal" else f"{value:,}"
    if prop.edm == "Edm.DateTimeOffset":
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            return None
        return f"{ts.month}/{ts.day}/{ts.year} {ts.strftime('%I:%M %p').lstrip('0')}"
    if prop.edm == "Edm.Date":
        try:
            d = datetime.strptime(value, "%Y-%m-%d")
        except ValueError:
            return None
        return f"{d.month}/{d.day}/{d.year}"
    return None


# --------------------------------------------------------------------------------------------------
# Paging cookie ($skiptoken) and delta token ($deltatoken)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageCookie:
    """Where the next page starts: after ``last_key`` (key order) or at ``offset`` (any $orderby).

    ``version`` is the store version a change-tracking read started at, carried to its last page so the
    deltaLink covers everything written since the first page was read.
    """

    page: int  # the number of the page this cookie asks for
    last_key: str | None = None
    offset: int | None = None
    version: int | None = None

    def skiptoken(self, key_name: str) -> str:
        """The ``<cookie .../>`` value, shaped like Dataverse's (pagingcookie double url-encoded)."""
        prev = self.page - 1
        if self.last_key is not None:
            inner = f'<cookie page="{prev}"><{key_name} last="{{{self.last_key}}}" /></cookie>'
        else:
            inner = f'<cookie page="{prev}" offset="{self.offset}" />'
        if self.version is not None:
            inner = inner.replace("<cookie ", f'<cookie version="{self.version}" ', 1)
        paging = quote(quote(inner, safe=""), safe="")
        tracking = "True" if self.version is not None else "False"
        return f'<cookie pagenumber="{self.page}" pagingcookie="{paging}" istracking="{tracking}" />'


def parse_skiptoken(token: str, key_name: str) -> PageCookie:
    """Decode a $skiptoken made by ``PageCookie.skiptoken``; anything else -> 400."""
    bad = bad_request(
        "The $skiptoken value is not valid. Use the @odata.nextLink returned by the service unchanged."
    )
    try:
        outer = ET.fromstring(token)
        page = int(outer.attrib["pagenumber"])
        inner = ET.fromstring(unquote(unquote(outer.attrib["pagingcookie"])))
    except (ET.ParseError, KeyError, ValueError):
        raise bad from None
    if outer.tag != "cookie" or inner.tag != "cookie" or page < 2:
        raise bad
    try:
        version = int(inner.attrib["version"]) if "version" in inner.attrib else None
        if "offset" in inner.attrib:
            offset = int(inner.attrib["offset"])
            if offset < 0:
                raise bad
            return PageCookie(page, offset=offset, version=version)
        key_el = inner.find(key_name)
        last = (key_el.attrib["last"] if key_el is not None else "").strip("{}")
    except (KeyError, ValueError):
        raise bad from None
    if not GUID_RE.match(last):
        raise bad
    return PageCookie(page, last_key=last, version=version)


def delta_token(version: int, now: datetime | None = None) -> str:
    """``<version>!<MM/dd/yyyy HH:mm:ss>`` as in DV-CT (UTC)."""
    now = now or datetime.now(UTC)
    return f"{version}!{now.strftime('%m/%d/%Y %H:%M:%S')}"


def parse_delta_token(token: str, current_version: int) -> int:
    """The version a delta token stands for; 400 when malformed, from the future or expired."""
    m = re.fullmatch(r"(\d+)!(\d\d/\d\d/\d{4} \d\d:\d\d:\d\d)", token)
    bad = bad_request(f"The $deltatoken '{token}' is not valid.")
    if not m:
        raise bad
    version = int(m.group(1))
    try:
        issued = datetime.strptime(m.group(2), "%m/%d/%Y %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise bad from None
    if version > current_version:
        raise bad
    if datetime.now(UTC) - issued > timedelta(days=DELTA_TOKEN_DAYS):
        raise bad_request(
            f"The $deltatoken '{token}' has expired: change tracking tokens are kept for {DELTA_TOKEN_DAYS} days. "
            "Read the table again with Prefer: odata.track-changes to get a new one."
        )
    return version


def new_boundary(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4()}"
