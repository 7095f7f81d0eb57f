"""A bearer token goes only to the service's own https origin, whatever link a service hands back.

Each case runs a "service" that answers with a link to somewhere else and a foreign listener on that
somewhere else (another loopback address, another port, plain http) which records every request it gets.
The client must refuse the link before sending anything: the listener sees no request at all.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

import d365kit
from d365kit.odata.batch import BatchRequest, bc_batch, dataverse_batch
from d365kit.odata.paging import iter_rows
from d365kit.odata.session import ODataSession, PinnedSession

TOKEN = "eyJ-secret-token-that-must-stay-home"


class _Recorder(BaseHTTPRequestHandler):
    """Answers every GET with the JSON the server was given; records what it received."""

    def _answer(self) -> None:
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))  # type: ignore[attr-defined]
        body = json.dumps(self.server.page).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

    def log_message(self, *args: object) -> None:
        pass


class _Server:
    def __init__(self, host: str, ca: trustme.CA | None, page: dict | None = None):
        self.httpd = ThreadingHTTPServer((host, 0), _Recorder)
        self.httpd.seen = []  # type: ignore[attr-defined]
        self.httpd.page = page or {"value": []}  # type: ignore[attr-defined]
        scheme = "http"
        if ca is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(host).configure_cert(ctx)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{host}:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def seen(self) -> list:
        return self.httpd.seen  # type: ignore[attr-defined]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def ca(tmp_path) -> Iterator[tuple[trustme.CA, str]]:
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    yield authority, str(path)


def _foreign(kind: str, ca: trustme.CA, service_port: int) -> _Server:
    if kind == "other loopback address":
        return _Server("127.0.0.2", ca)
    if kind == "other port":
        return _Server("127.0.0.1", ca)
    return _Server("127.0.0.1", None)  # plain http


@pytest.mark.parametrize("kind", ["other loopback address", "other port", "plain http"])
@pytest.mark.parametrize("link", ["@odata.nextLink", "@odata.deltaLink"])
def test_a_link_to_another_origin_is_refused_before_a_byte_is_sent(ca, kind, link):
    authority, bundle = ca
    service = _Server("127.0.0.1", authority)
    foreign = _foreign(kind, authority, service.httpd.server_port)
    try:
        target = foreign.url + "/api/data/v9.2/accounts?$skiptoken=2"
        # a delta link is followed when the caller passes it back in; a next link while paging
        service.httpd.page = {"value": [{"id": 1}], link: target}  # type: ignore[attr-defined]
        session = ODataSession(
            "Dataverse",
            lambda force_refresh=False: TOKEN,
            origin=service.url,
            http=PinnedSession(verify=bundle),
            max_concurrency=1,
        )
        with pytest.raises(
            d365kit.ForeignOriginError, match=r"refused to send a request to .* own origin"
        ) as err:
            if link == "@odata.nextLink":
                list(iter_rows(session, service.url + "/api/data/v9.2/accounts"))
            else:
                first = session.request("GET", service.url + "/api/data/v9.2/accounts").json()
                session.request("GET", first[link])
        assert TOKEN not in str(err.value)
        assert foreign.seen == []  # not one request reached the foreign listener
        assert [auth for _, _, auth in service.seen] == [f"Bearer {TOKEN}"]
    finally:
        service.close()
        foreign.close()


def test_batch_operations_with_foreign_absolute_urls_are_refused(ca):
    authority, bundle = ca
    service = _Server("127.0.0.1", authority)
    foreign = _Server("127.0.0.2", authority)
    try:
        session = ODataSession(
            "Business Central",
            lambda force_refresh=False: TOKEN,
            origin=service.url,
            http=PinnedSession(verify=bundle),
            max_concurrency=1,
        )
        for run in (bc_batch, dataverse_batch):
            with pytest.raises(d365kit.ForeignOriginError):
                run(session, service.url + "/api/", [BatchRequest("GET", foreign.url + "/accounts")])
        assert service.seen == [] and foreign.seen == []
    finally:
        service.close()
        foreign.close()


def test_the_sessions_of_a_workspace_hold_their_own_origin(ws):
    """Through the real clients: a delta link the caller passes back in is checked the same way."""
    with pytest.raises(d365kit.ForeignOriginError, match="127.0.0.2"):
        ws.dataverse.changes(
            "accounts", delta_link="https://127.0.0.2:9/api/data/v9.2/accounts?$deltatoken=1"
        )
    plain = ws.bc.root().replace("https://", "http://")
    with pytest.raises(d365kit.ForeignOriginError, match="http://127.0.0.1"):
        ws.bc.session.request("GET", plain + "companies")


def test_a_session_refuses_a_service_url_that_is_not_https():
    with pytest.raises(d365kit.ForeignOriginError, match="not https"):
        ODataSession(
            "BC",
            lambda force_refresh=False: TOKEN,
            origin="http://example.com",
            http=PinnedSession(),
            max_concurrency=1,
        )
