"""The client side over HTTPS against the sandbox: auth, OData layer, BC and Dataverse clients."""

from __future__ import annotations

import logging
import os
import stat
import uuid
from pathlib import Path

import pandas as pd
import pytest
import requests
from fake_transport import session_with

import d365kit
from d365kit.auth import TokenProvider
from d365kit.config import Profile, replace
from d365kit.dataverse import bind
from d365kit.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    TransportError,
    UnknownNameError,
)
from d365kit.odata.batch import BatchRequest
from d365kit.odata.paging import iter_rows
from d365kit.odata.query import Q, Query
from d365kit.odata.session import ODataSession, RetryPolicy

# -- auth ------------------------------------------------------------------------------------------


def test_token_cache_is_a_private_file_and_reused(ws, tmp_path):
    provider = TokenProvider(ws.profile, cache_path=tmp_path / "cache.json")
    first = provider.token(ws.profile.bc_scope)
    assert stat.S_IMODE(os.stat(tmp_path / "cache.json").st_mode) == 0o600
    again = TokenProvider(ws.profile, cache_path=tmp_path / "cache.json").token(ws.profile.bc_scope)
    assert again == first  # served from the persisted cache
    assert provider.token(ws.profile.bc_scope, force_refresh=True) != first


def test_certificate_credential(ws, sandbox, tmp_path):
    info = sandbox.info()
    prof = replace(
        ws.profile,
        name="cert",
        auth_mode="certificate",
        certificate_path=info["client_certificate_key"],
        certificate_thumbprint=info["client_certificate_thumbprint"],
        sandbox_dir=None,
    )
    token = TokenProvider(prof, cache_path=tmp_path / "c.json").token(prof.dataverse_scope)
    claims = sandbox.ctx.identity.verify(token, info["dataverse_url"])
    assert claims["appidacr"] == "2"


def test_device_code_prompt_and_sign_in(ws, sandbox, tmp_path):
    shown: list[dict] = []

    def prompt(flow: dict) -> None:  # the "user" reads the prompt and signs in on the verification page
        shown.append(flow)
        sandbox.ctx.identity.approve_user_code(flow["user_code"])

    prof = replace(ws.profile, name="dev", auth_mode="device_code", sandbox_dir=None)
    provider = TokenProvider(prof, cache_path=tmp_path / "d.json", prompt=prompt)
    token = provider.token(prof.bc_scope)
    assert shown and shown[0]["verification_uri"].startswith("https://127.0.0.1:")
    assert sandbox.ctx.identity.verify(token, "https://api.businesscentral.dynamics.com")["idtyp"] == "user"
    # a second provider on the same cache signs in silently (refresh token), with no prompt
    TokenProvider(prof, cache_path=tmp_path / "d.json", prompt=lambda f: pytest.fail("prompted again")).token(
        prof.dataverse_scope
    )


def test_wrong_secret_and_wrong_tenant_name_the_problem_not_the_secret(ws, monkeypatch, tmp_path):
    monkeypatch.setenv("WRONG_SECRET", "definitely-wrong-secret-value")
    bad = replace(ws.profile, name="bad", secret_env="WRONG_SECRET", sandbox_dir=None)
    with pytest.raises(AuthError, match="AADSTS7000215") as exc:
        TokenProvider(bad, cache_path=tmp_path / "b.json").token(bad.bc_scope)
    assert "definitely-wrong-secret-value" not in str(exc.value)
    wrong_tenant = replace(ws.profile, name="t", tenant_id=str(uuid.uuid4()))
    with pytest.raises(AuthError, match="tenant_id"):
        TokenProvider(wrong_tenant, cache_path=tmp_path / "t.json")


def test_reprs_hide_secrets(ws):
    secret = ws.profile.secret()
    for obj in (ws, ws.profile, ws.tokens, ws.bc, ws.dataverse, ws.bc.session):
        assert secret not in repr(obj)


# -- OData layer -----------------------------------------------------------------------------------


def test_401_refreshes_the_token_once(ws, sandbox):
    calls: list[bool] = []
    expired = sandbox.ctx.identity.issue("https://api.businesscentral.dynamics.com", lifetime_s=-3600)

    def token(force_refresh: bool = False) -> str:
        calls.append(force_refresh)
        return ws.tokens.token(ws.profile.bc_scope) if force_refresh else expired

    session = ODataSession(
        "BC", token, origin=ws.profile.bc_api_url, http=ws.bc.session.http, max_concurrency=2
    )
    resp = session.request("GET", ws.bc.root() + "companies")
    assert resp.status_code == 200 and calls == [False, True] and session.stats["refreshed"] == 1


