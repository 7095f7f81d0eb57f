"""Reconcile against the seeded sandbox: every planted problem in its category and nothing else, per
mapping; changes made through the raw APIs after seeding; incremental runs; the report.

Each fixture here runs its own sandbox, so other tests' scratch writes cannot disturb the seed.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import PinnedSession, auth, private_sandbox

import d365kit
from d365kit import couplings as ledgers
from d365kit.errors import CatalogError
from d365kit.mapping import load_catalog
from d365kit.reconcile import CATEGORIES, COMPARED

MAPPINGS = [m.name for m in load_catalog()]


def na(value: Any) -> Any:
    return None if not isinstance(value, tuple) and pd.isna(value) else value


def found(result) -> dict[tuple[str, str | None, str | None], dict]:
    """Reported records (all but in_sync) by (category, bc_id, dataverse_id)."""
    rows = result.records[result.records["category"] != "in_sync"].to_dict("records")
    return {(r["category"], na(r["bc_id"]), na(r["dataverse_id"])): r for r in rows}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    with private_sandbox(tmp_path_factory.mktemp("reconcile")) as (sbx, ws):
        manifest = json.loads(Path(sbx.info()["manifest"]).read_text())
        yield ws, manifest, {name: ws.reconcile(name, progress=False) for name in MAPPINGS}


# -- the planted problems, per mapping -------------------------------------------------------------


@pytest.mark.parametrize("name", MAPPINGS)
def test_every_planted_problem_in_its_category_and_nothing_else(pristine, name):
    ws, manifest, results = pristine
    result = results[name]
    problems = [p for p in manifest["problems"] if p["mapping"] == name]
    expected = {(p["category"], p["bc_id"], p["dataverse_id"]): p for p in problems}
    got = found(result)
    assert set(got) == set(expected)  # precision and recall 1.0
    for key, p in expected.items():
        row = got[key]
        assert set(row["coupling_ids"]) == set(p["coupling_ids"]), p["id"]
        if p["category"] in COMPARED:
            assert set(zip(row["bc_fields"], row["fields"], strict=True)) == {
                (f["bc"], f["dataverse"]) for f in p["fields"]
            }, p["id"]
            assert na(row["changed_side"]) == p["changed_side"], p["id"]
        if p["category"].startswith("uncoupled"):
            planted = (p["match"] or {}).get("dataverse_id") or (p["match"] or {}).get("bc_id")
            if planted:
                assert (row["match_id"], row["match_score"]) == (planted, 100.0), p["id"]
            else:
                assert na(row["match_score"]) != 100.0, p["id"]
    assert set(result.summary().query("records > 0")["category"]) - {"in_sync"} == set(
        manifest["applicable"][name]
    )


@pytest.mark.parametrize("name", MAPPINGS)
def test_every_coupling_of_the_table_is_in_exactly_one_record(pristine, name):
    ws, _, results = pristine
    result = results[name]
    table = ledgers.for_table(ledgers.from_companion(ws.bc), result.mapping.bc_table_id)
    reported = Counter(c for ids in result.records["coupling_ids"] for c in ids)
    assert reported == Counter(table["coupling_id"])
    assert result.summary()["records"].sum() == len(result.records)


def test_the_result_frames_and_counts_agree(pristine):
    _, manifest, results = pristine
    result = results["CUSTOMER"]
    assert list(result.summary()["category"]) == list(CATEGORIES)
    assert {c: len(result.to_frame(c)) for c in CATEGORIES} == dict(
        zip(result.summary()["category"], result.summary()["records"], strict=True)
    )
    drift = result.field_drift.set_index("dataverse_field")
    per_field = result.values.groupby(["dataverse_field", "category"]).size()
    for (field, category), n in per_field.items():
        assert drift.loc[field, category] == n
    assert drift["total"].sum() == len(result.values)
    pending = result.values[result.values["category"] == "pending"].set_index("bc_field")
    assert pending.loc["city", "dataverse_value"] != pending.loc["city", "bc_value"]
    owner = result.values[result.values["bc_field"] == "salespersonCode"]
    assert owner["dataverse_value"].str.fullmatch(r"[A-Z]{2}").all()  # ownerid shown as a salesperson code
    with pytest.raises(KeyError, match="not a category"):
        result.to_frame("drifted")


def test_the_html_report_is_self_contained(pristine):
    _, manifest, results = pristine
    result = results["CUSTOMER"]
    page = result.to_html()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<style>" in page and "<script" not in page and "src=" not in page and "href=" not in page
    drift = next(p for p in manifest["problems"] if p["mapping"] == "CUSTOMER" and p["category"] == "drift")
    for text in (
        "Reconcile CUSTOMER",
        "Fields that differ",
        "Differing values",
        "uncoupled_dataverse (2)",
        drift["bc_id"],
    ):
        assert text in page
    assert "Fax No. -&gt; fax" in page  # companion-only fields are listed as not compared
    text = result.to_text()
    assert "coupled_missing_bc" in text and "telephone1" in text
    assert "ReconcileResult(CUSTOMER" in repr(result)


def test_a_ledger_from_a_csv_export_gives_the_same_categories(pristine, tmp_path):
    ws, _, results = pristine
    ledger = ledgers.from_companion(ws.bc, [18, 13, 4])
    export = ledger.drop(columns="coupling_id").rename(
        columns={v: k for k, v in ledgers.PAGE_COLUMNS.items()}
    )
    export["Skipped"] = export["Skipped"].map({True: "Yes", False: "No"})
    path = tmp_path / "couplings.csv"
    export.to_csv(path, index=False)
    from_csv = ws.reconcile("CUSTOMER", couplings=ledgers.from_file(path), progress=False)
    assert set(found(from_csv)) == set(found(results["CUSTOMER"]))


def test_bc_enum_values_are_compared_as_text(pristine):
    """A user mapping of BC's ``status`` enum (wire spelling ``In_x0020_Progress``) through an option map."""
    ws, _, results = pristine
    mine = load_catalog(
        overrides=[
            {
                "options": {
                    "opportunity_state": {"values": {"Not Started": 0, "In Progress": 0, "Won": 1, "Lost": 2}}
                },
                "mapping": [
                    {
                        "name": "OPPORTUNITY",
                        "extends": True,
                        "field": [
                            {
                                "bc": "status",
                                "dv": "statecode",
                                "direction": "to_dataverse",
                                "transform": "option:opportunity_state",
                            }
                        ],
                    }
                ],
            }
        ]
    )
    result = ws.reconcile("OPPORTUNITY", catalog=mine, progress=False)
    assert set(found(result)) == set(found(results["OPPORTUNITY"]))
    assert "statecode" not in set(result.values["dataverse_field"])


