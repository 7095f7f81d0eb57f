"""Entra ID wire conventions: error bodies, form bodies, client Basic auth, discovery and the sign-in page.

Facts from docs/sandbox.md#identity-entra-id (ENTRA-CC error shape, ENTRA-OIDC discovery). An
error's ``error_description`` is ``AADSTS<code>: <message>`` followed by trace id, correlation id and
timestamp on CRLF-separated lines, as Entra writes it; the correlation id echoes the caller's
``client-request-id`` (msal sends one).
"""

from __future__ import annotations

import base64
import html
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from starlette.requests import Request
from starlette.responses import Response

NO_STORE = {"cache-control": "no-store, no-cache", "pragma": "no-cache"}


class EntraError(Exception):
    """An OAuth error answered in Entra's shape (see ``error_response``)."""

    def __init__(self, status: int, error: str, code: int, message: str):
        super().__init__(message)
        self.status, self.error, self.code, self.message = status, error, code, message


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_thumbprint(header_value: Any) -> str:
    """A JOSE ``x5t`` value without padding (msal pads it, others do not)."""
    return str(header_value or "").rstrip("=")


def timestamp(now: float | None = None) -> str:
    return datetime.fromtimestamp(now or time.time(), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def error_response(err: EntraError, correlation: str) -> Response:
    """Entra's error body: description ends with the trace id, correlation id and timestamp."""
    trace, stamp = str(uuid.uuid4()), timestamp()
    description = f"AADSTS{err.code}: {err.message}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {stamp}"
    body = {
        "error": err.error,
        "error_description": description,
        "error_codes": [err.code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
    }
    return json_response(body, err.status, correlation)


def json_response(
    body: dict[str, Any], status: int, correlation: str, extra: dict[str, str] | None = None
) -> Response:
    headers = {**NO_STORE, "client-request-id": correlation, **(extra or {})}
    return Response(json.dumps(body), status, headers=headers, media_type="application/json; charset=utf-8")


def correlation_of(request: Request) -> str:
    """Entra echoes the caller's ``client-request-id`` (msal sends one) as the correlation id."""
    return request.headers.get("client-request-id") or str(uuid.uuid4())


async def read_form(request: Request) -> dict[str, str]:
    """The url-encoded body (Entra reads nothing else); the last value of a repeated field wins."""
    try:
        return dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}


def missing_parameter(name: str) -> EntraError:
    return EntraError(
        400, "invalid_request", 900144, f"The request body must contain the following parameter: '{name}'."
    )


def openid_configuration(a: str) -> dict[str, Any]:
    """The discovery document of authority ``a`` (shape of ENTRA-OIDC / OIDC-FIXTURE)."""
    return {
        "token_endpoint": f"{a}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{a}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{a}/v2.0",
        "request_uri_parameter_supported": False,
        "authorization_endpoint": f"{a}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{a}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{a}/oauth2/v2.0/logout",
        "claims_supported": [
            "sub",
            "iss",
            "cloud_instance_name",
            "cloud_instance_host_name",
            "cloud_graph_host_name",
            "msgraph_host",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "acr",
            "nonce",
            "preferred_username",
            "name",
            "tid",
            "ver",
            "at_hash",
            "c_hash",
            "email",
        ],
        "kerberos_endpoint": f"{a}/kerberos",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }


def require_post(request: Request) -> None:
    if request.method != "POST":
        raise EntraError(
            400,
            "invalid_request",
            900561,
            f"The endpoint only accepts POST requests. Received a {request.method} request.",
        )


def invalid_grant(message: str) -> EntraError:
    return EntraError(
        400, "invalid_grant", 9002313, f"Invalid request. Request is malformed or invalid. {message}"
    )


def basic_credentials(request: Request) -> tuple[str | None, str | None]:
    """(client id, secret) of an HTTP Basic header, each url-decoded as RFC 6749 2.3.1 asks."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None, None
    return (unquote_plus(user), unquote_plus(password)) if sep else (None, None)


def code_form(prefill: str) -> str:
    return (
        '<form method="post"><label>Code <input name="user_code" autocomplete="off" '
        f'value="{html.escape(prefill)}"></label> <button type="submit">Next</button></form>'
    )


def html_page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}<p><small>d365kit sandbox tenant</small></p></body></html>"
    )
