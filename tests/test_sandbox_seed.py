"""The seed: deterministic, and its manifest is the truth about the store.

``derive`` re-implements the category contract of ``d365kit.sandbox.seed`` from the stored rows only (filters,
couplings, timestamps, field transforms), so every record that is not planted must come out ``in_sync`` and
every planted one in exactly its category: precision and recall 1.0 per mapping.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from d365kit.sandbox import schema
from d365kit.sandbox.seed import seed
from d365kit.sandbox.seed_catalog import BIDI, MAPPINGS, Mapping
from d365kit.sandbox.store import Store

FLOAT_TOLERANCE = 0.005


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, dict[str, Any]]:
    store = Store(tmp_path_factory.mktemp("seed") / "sandbox.db")
    return store, seed(store)


class World:
    """The stored rows of one company, indexed the way the transforms need them."""

    def __init__(self, store: Store, manifest: dict[str, Any]):
        self.store = store
        self.company = manifest["company"]["id"]
        self.own = manifest["company"]["bcbi_companyid"]
        self.couplings = self.rows("companion", "crmIntegrationRecords")
        self.by_table: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for c in self.couplings:
            self.by_table[c["tableId"]].append(c)
        self.crm_of: dict[int, dict[str, str]] = {
            t: {c["integrationId"]: c["crmId"] for c in cs} for t, cs in self.by_table.items()
        }
        self.id_by_code = {
            "currencyCode": self.index("bc", "currencies", "code", 4),
            "salespersonCode": self.index("bc", "salespeoplePurchasers", "code", 13),
            "salesperson": self.index("bc", "salespeoplePurchasers", "code", 13),
            "baseUnitOfMeasureCode": self.index("bc", "unitsOfMeasure", "code", 204),
            "salesCode": self.index("companion", "customerPriceGroups", "code", 6),
            "contactNumber": self.index("bc", "contacts", "number", 5050),
            "itemNumber": self.index("bc", "items", "number", 27),
        }
        terms = {"NET30": 1, "2%10NET30": 2, "NET45": 3, "NET60": 4}
        ships = {"FOB": 1, "NOCHARGE": 2}
        self.options = {
            "paymentTermsId": {r["id"]: terms.get(r["code"]) for r in self.rows("bc", "paymentTerms")},
            "shipmentMethodId": {r["id"]: ships.get(r["code"]) for r in self.rows("bc", "shipmentMethods")},
        }

    def rows(self, service: str, name: str) -> list[dict[str, Any]]:
        es = schema.entity_set(service, name)  # type: ignore[arg-type]
        return self.store.query(es, company=self.company if es.company_scoped else None)

    def index(self, service: str, name: str, prop: str, table: int) -> dict[str, str | None]:
        """BC code -> the coupled Dataverse id (lookups through couplings)."""
        crm = {c["integrationId"]: c["crmId"] for c in self.couplings if c["tableId"] == table}
        return {r[prop]: crm.get(r["id"]) for r in self.rows(service, name)}

    def bc_value(self, prop: str, dv_attr: str, row: dict[str, Any]) -> Any:
        value = row.get(prop)
        if prop in self.options:
            return self.options[prop].get(value)
        if prop in self.id_by_code and dv_attr != "productnumber":
            return self.id_by_code[prop].get(value)
        return value if value != "" else None


def dv_value(es: schema.EntitySet, attr: str, row: dict[str, Any]) -> Any:
    return row.get(f"_{attr}_value") if es.prop(f"_{attr}_value") else row.get(attr)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(a - b) <= FLOAT_TOLERANCE
    return a == b


def in_scope(m: Mapping, side: str, row: dict[str, Any], own: str) -> bool:
    """The mapping filters (docs/reconcile.md#scope-filters), restated independently of the seed."""
    company_ok = row.get("_bcbi_companyid_value") in (own, None)
    if side == "bc":
        return {
            "CUSTOMER": lambda: row["blocked"] == " ",
            "CONTACT": lambda: row["type"] == "Person" and row["companyNumber"] != "",
            "ITEM-PRODUCT": lambda: not row["blocked"],
            "RESOURCE-PRODUCT": lambda: not row["blocked"],
            "SALESPRC-PRODPRICE": lambda: (
                row["salesType"] == "Customer_x0020_Price_x0020_Group" and row["salesCode"] != ""
            ),
            "OPPORTUNITY": lambda: row["status"] in ("Not_x0020_Started", "In_x0020_Progress"),
        }.get(m.name, lambda: True)()
    return {
        "SALESPEOPLE": lambda: not row["isdisabled"] and row["islicensed"] and not row["isintegrationuser"],
        "CUSTOMER": lambda: row["statecode"] == 0 and row["customertypecode"] == 3 and company_ok,
        "CONTACT": lambda: (
            row["statecode"] == 0
            and row["_parentcustomerid_value"] is not None
            and row["__lk_parentcustomerid"] == "account"
            and company_ok
        ),
        "ITEM-PRODUCT": lambda: row["producttypecode"] == 1 and row["statecode"] == 0 and company_ok,
        "RESOURCE-PRODUCT": lambda: row["producttypecode"] == 3 and row["statecode"] == 0 and company_ok,
        "CUSTPRCGRP-PRICE": lambda: company_ok,
        "OPPORTUNITY": lambda: company_ok,
        "POSTEDSALESINV-INV": lambda: company_ok,
    }.get(m.name, lambda: True)()


def derive(world: World, m: Mapping) -> tuple[dict[tuple, dict[str, Any]], int]:
    """Category of every coupling and in-scope uncoupled row: {(category, bc_id, dv_id): details}, in_sync count."""
    es_bc = schema.entity_set(m.bc_service, m.bc_set)  # type: ignore[arg-type]
    es_dv = schema.entity_set("dataverse", m.dv_set)
    bc = {r["id"]: r for r in world.rows(m.bc_service, m.bc_set)}
    dv = {r[m.dv_key]: r for r in world.rows("dataverse", m.dv_set)}
    couplings = world.by_table[m.table_id]
    by_bc, by_dv = Counter(c["integrationId"] for c in couplings), Counter(c["crmId"] for c in couplings)
    fields = [f for f in m.fields if f.bc and f.dv and not f.const]
    mod = es_bc.modified_prop
    out: dict[tuple, dict[str, Any]] = {}
    in_sync = 0
    for c in couplings:
        b, d = bc.get(c["integrationId"]), dv.get(c["crmId"])
        failed = "Failure" in (c["lastSynchResult"], c["lastSynchCrmResult"])
        if b is None:
            key = ("coupled_missing_bc", c["integrationId"], c["crmId"])
        elif d is None:
            key = ("coupled_missing_dataverse", c["integrationId"], c["crmId"])
        elif by_bc[c["integrationId"]] > 1:
            key = ("duplicate_coupling", c["integrationId"], None)
        elif by_dv[c["crmId"]] > 1:
            key = ("duplicate_coupling", None, c["crmId"])
        elif not (in_scope(m, "bc", b, world.own) and in_scope(m, "dataverse", d, world.own)):
            key = ("out_of_scope", c["integrationId"], c["crmId"])
        elif c["skipped"] and failed:
            key = ("skipped", c["integrationId"], c["crmId"])
        elif failed:
            key = ("failed", c["integrationId"], c["crmId"])
        else:
            diffs = [
                (f.bc, f.dv, f.direction)
                for f in fields
                if not same(world.bc_value(f.bc, f.dv, b), dv_value(es_dv, f.dv, d))  # type: ignore[arg-type]
            ]
            bc_mod = bool(mod) and b[mod] > c["lastSynchModifiedOn"]
            dv_mod = d["modifiedon"] > c["lastSynchCrmModifiedOn"]
            names = sorted({(x, y) for x, y, _ in diffs})
            if not diffs:
                in_sync += 1
                continue
            if bc_mod and dv_mod:
                assert m.direction == BIDI and any(dr == BIDI for *_, dr in diffs), (m.name, c)
                key, side = ("conflict", c["integrationId"], c["crmId"]), "both"
            elif bc_mod or dv_mod:
                key, side = ("pending", c["integrationId"], c["crmId"]), "bc" if bc_mod else "dataverse"
            else:
                key, side = ("drift", c["integrationId"], c["crmId"]), None
            out[key] = {"fields": names, "changed_side": side}
            continue
        out.setdefault(key, {})
    coupled_bc, coupled_dv = set(by_bc), set(by_dv)
    for i, r in bc.items():
        if i not in coupled_bc and in_scope(m, "bc", r, world.own):
            out[("uncoupled_bc", i, None)] = {}
    for i, r in dv.items():
        if i not in coupled_dv and in_scope(m, "dataverse", r, world.own):
            out[("uncoupled_dataverse", None, i)] = {}
    return out, in_sync


def check_manifest(store: Store, manifest: dict[str, Any]) -> None:
    """Counts, and per mapping: planted problems == derived categories (precision and recall 1.0)."""
    world = World(store, manifest)
    for key, n in manifest["counts"].items():
        service, name = key.split("/")
        es = schema.entity_set(service, name)  # type: ignore[arg-type]
        assert store.count(es, company=world.company if es.company_scoped else None) == n, key
    for m in MAPPINGS:
        derived, in_sync = derive(world, m)
        planted = {
            (p["category"], p["bc_id"], p["dataverse_id"]): p
            for p in manifest["problems"]
            if p["mapping"] == m.name
        }
        assert set(derived) == set(planted), (m.name, set(derived) ^ set(planted))
        assert in_sync > 0, m.name
        for key, p in planted.items():
            if key[0] in ("drift", "conflict", "pending"):
                fields = sorted((f["bc"], f["dataverse"]) for f in p["fields"])
                assert derived[key]["fields"] == fields, p["id"]
                assert derived[key]["changed_side"] == p["changed_side"], p["id"]


def test_same_scale_gives_identical_manifest_and_rows(tmp_path: Path):
    a, b = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    ma, mb = seed(a), seed(b)
    assert json.dumps(ma, sort_keys=True) == json.dumps(mb, sort_keys=True)
    for es in schema.all_entity_sets():
        company = ma["company"]["id"] if es.company_scoped else None
        assert a.query(es, company=company) == b.query(es, company=company), es.name


def test_manifest_is_the_truth_about_the_store(seeded):
    store, manifest = seeded
    check_manifest(store, manifest)


def test_every_mapping_has_every_applicable_category(seeded):
    _, manifest = seeded
    planted = Counter((p["mapping"], p["category"]) for p in manifest["problems"])
    assert manifest["mappings"] == [m.name for m in MAPPINGS]
    for m in MAPPINGS:
        applicable = manifest["applicable"][m.name]
        assert ("conflict" in applicable) == (m.direction == BIDI)
        for category in applicable:
            assert planted[(m.name, category)] >= 1, (m.name, category)
        assert all(c in applicable for (name, c) in planted if name == m.name)


def test_planted_rows_and_couplings_exist_or_are_absent_as_stated(seeded):
    store, manifest = seeded
    world = World(store, manifest)
    by_id = {c["id"]: c for c in world.couplings}
    maps = {m.name: m for m in MAPPINGS}
    for p in manifest["problems"]:
        m = maps[p["mapping"]]
        bc_es, dv_es = schema.entity_set(m.bc_service, m.bc_set), schema.entity_set("dataverse", m.dv_set)
        bc = store.get(bc_es, p["bc_id"], world.company) if p["bc_id"] else None  # type: ignore[arg-type]
        dv = store.get(dv_es, p["dataverse_id"]) if p["dataverse_id"] else None  # type: ignore[arg-type]
        couplings = [by_id[i] for i in p["coupling_ids"]]
        category = p["category"]
        if category == "coupled_missing_bc":
            assert bc is None and dv is not None
        elif category == "coupled_missing_dataverse":
            assert bc is not None and dv is None
        elif category == "duplicate_coupling":
            assert len(couplings) == 2
        elif category.startswith("uncoupled"):
            assert not couplings and (bc or dv)
        else:
            assert bc is not None and dv is not None and len(couplings) == 1
        if category in ("skipped", "failed"):
            c = couplings[0]
            assert c["skipped"] == (category == "skipped")
            job = c["lastSynchCrmJobId"] if p["changed_side"] == "bc" else c["lastSynchJobId"]
            errors = store.query(
                schema.COMPANION["integrationSynchJobErrors"],
                where='"integrationSynchJobId" = ?',
                params=[job],
                company=world.company,
            )
            assert errors, p["id"]


def test_job_log_is_consistent(seeded):
    store, manifest = seeded
    world = World(store, manifest)
    jobs = world.rows("companion", "integrationSynchJobs")
    errors = Counter(e["integrationSynchJobId"] for e in world.rows("companion", "integrationSynchJobErrors"))
    assert {j["integrationTableMappingName"] for j in jobs} == {m.name for m in MAPPINGS if m.job_every_min}
    assert all(j["failed"] == errors[j["id"]] for j in jobs)
    assert all(j["startDateTime"] < j["finishDateTime"] <= manifest["now"] for j in jobs)
    assert sum(1 for j in jobs if j["failed"]) > 0
    assert len(world.rows("companion", "integrationTableMappings")) == 12


def test_sandbox_fixture_manifest_matches_its_store(sandbox, tmp_path: Path):
    """The fixture is shared and other tests write to it, so its live store is compared by identity (the
    company) and its manifest by value: it is exactly the manifest of a fresh seed at the same scale, whose
    store the truth check above covers."""
    info = sandbox.info()
    manifest = json.loads(Path(info["manifest"]).read_text())
    fresh = Store(tmp_path / "fresh.db")
    assert manifest == json.loads(json.dumps(seed(fresh, scale=manifest["scale"])))
    check_manifest(fresh, manifest)
    live = Store(Path(info["data_dir"]) / "sandbox.db")
    try:
        company = live.get(schema.BC["companies"], manifest["company"]["id"])
        assert company is not None and company["name"] == manifest["company"]["name"]
        own = live.get(schema.DATAVERSE["bcbi_companies"], manifest["company"]["bcbi_companyid"])
        assert own is not None and own["bcbi_externalid"] == manifest["company"]["id"]
    finally:
        live.close()


@pytest.mark.slow
def test_scale_20000_counts(tmp_path: Path):
    store = Store(tmp_path / "big.db")
    started = time.monotonic()
    manifest = seed(store, scale=20_000)
    elapsed = time.monotonic() - started
    counts = manifest["counts"]
    assert 19_000 <= counts["bc/customers"] <= 21_000
    assert counts["bc/contacts"] > 45_000 and counts["bc/salesInvoices"] >= 20_000
    assert counts["bc/salesInvoiceLines"] >= counts["bc/salesInvoices"]
    per = Counter((p["mapping"], p["category"]) for p in manifest["problems"])
    assert per[("CUSTOMER", "drift")] >= 50  # ~0.5 % of the customers
    print(f"seed scale=20000: {elapsed:.1f} s")  # reported, never asserted
