"""Assemble and run the sandbox: one HTTPS server on loopback for identity, BC and Dataverse.

``Sandbox`` runs in-process (a context manager, uvicorn in a background thread) for tests and notebooks,
or in the foreground for ``d365kit sandbox start``. A running sandbox records its address in
``<data dir>/running.json`` so other processes can attach to it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from d365kit.sandbox.context import BC_RESOURCE, DEMO_USER_UPN, Knobs, SandboxContext
from d365kit.sandbox.http import Headers, Req, Resp
from d365kit.sandbox.keys import KeyMaterial, ensure_material, write_private
from d365kit.sandbox.store import Store

HOST = "127.0.0.1"
RUNNING_FILE = "running.json"
DB_FILE = "sandbox.db"
MANIFEST_FILE = "manifest.json"


class _QuietIdleShutdown(logging.Filter):
    """uvicorn logs an error when idle keep-alive clients outlive the 1 s graceful shutdown; nothing ran."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Cancel 0 running task(s)")


logging.getLogger("uvicorn.error").addFilter(_QuietIdleShutdown())


def default_data_dir() -> Path:
    """``$D365KIT_SANDBOX_DIR``, else a per-user folder (``$XDG_DATA_HOME/d365kit/sandbox``)."""
    env = os.environ.get("D365KIT_SANDBOX_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "d365kit" / "sandbox"


def _to_starlette(resp: Resp) -> Response:
    return Response(content=resp.body, status_code=resp.status, headers=dict(resp.headers))


def _service_endpoint(service: Any, root_of) -> Any:
    async def endpoint(request: Request) -> Response:
        body = await request.body()
        req = Req(
            method=request.method,
            path=request.path_params.get("rest", ""),
            query=[(k, v) for k, v in request.query_params.multi_items()],
            headers=Headers(request.headers.items()),
            body=body,
            root=root_of(request),
            claims=request.scope.get("state", {}).get("claims", {}),
        )
        return _to_starlette(await run_in_threadpool(service.handle, req))

    return endpoint


def build_app(ctx: SandboxContext) -> Any:
    """The ASGI app: identity routes, BC and Dataverse services, control endpoints, behind the gate."""
    from d365kit.sandbox.bc_api import BCService
    from d365kit.sandbox.dataverse_api import DataverseService
    from d365kit.sandbox.faults import Gate

    bc = BCService(ctx)
    dv = DataverseService(ctx)

    def bc_root(request: Request) -> str:
        p = request.path_params
        return f"{ctx.origin}/v2.0/{p['tenant']}/{p['environment']}/api/"

    def dv_root(request: Request) -> str:
        return ctx.dataverse_root

    async def knobs(request: Request) -> Response:
        if request.headers.get("x-sandbox-admin-key") != ctx.admin_key:
            return JSONResponse({"error": "missing or wrong X-Sandbox-Admin-Key"}, status_code=403)
        if request.method == "PATCH":
            try:
                ctx.knobs.update(**(await request.json()))
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(ctx.knobs.as_dict())

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
    routes = [
        *ctx.identity.routes(),
        Route("/_sandbox/health", health),
        Route("/_sandbox/knobs", knobs, methods=["GET", "PATCH"]),
        Route(
            "/v2.0/{tenant}/{environment}/api/{rest:path}", _service_endpoint(bc, bc_root), methods=methods
        ),
        Route("/api/data/v9.2/{rest:path}", _service_endpoint(dv, dv_root), methods=methods),
        Route("/api/data/v9.2", _service_endpoint(dv, dv_root), methods=methods),
    ]
    return Gate(Starlette(routes=routes), ctx)


class Sandbox:
    """A sandbox over HTTPS on 127.0.0.1.

    >>> with Sandbox(data_dir=tmp, port=0) as sbx:
    ...     sbx.info()["bc_url"]
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        port: int = 0,
        scale: int | None = None,
        limits: str = "unlimited",
        latency_ms: float = 0.0,
        seed: bool = True,
    ):
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.port = port
        self.scale = scale
        self.knobs = Knobs()
        self.knobs.update(limits=limits, latency_ms=latency_ms)
        self.seed = seed
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.ctx: SandboxContext | None = None
        self.material: KeyMaterial | None = None
        self.on_started: Callable[[], None] | None = None

    # -- set-up ------------------------------------------------------------------------------------

    def _prepare(self) -> uvicorn.Server:
        from d365kit.sandbox.identity import Identity

        self.material = km = ensure_material(self.data_dir)
        store = Store(self.data_dir / DB_FILE)
        if self.seed and not (self.data_dir / MANIFEST_FILE).exists():
            seed_store(store, self.data_dir, scale=self.scale)

        # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on sockets whose proto says TCP; without it
        # every keep-alive request waits ~40 ms (Nagle + delayed ACK).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self.port))
        self._sock = sock
        self.port = sock.getsockname()[1]

        self.ctx = ctx = SandboxContext(
            store=store,
            origin=f"https://{HOST}:{self.port}",
            client_secret=km.client_secret,
            admin_key=km.admin_key,
            knobs=self.knobs,
        )
        ctx.identity = Identity(ctx, km)

        leaf = km.ca().issue_cert(HOST, "localhost")
        cert_file = self.data_dir / "server.pem"
        key_file = self.data_dir / "server-key.pem"
        cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        write_private(key_file, leaf.private_key_pem.bytes())
        config = uvicorn.Config(
            build_app(ctx),
            log_level="warning",
            access_log=False,
            ssl_certfile=str(cert_file),
            ssl_keyfile=str(key_file),
            ssl_version=ssl.PROTOCOL_TLS_SERVER,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=1,
            lifespan="off",
        )
        return uvicorn.Server(config)

    def _write_running(self) -> None:
        write_private(
            self.data_dir / RUNNING_FILE, json.dumps({"pid": os.getpid(), **self.info()}, indent=2).encode()
        )

    def _clear_running(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            running = json.loads((self.data_dir / RUNNING_FILE).read_text())
            if running.get("port") == self.port:
                (self.data_dir / RUNNING_FILE).unlink()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Start in a background thread and return once it accepts connections."""
        self._server = server = self._prepare()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self._sock]}, name="d365kit-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox failed to start on {HOST}:{self.port}; see the log above")
            time.sleep(0.02)
        self._write_running()
        return self

    def serve_forever(self) -> None:
        """Run in the foreground until interrupted (Ctrl+C)."""
        self._server = server = self._prepare()
        self._write_running()

        def announce() -> None:
            while not server.started and not server.should_exit:
                time.sleep(0.05)
            if server.started and self.on_started:
                self.on_started()

        threading.Thread(target=announce, daemon=True).start()
        # uvicorn re-raises SIGTERM after its graceful shutdown; exit through `finally` so running.json goes.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            server.run(sockets=[self._sock])
        finally:
            self._clear_running()
            self.ctx.store.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self._sock is not None:
            self._sock.close()
        self._clear_running()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- facts -------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Connection facts (also what ``d365kit sandbox env`` prints)."""
        ctx, km = self.ctx, self.material
        assert ctx is not None and km is not None, "the sandbox is not started"
        return connection_facts(ctx, km, self.port)


def connection_facts(ctx: SandboxContext, km: KeyMaterial, port: int) -> dict[str, Any]:
    return {
        "host": HOST,
        "port": port,
        "data_dir": str(km.data_dir),
        "authority": ctx.authority,
        "identity_url": ctx.authority,
        "bc_url": ctx.bc_root.rstrip("/"),
        "bc_companion_url": ctx.companion_root.rstrip("/"),
        "bc_scope": f"{BC_RESOURCE}/.default",
        "dataverse_url": ctx.dataverse_url,
        "dataverse_api_url": ctx.dataverse_root.rstrip("/"),
        "dataverse_scope": f"{ctx.dataverse_url}/.default",
        "tenant_id": ctx.tenant_id,
        "client_id": ctx.client_id,
        "client_secret": km.client_secret,
        "client_certificate": str(km.client_cert_path),
        "client_certificate_key": str(km.client_key_path),
        "client_certificate_thumbprint": km.client_cert_thumbprint(),
        "environment": ctx.environment,
        "ca_bundle": str(km.ca_path),
        "admin_key": km.admin_key,
        "demo_user": DEMO_USER_UPN,
        "manifest": str(km.data_dir / MANIFEST_FILE),
    }


def seed_store(store: Store, data_dir: Path, *, scale: int | None = None) -> dict[str, Any]:
    """Reset the store, seed it and write the manifest of planted problems."""
    from d365kit.sandbox.seed import seed

    store.reset()
    manifest = seed(store, scale=scale)
    (data_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def read_running(data_dir: Path | str | None = None) -> dict[str, Any] | None:
    """The facts of a sandbox running on this data dir, or None when none answers there."""
    path = (Path(data_dir) if data_dir else default_data_dir()) / RUNNING_FILE
    try:
        facts = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    try:
        with socket.create_connection((facts["host"], facts["port"]), timeout=1):
            return facts
    except OSError:
        return None