def test_reconcile_validates_the_mapping_first(pristine):
    ws, _, _ = pristine
    bad = load_catalog(
        overrides=[
            {
                "mapping": [
                    {
                        "name": "CURRENCY",
                        "extends": True,
                        "field": [{"bc": "code", "dv": "isocurrencycod", "direction": "to_dataverse"}],
                    }
                ]
            }
        ]
    )
    with pytest.raises(
        CatalogError,
        match=r"mapping CURRENCY, field code: Dataverse 'transactioncurrencies' has no attribute 'isocurrencycod'",
    ):
        ws.reconcile("CURRENCY", catalog=bad, progress=False)


# -- changes made through the raw APIs after seeding -----------------------------------------------


class Raw:
    """Plain requests with an msal token: no d365kit code on the write path."""

    def __init__(self, info: dict[str, Any], company: str):
        self.bc_root = f"{info['bc_url']}/companies({company})"
        self.dv_root = info["dataverse_api_url"]
        self.bc = PinnedSession(info["ca_bundle"])
        self.bc.headers.update(auth(info, info["bc_scope"]))
        self.dv = PinnedSession(info["ca_bundle"])
        self.dv.headers.update({**auth(info, info["dataverse_scope"]), "OData-Version": "4.0"})

    def bc_call(self, method: str, path: str, **kw: Any) -> dict:
        r = self.bc.request(method, f"{self.bc_root}/{path}", headers={"If-Match": "*"}, timeout=30, **kw)
        assert r.status_code in (200, 201, 204), r.text
        return r.json() if r.content else {}

    def dv_call(self, method: str, path: str, **kw: Any) -> str:
        r = self.dv.request(method, f"{self.dv_root}/{path}", timeout=30, **kw)
        assert r.status_code in (200, 204), r.text
        return r.headers.get("OData-EntityId", "")[-37:-1]


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """A second private sandbox: pick six healthy customers, change them through the raw APIs."""
    with private_sandbox(tmp_path_factory.mktemp("edited")) as (sbx, ws):
        info = sbx.info()
        manifest = json.loads(Path(info["manifest"]).read_text())
        before = ws.reconcile("CUSTOMER", progress=False)
        healthy = before.to_frame("in_sync").sort_values("bc_key").head(6)
        a, b, c, d, e, f = healthy[["bc_id", "dataverse_id"]].itertuples(index=False)
        raw = Raw(info, manifest["company"]["id"])
        since = datetime.now(UTC)
        raw.bc_call("PATCH", f"customers({a.bc_id})", json={"phoneNumber": "+1 999 555 0101"})
        raw.dv_call(
            "PATCH",
            f"accounts({b.dataverse_id})",
            json={"address1_city": "Springfield"},
            headers={"If-Match": "*"},
        )
        raw.bc_call("PATCH", f"customers({c.bc_id})", json={"displayName": "Conflict Ltd (BC)"})
        raw.dv_call(
            "PATCH",
            f"accounts({c.dataverse_id})",
            json={"name": "Conflict Ltd (Sales)"},
            headers={"If-Match": "*"},
        )
        raw.bc_call("DELETE", f"customers({d.bc_id})")
        raw.dv_call("DELETE", f"accounts({e.dataverse_id})")
        original = raw.bc_call("GET", f"customers({f.bc_id})")
        copy = {
            k: original[k]
            for k in ("displayName", "addressLine1", "city", "postalCode", "phoneNumber", "email", "website")
        }
        new_bc = raw.bc_call("POST", "customers", json=copy)["id"]
        new_dv = raw.dv_call(
            "POST",
            "accounts",
            json={
                "name": copy["displayName"],
                "address1_line1": copy["addressLine1"],
                "address1_city": copy["city"],
                "address1_postalcode": copy["postalCode"],
                "telephone1": copy["phoneNumber"],
                "emailaddress1": copy["email"],
                "websiteurl": copy["website"],
                "customertypecode": 3,
            },
        )
        expected = {
            ("pending", a.bc_id, a.dataverse_id): ("bc", ("telephone1",)),
            ("pending", b.bc_id, b.dataverse_id): ("dataverse", ("address1_city",)),
            ("conflict", c.bc_id, c.dataverse_id): ("both", ("name",)),
            ("coupled_missing_bc", d.bc_id, d.dataverse_id): (None, ()),
            ("coupled_missing_dataverse", e.bc_id, e.dataverse_id): (None, ()),
            ("uncoupled_bc", new_bc, None): (None, ()),
            ("uncoupled_dataverse", None, new_dv): (None, ()),
        }
        yield ws, before, expected, since, (a, c, d, e)