def test_foreign_ca_bundle_does_not_break_the_client(ws, monkeypatch, tmp_path):
    foreign = tmp_path / "other.pem"
    foreign.write_bytes(Path(requests.certs.where()).read_bytes())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(foreign))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(foreign))
    fresh = d365kit.connect(ws.profile)
    assert fresh.bc.companies()[0]["name"] == "CRONUS USA, Inc."
    assert fresh.dataverse.count("accounts") > 0


def test_typed_errors_name_the_problem(ws):
    with pytest.raises(UnknownNameError, match="did you mean 'customers'"):
        ws.bc.to_frame("customerz")
    with pytest.raises(UnknownNameError, match="did you mean .*'telephone1'"):
        ws.dataverse.to_frame("accounts", Query().with_select("telephone"))
    url = ws.dataverse.entity_url("accounts") + "?$filter=name eq 'unterminated"
    with pytest.raises(BadRequestError, match="unterminated literal"):
        list(iter_rows(ws.dataverse.session, url))
    with pytest.raises(NotFoundError):
        ws.dataverse.get("accounts", str(uuid.uuid4()))


def test_non_json_and_truncated_answers_are_clear_errors():
    def junk(request):
        body = b'{"value": [{"id": 1}, {"id"' if "trunc" in request.url else b"<html>gateway</html>"
        return 200, {"Content-Type": "application/json"}, body

    http, _ = session_with(junk)
    session = ODataSession(
        "Junk", lambda force_refresh=False: "t", origin="https://junk.test", http=http, max_concurrency=1
    )
    with pytest.raises(TransportError, match="not JSON"):
        list(iter_rows(session, "https://junk.test/trunc"))
    with pytest.raises(TransportError, match="not JSON"):
        list(iter_rows(session, "https://junk.test/html"))


# -- BC client -------------------------------------------------------------------------------------


def test_bc_frame_types_and_crud_with_etags(ws):
    frame = ws.bc.to_frame(
        "customers", Query().with_select("id", "number", "creditLimit", "lastModifiedDateTime", "taxLiable")
    )
    assert len(frame) > 0
    assert (
        str(frame["lastModifiedDateTime"].dtype).startswith("datetime64")
        and frame["lastModifiedDateTime"].dt.tz is not None
    )
    assert frame["creditLimit"].dtype == "float64" and str(frame["taxLiable"].dtype) == "boolean"
    assert frame["id"].str.fullmatch(r"[0-9a-f-]{36}").all()

    new_id = str(uuid.uuid4())
    created = ws.bc.create("contacts", {"id": new_id, "displayName": "Client Test", "type": "Person"})
    assert created["id"] == new_id
    updated = ws.bc.update("contacts", new_id, {"jobTitle": "Analyst"}, etag=created["@odata.etag"])
    assert updated["jobTitle"] == "Analyst"
    with pytest.raises(ConflictError) as exc:
        ws.bc.update("contacts", new_id, {"jobTitle": "Stale"}, etag=created["@odata.etag"])
    assert exc.value.code == "Request_EntityChanged" and exc.value.correlation_id
    assert ws.bc.upsert("contacts", new_id, {"jobTitle": "Upserted"})["jobTitle"] == "Upserted"
    ws.bc.delete("contacts", new_id, etag="*")
    with pytest.raises(NotFoundError):
        ws.bc.get("contacts", new_id)


def test_bc_batch_and_incremental_read(ws):
    since = pd.Timestamp.now(tz="UTC").to_pydatetime()
    results = ws.bc.batch(
        [BatchRequest("POST", "contacts", {"displayName": f"Batch {i}", "type": "Person"}) for i in range(3)]
        + [BatchRequest("GET", "customers?$top=1")]
    )
    assert [r.status for r in results] == [201, 201, 201, 200]
    changed = ws.bc.modified_since("contacts", since)
    created_ids = {r.body["id"] for r in results[:3]}
    assert created_ids <= set(changed["id"])
    for cid in created_ids:
        ws.bc.delete("contacts", cid)


def test_companion_api(ws):
    assert ws.bc.companion_installed()
    couplings = ws.bc.couplings()
    assert {"crmId", "integrationId", "tableId", "skipped"} <= set(couplings.columns) and len(couplings) > 0
    assert set(ws.bc.table_mappings()["name"]) >= {"CUSTOMER", "CONTACT", "ITEM-PRODUCT"}
    jobs = ws.bc.sync_jobs(Query().where(Q.gt("failed", 0)))
    assert len(jobs) > 0 and (jobs["failed"] > 0).all()


# -- Dataverse client ------------------------------------------------------------------------------


