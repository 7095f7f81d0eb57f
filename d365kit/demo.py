"""``d365kit demo`` (``make demo``): the main job, end to end against the sandbox.

1. Start a fresh sandbox in a temporary folder (or attach to the one running on ``--data-dir``).
2. Prove the plumbing in a few lines: msal tokens, a paged read and an ETag-guarded write on both services
   over HTTPS and OData, exactly as against a real tenant. The write leaves no trace (create, update with
   its ETag, a stale ETag refused, delete), so the seeded data and its manifest stay true.
3. Run the four notebooks headlessly (papermill) against it, selective sync as a dry run, and write the
   HTML report (``reports/<UTC timestamp>/index.html``); print the index path last.

Exit status 1 when a notebook failed (the report still shows the others and the failure).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import msal

from d365kit.errors import AuthError, TransportError
from d365kit.odata.session import PinnedSession


def _say(step: str, text: str) -> None:
    print(f"[{step}] {text}", flush=True)


def _token(facts: dict[str, Any], http: PinnedSession, scope: str) -> str:
    app = msal.ConfidentialClientApplication(
        facts["client_id"],
        client_credential=facts["client_secret"],
        authority=facts["authority"],
        instance_discovery=False,
        http_client=http,
    )
    result = app.acquire_token_for_client(scopes=[scope])
    if "access_token" not in result:
        raise AuthError(
            f"token request for {scope} failed: {result.get('error')}: {result.get('error_description')}"
        )
    return result["access_token"]


def _check(resp: Any, expected: int, what: str) -> Any:
    if resp.status_code != expected:
        raise TransportError(f"{what}: expected HTTP {expected}, got {resp.status_code}: {resp.text[:300]}")
    return resp


def round_trip(facts: dict[str, Any]) -> dict[str, Any]:
    """Token, paged read and an ETag-guarded write on both services. Returns the figures it printed."""
    http = PinnedSession(verify=facts["ca_bundle"])
    bc = {"Authorization": f"Bearer {_token(facts, http, facts['bc_scope'])}"}
    dv = {"Authorization": f"Bearer {_token(facts, http, facts['dataverse_scope'])}"}
    _say("token", "msal acquired a Business Central and a Dataverse token (client secret, RS256).")

    companies = _check(http.get(f"{facts['bc_url']}/companies", headers=bc), 200, "BC companies").json()[
        "value"
    ]
    company = companies[0]
    customers, url, pages = 0, f"{facts['bc_url']}/companies({company['id']})/customers?$select=id,number", 0
    while url:
        page = _check(
            http.get(url, headers={**bc, "Prefer": "odata.maxpagesize=25"}), 200, "BC customers"
        ).json()
        customers += len(page["value"])
        pages += 1
        url = page.get("@odata.nextLink")
    accounts = int(
        _check(http.get(f"{facts['dataverse_api_url']}/accounts/$count", headers=dv), 200, "DV count").text
    )
    _say(
        "read",
        f"BC company {company['name']!r}: {customers} customers in {pages} pages; Dataverse: {accounts} accounts.",
    )

    account_id = str(uuid.uuid4())
    accounts_url = f"{facts['dataverse_api_url']}/accounts"
    _check(
        http.post(accounts_url, json={"accountid": account_id, "name": "d365kit demo"}, headers=dv),
        204,
        "create",
    )
    row_url = f"{accounts_url}({account_id})"
    etag = _check(http.get(row_url, headers=dv), 200, "read back").json()["@odata.etag"]
    _check(
        http.patch(row_url, json={"telephone1": "+1 425 555 0100"}, headers={**dv, "If-Match": etag}),
        204,
        "update",
    )
    stale = http.patch(row_url, json={"telephone1": "+1 425 555 0199"}, headers={**dv, "If-Match": etag})
    _check(stale, 412, "stale update")
    phone = _check(http.get(row_url, headers=dv), 200, "read back").json()["telephone1"]
    _check(http.delete(row_url, headers=dv), 204, "delete")
    _say(
        "write",
        f"Dataverse account created, updated with If-Match (telephone1 = {phone}), a stale ETag refused "
        f"with 412 ({stale.json()['error']['message']!r}), then deleted.",
    )
    customers_url = f"{facts['bc_url']}/companies({company['id']})/customers"
    created = _check(
        http.post(customers_url, json={"displayName": "d365kit demo"}, headers=bc), 201, "BC create"
    ).json()
    row_url = f"{customers_url}({created['id']})"
    updated = _check(
        http.patch(
            row_url,
            json={"phoneNumber": "+1 425 555 0100"},
            headers={**bc, "If-Match": created["@odata.etag"]},
        ),
        200,
        "BC update",
    ).json()
    conflict = http.patch(
        row_url, json={"phoneNumber": "+1 425 555 0199"}, headers={**bc, "If-Match": created["@odata.etag"]}
    )
    _check(conflict, 409, "BC stale update")
    _check(http.delete(row_url, headers={**bc, "If-Match": updated["@odata.etag"]}), 204, "BC delete")
    _say(
        "write",
        f"BC customer {created['number']} created, updated with If-Match, a stale ETag refused with 409 "
        f"{conflict.json()['error']['code']}, then deleted.",
    )
    return {"company": company["name"], "customers": customers, "pages": pages, "accounts": accounts}


@contextmanager
def _sandbox_dir(data_dir: Path) -> Iterator[None]:
    """Point the built-in ``sandbox`` profile (and so every notebook kernel started meanwhile) at ``data_dir``."""
    saved = os.environ.get("D365KIT_SANDBOX_DIR")
    os.environ["D365KIT_SANDBOX_DIR"] = str(data_dir)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("D365KIT_SANDBOX_DIR", None)
        else:
            os.environ["D365KIT_SANDBOX_DIR"] = saved


def run_demo(
    data_dir: Path | None = None,
    out_dir: Path | None = None,
    notebooks: Iterable[str | Path] | None = None,
) -> int:
    """Sandbox, round trip, the notebooks and their report; 0 when every notebook ran, else 1."""
    from d365kit.report import build_report
    from d365kit.sandbox.server import Sandbox, read_running

    with ExitStack() as stack:
        if data_dir is None:  # a fresh seed every time, removed afterwards (after the sandbox stops)
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="d365kit-demo-")))
        facts = read_running(data_dir)
        if facts:
            _say("sandbox", f"attached to the sandbox already running at {facts['authority']}")
        else:
            facts = stack.enter_context(Sandbox(data_dir)).info()
            _say("sandbox", f"started at https://127.0.0.1:{facts['port']} (data: {data_dir})")
        manifest = json.loads(Path(facts["manifest"]).read_text())
        by_category = Counter(p["category"] for p in manifest.get("problems", []))
        _say(
            "seed",
            f"CRONUS-shaped demo data, {len(manifest.get('problems', []))} planted problems: "
            + ", ".join(f"{c} {n}" for c, n in sorted(by_category.items())),
        )
        round_trip(facts)
        _say(
            "notebooks",
            "running them headlessly (papermill) against the sandbox; selective sync is a dry run",
        )
        with _sandbox_dir(Path(facts["data_dir"])):
            report = build_report(notebooks, out_dir, profile="sandbox")
    for result in report.results:
        print(f"[report] {result.describe()}", file=sys.stdout if result.ok else sys.stderr, flush=True)
    failed = [r.notebook.name for r in report.results if not r.ok]
    print(
        "\nInteractive: make lab   (JupyterLab on notebooks/; the sandbox profile starts a sandbox in the kernel)\n"
        "Tests:       make test\n"
        + (f"FAILED:      {', '.join(failed)} (see the report)\n" if failed else "")
        + "Report:"
    )
    print(report.index.resolve(), flush=True)
    return 1 if failed else 0