def test_raw_api_changes_land_in_their_categories(edited):
    ws, before, expected, _, _ = edited
    after = ws.reconcile("CUSTOMER", progress=False)
    got = found(after)
    assert set(got) == set(found(before)) | set(expected)
    for key, (side, fields) in expected.items():
        assert (na(got[key]["changed_side"]), got[key]["fields"]) == (side, fields), key
    # the two raw duplicates suggest each other as match candidates
    new_bc = next(k[1] for k in expected if k[0] == "uncoupled_bc")
    new_dv = next(k[2] for k in expected if k[0] == "uncoupled_dataverse")
    assert got[("uncoupled_bc", new_bc, None)]["match_id"] == new_dv
    assert got[("uncoupled_dataverse", None, new_dv)]["match_id"] == new_bc


def test_since_reads_only_what_changed(edited):
    ws, _, expected, since, _ = edited
    result = ws.reconcile("CUSTOMER", since=since, progress=False)
    # deletions leave no modified row behind: BC has no delta links, a full run finds them
    visible = {k for k in expected if not k[0].startswith("coupled_missing")}
    assert set(found(result)) == visible
    assert result.read["bc"] < 10 and result.read["dataverse"] < 10
    assert result.scope.startswith("since ")


def test_records_limits_the_run_to_the_given_ids(edited):
    ws, _, expected, _, (a, c, d, e) = edited
    result = ws.reconcile(
        "CUSTOMER", records=[a.bc_id, c.dataverse_id, d.bc_id, e.dataverse_id], progress=False
    )
    wanted = {k for k in expected if k[1] in (a.bc_id, c.bc_id, d.bc_id, e.bc_id)}
    assert set(found(result)) == wanted and len(wanted) == 4
    assert len(result.records) == 4 and result.read["couplings"] == 4
    with pytest.raises(ValueError, match="records= takes BC ids, Dataverse ids or coupling ids, not: 10000"):
        ws.reconcile("CUSTOMER", records=["10000"], progress=False)