def test_dataverse_lookups_formatted_values_and_conflicts(ws):
    currency = ws.dataverse.to_frame(
        "transactioncurrencies",
        Query().with_select("transactioncurrencyid", "isocurrencycode", "currencyname"),
    )
    usd, usd_name = currency.loc[
        currency["isocurrencycode"] == "USD", ["transactioncurrencyid", "currencyname"]
    ].iloc[0]
    acc = ws.dataverse.create(
        "accounts",
        {
            "name": "Lookup Test",
            "creditlimit": 1234.5,
            **bind("transactioncurrencyid", "transactioncurrencies", usd),
        },
    )
    row = ws.dataverse.get(
        "accounts", acc, select=("name", "creditlimit", "_transactioncurrencyid_value"), formatted=True
    )
    assert row["_transactioncurrencyid_value"] == usd
    # a lookup's formatted value is the related row's primary name; money is formatted in its currency
    assert row["_transactioncurrencyid_value@OData.Community.Display.V1.FormattedValue"] == usd_name
    assert row["creditlimit@OData.Community.Display.V1.FormattedValue"] == "$1,234.50"
    frame = ws.dataverse.to_frame(
        "accounts",
        Query()
        .with_select("accountid", "creditlimit", "_transactioncurrencyid_value")
        .where(Q.eq("accountid", uuid.UUID(acc))),
        formatted=True,
    )
    assert frame.loc[0, "creditlimit"] == 1234.5 and "creditlimit@formatted" in frame.columns
    etag = row["@odata.etag"]
    ws.dataverse.update("accounts", acc, {"name": "Lookup Test 2"}, etag=etag)
    with pytest.raises(ConflictError):
        ws.dataverse.update("accounts", acc, {"name": "stale"}, etag=etag)
    ws.dataverse.delete("accounts", acc)


def test_dataverse_bulk_actions_chunk_and_change_tracking(ws):
    start = ws.dataverse.changes("contacts", select=("firstname", "lastname"))
    ids = [str(uuid.uuid4()) for _ in range(25)]
    rows = [{"contactid": i, "firstname": "Bulk", "lastname": f"N{n:03d}"} for n, i in enumerate(ids)]
    assert ws.dataverse.create_multiple("contacts", rows, chunk_size=10) == ids
    ws.dataverse.update_multiple(
        "contacts", [{"contactid": i, "lastname": "Updated"} for i in ids[:5]], chunk_size=2
    )
    ws.dataverse.delete("contacts", ids[-1])
    delta = ws.dataverse.changes("contacts", delta_link=start.delta_link)
    assert set(ids[:-1]) <= set(delta.changed["contactid"]) and ids[-1] not in set(delta.changed["contactid"])
    assert ids[-1] in delta.deleted
    assert (delta.changed.set_index("contactid").loc[ids[:5], "lastname"] == "Updated").all()
    for i in ids[:-1]:
        ws.dataverse.delete("contacts", i)


def test_dataverse_batch_atomic_changeset(ws):
    good, dup = str(uuid.uuid4()), str(uuid.uuid4())
    ws.dataverse.create("accounts", {"accountid": dup, "name": "exists"})
    results = ws.dataverse.batch(
        [
            BatchRequest("POST", "accounts", {"accountid": good, "name": "in changeset"}),
            BatchRequest("POST", "accounts", {"accountid": dup, "name": "duplicate"}),
        ]
    )
    assert any(r.error is not None for r in results)
    with pytest.raises(NotFoundError):  # the changeset rolled back as a whole
        ws.dataverse.get("accounts", good)
    ws.dataverse.delete("accounts", dup)


def test_no_secret_or_token_in_logs(ws, caplog):
    caplog.set_level(logging.DEBUG)
    token = ws.tokens.token(ws.profile.dataverse_scope)
    ws.dataverse.to_frame("accounts", page_size=10)
    with pytest.raises(NotFoundError) as exc:
        ws.bc.get("customers", str(uuid.uuid4()))
    text = caplog.text + str(exc.value) + repr(exc.value)
    assert ws.profile.secret() not in text and token not in text and "Bearer ey" not in text


def test_profile_is_a_real_profile(ws):
    assert isinstance(ws.profile, Profile) and ws.profile.name == "sandbox"


def test_backoff_is_full_jitter_up_to_the_capped_exponential():
    """``uniform(0, min(cap, base * 2**attempt))`` drawn from the rng passed in (defaults: base 0.5 s, cap 30 s)."""
    import random

    policy = RetryPolicy()
    assert policy.backoff(3, random.Random(1)) == random.Random(1).uniform(0, 4.0)  # 0.5 * 2**3
    assert policy.backoff(0, random.Random(1)) == random.Random(1).uniform(0, 0.5)
    assert policy.backoff(10, random.Random(1)) == random.Random(1).uniform(0, 30.0)  # 512 s, capped
    rng = random.Random(7)
    draws = [policy.backoff(3, rng) for _ in range(500)]
    assert min(draws) >= 0 and max(draws) <= 4.0 and len(set(draws)) == 500
    assert min(draws) < 0.5 and max(draws) > 3.5  # spread over the whole range (full jitter)
