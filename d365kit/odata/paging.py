"""Server-driven paging: follow ``@odata.nextLink`` with ``Prefer: odata.maxpagesize`` on every page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from d365kit.errors import TransportError
from d365kit.odata.session import ODataSession


def iter_pages(
    session: ODataSession,
    url: str,
    *,
    page_size: int | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield each page's JSON body (``value`` plus annotations such as ``@odata.deltaLink``).

    The nextLink is used exactly as given (Dataverse forbids changing it) and the same
    ``odata.maxpagesize`` is sent with it, as both services require.
    """
    hdrs = dict(headers or {})
    if page_size:
        prefer = [p for p in hdrs.get("Prefer", "").split(",") if p.strip()]
        prefer.append(f"odata.maxpagesize={page_size}")
        hdrs["Prefer"] = ",".join(prefer)
    next_url: str | None = url
    seen: set[str] = set()
    while next_url:
        if next_url in seen:
            raise TransportError(
                f"{session.name}: the service returned the same nextLink twice ({next_url}); stopping."
            )
        seen.add(next_url)
        resp = session.request("GET", next_url, headers=hdrs)
        try:
            body = resp.json()
        except ValueError:
            raise TransportError(
                f"{session.name}: GET {next_url} answered {resp.status_code} with a body that is not JSON "
                f"(truncated or not OData): {resp.text[:120]!r}"
            ) from None
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise TransportError(
                f"{session.name}: GET {next_url} answered without a 'value' array; is it a collection?"
            )
        yield body
        next_url = body.get("@odata.nextLink")


def iter_rows(session: ODataSession, url: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    for page in iter_pages(session, url, **kwargs):
        yield from page["value"]
