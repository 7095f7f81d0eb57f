"""``d365kit demo``: the main job, end to end against the sandbox.

Today it starts (or attaches to) the sandbox and proves a token + read + write round trip on both services
through msal, requests, HTTPS and OData, exactly as against a real tenant; then says what to do next.
The write leaves no trace: it creates a row, updates it with its ETag, shows the stale-ETag conflict and
deletes it again, so the seeded data and its manifest stay true.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import msal

from d365kit.odata.session import PinnedSession

DEMO_DIR = Path(".d365kit") / "sandbox"


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
        raise RuntimeError(f"token request for {scope} failed: {result.get('error')}: {result.get('error_description')}")
    return result["access_token"]


def _check(resp: Any, expected: int, what: str) -> Any:
    if resp.status_code != expected:
        raise RuntimeError(f"{what}: expected HTTP {expected}, got {resp.status_code}: {resp.text[:300]}")
    return resp


def round_trip(facts: dict[str, Any]) -> dict[str, Any]:
    """Token, paged read and an ETag-guarded write on both services. Returns the figures it printed."""
    http = PinnedSession(verify=facts["ca_bundle"])
    bc = {"Authorization": f"Bearer {_token(facts, http, facts['bc_scope'])}"}
    dv = {"Authorization": f"Bearer {_token(facts, http, facts['dataverse_scope'])}"}
    _say("token", "msal acquired a Business Central and a Dataverse token (client secret, RS256).")

    companies = _check(http.get(f"{facts['bc_url']}/companies", headers=bc), 200, "BC companies").json()["value"]
    company = companies[0]
    customers, url, pages = 0, f"{facts['bc_url']}/companies({company['id']})/customers?$select=id,number", 0
    while url:
        page = _check(http.get(url, headers={**bc, "Prefer": "odata.maxpagesize=25"}), 200, "BC customers").json()
        customers += len(page["value"])
        pages += 1
        url = page.get("@odata.nextLink")
    accounts = int(_check(http.get(f"{facts['dataverse_api_url']}/accounts/$count", headers=dv), 200, "DV count").text)
    _say("read", f"BC company {company['name']!r}: {customers} customers in {pages} pages; Dataverse: {accounts} accounts.")

    account_id = str(uuid.uuid4())
    accounts_url = f"{facts['dataverse_api_url']}/accounts"
    _check(http.post(accounts_url, json={"accountid": account_id, "name": "d365kit demo"}, headers=dv), 204, "create")
    row_url = f"{accounts_url}({account_id})"
    etag = _check(http.get(row_url, headers=dv), 200, "read back").json()["@odata.etag"]
    _check(http.patch(row_url, json={"telephone1": "+1 425 555 0100"}, headers={**dv, "If-Match": etag}), 204, "update")
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
    created = _check(http.post(customers_url, json={"displayName": "d365kit demo"}, headers=bc), 201, "BC create").json()
    row_url = f"{customers_url}({created['id']})"
    updated = _check(
        http.patch(row_url, json={"phoneNumber": "+1 425 555 0100"}, headers={**bc, "If-Match": created["@odata.etag"]}),
        200,
        "BC update",
    ).json()
    conflict = http.patch(row_url, json={"phoneNumber": "+1 425 555 0199"}, headers={**bc, "If-Match": created["@odata.etag"]})
    _check(conflict, 409, "BC stale update")
    _check(http.delete(row_url, headers={**bc, "If-Match": updated["@odata.etag"]}), 204, "BC delete")
    _say(
        "write",
        f"BC customer {created['number']} created, updated with If-Match, a stale ETag refused with 409 "
        f"{conflict.json()['error']['code']}, then deleted.",
    )
    return {"company": company["name"], "customers": customers, "pages": pages, "accounts": accounts}


def run_demo(data_dir: Path | None = None) -> int:
    from d365kit.sandbox.server import Sandbox, read_running

    data_dir = data_dir or DEMO_DIR
    with ExitStack() as stack:
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
    print(
        "\nNext:\n"
        f"  .venv/bin/d365kit sandbox start --data-dir {data_dir}   # keep a sandbox running (foreground)\n"
        f'  eval "$(.venv/bin/d365kit sandbox env --data-dir {data_dir})"   # its URLs, ids and CA as exports\n'
        "  make test                                   # the test suite, against its own sandbox\n"
        "The notebooks, reconcile and selective sync build on this; see README.md."
    )
    return 0