def test_reconciling_every_mapping_takes_at_most_40_requests(ws, monkeypatch):
    """One run over the twelve mappings shares its reads: the ledger, the company and each whole table
    once, and the by-id reads of all mappings in one $batch per service (89 requests before)."""
    fresh = d365kit.connect(ws.profile)
    fresh.bc.company_id, fresh.bc.metadata(), fresh.dataverse.metadata()  # set-up reads, not the run's
    sent: list[str] = []
    real = fresh.bc.session.http.request

    def counting(method, url, *args, **kwargs):
        sent.append(url.split("?")[0])
        return real(method, url, *args, **kwargs)

    monkeypatch.setattr(fresh.bc.session.http, "request", counting)
    results = fresh.reconcile_all(progress=False)
    assert len(results) == 12
    assert len(sent) <= 40, "\n".join(sent)
    assert sum(u.endswith("/crmIntegrationRecords") for u in sent) == 1
    assert sum(u.endswith("/bcbi_companies") for u in sent) == 1
    assert sum(u.endswith("/currencies") for u in sent) == 1  # lookup table and own side share one read
    assert sum(u.endswith("/$batch") for u in sent) <= 4  # BC standard, BC companion, Dataverse (+ options)


def test_a_run_over_many_mappings_finds_what_single_runs_find(ws):
    """Batched and shared reads change the requests, never the result."""
    together = ws.reconcile_all(["CUSTOMER", "CONTACT", "CURRENCY", "ITEM-PRODUCT"], progress=False)
    for name, result in together.items():
        alone = ws.reconcile(name, progress=False)
        pd.testing.assert_frame_equal(
            result.records.sort_values(["category", "bc_id", "dataverse_id"]).reset_index(drop=True),
            alone.records.sort_values(["category", "bc_id", "dataverse_id"]).reset_index(drop=True),
        )


def test_every_record_not_in_sync_says_why_what_next_and_what_to_do(pristine):
    _, _, results = pristine
    seen = set()
    for result in results.values():
        out = result.records[result.records["category"] != "in_sync"]
        for column in ("reason", "next_sync", "action"):
            empty = out[out[column].fillna("").eq("")]
            assert empty.empty, f"{result.mapping.name}: {column} empty for {empty['category'].unique()}"
        seen |= set(out["category"])
        assert (
            result.records.loc[result.records["category"] == "in_sync", "next_sync"].fillna("").eq("").all()
        )
    assert seen == set(CATEGORIES) - {"in_sync"}


def test_next_sync_follows_the_mappings_own_settings(pristine):
    """The same records under other conflict settings and Synch. Only Coupled Records off."""
    import dataclasses

    from d365kit.explain import explain

    _, _, results = pristine
    result = results["CUSTOMER"]
    default = result.records.groupby("category")["next_sync"].first()
    assert "Update-Conflict Resolution: None" in default["conflict"]
    assert "Deletion-Conflict Resolution: None" in default["coupled_missing_dataverse"]
    assert "Synch. Only Coupled Records is on" in default["uncoupled_bc"]
    tenant = dataclasses.replace(
        result.mapping,
        update_conflict="Get Update from Integration",
        deletion_conflict="Restore Records",
        synch_only_coupled=False,
    )
    other = explain(result.records, tenant).groupby("category")["next_sync"].first()
    assert "overwrites BC with the Dataverse values" in other["conflict"]
    assert "re-creates the Dataverse row" in other["coupled_missing_dataverse"]
    assert "creates it in Dataverse" in other["uncoupled_bc"] and "duplicate" in other["uncoupled_bc"]
    one_way = explain(result.records, dataclasses.replace(result.mapping, direction="to_dataverse"))
    pending_dv = one_way[(one_way["category"] == "pending") & (one_way["changed_side"] == "dataverse")]
    assert len(pending_dv) and pending_dv["next_sync"].str.startswith("never fixed by BC's sync").all()


def test_results_say_whose_setup_they_compare_by(pristine):
    """The tenant's own setup when the companion is there; the static catalog, labelled, otherwise."""
    from d365kit.mapping import STATIC, TENANT, load_catalog

    ws, _, results = pristine
    assert results["CUSTOMER"].setup == TENANT
    assert "the tenant's own integration setup" in html.unescape(results["CUSTOMER"].to_html())
    static = ws.reconcile("CURRENCY", catalog=load_catalog(), progress=False)
    assert (
        static.setup == STATIC
        and "static catalog" in static.to_html()
        and "static catalog" in static.to_text()
    )
