"""Planning a selective sync: refused directions (naming mapping and field), only the changed fields,
the conflict policies, each category's operation, dependency order, and the plan's frames.

Plans read but never write; the module's own sandbox keeps the seed pristine for the records it names."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import private_sandbox
from sync_raw import Raw

from d365kit.errors import SyncDirectionError, SyncPlanError
from d365kit.mapping import load_catalog
from d365kit.sync import SyncPlan
from d365kit.sync.model import IN_SYNC, Operation
from d365kit.sync.order import dependency_order
from d365kit.sync.plan import decide
from d365kit.sync.rules import filter_defaults
from d365kit.sync.values import bc_json, dv_json

CATALOG = load_catalog()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("sync-plan")
    with private_sandbox(data_dir) as (sbx, ws):
        raw = Raw(sbx.info())
        results = {name: ws.reconcile(name, progress=False) for name in ("CUSTOMER", "CONTACT")}
        yield ws, raw, results
        raw.close()


def one(result, category: str) -> pd.Series:
    rows = result.to_frame(category)
    assert len(rows), category
    return rows.iloc[0]


# -- refusing what the mapping forbids -------------------------------------------------------------------


def test_a_direction_the_mapping_forbids_is_refused_naming_mapping_and_field_before_any_request(pristine):
    ws, raw, _ = pristine
    before = raw.stats()["requests"]
    with pytest.raises(
        SyncDirectionError,
        match=r"mapping CURRENCY syncs to_dataverse only.*field Code \(code -> isocurrencycode",
    ):
        ws.plan_sync("CURRENCY", direction="from_dataverse")
    with pytest.raises(
        SyncDirectionError,
        match=r"mapping CUSTOMER, field Credit Limit \(LCY\) \(creditLimit -> creditlimit\) syncs to_dataverse only",
    ):
        ws.plan_sync("CUSTOMER", direction="from_dataverse", fields=["creditlimit"])
    with pytest.raises(SyncDirectionError, match="mapping SALESPEOPLE syncs from_dataverse only"):
        ws.plan_sync(["CUSTOMER", "SALESPEOPLE"], direction="to_dataverse")
    assert raw.stats()["requests"] == before  # refused before reading anything


def test_invoice_lines_are_never_planned_alone(pristine):
    ws, _, _ = pristine
    with pytest.raises(
        SyncPlanError, match="POSTEDSALESLINE-INV: these rows sync with their parent.*plan POSTEDSALESINV-INV"
    ):
        ws.plan_sync("POSTEDSALESLINE-INV")


def test_bad_options_are_refused(pristine):
    ws, _, results = pristine
    with pytest.raises(SyncPlanError, match="conflict must be one of"):
        ws.plan_sync(results["CUSTOMER"], conflict="newest_wins")
    with pytest.raises(SyncPlanError, match="unknown categories"):
        ws.plan_sync(results["CUSTOMER"], categories=["drifted"])
    with pytest.raises(SyncPlanError, match="no field 'faxnumber'"):
        ws.plan_sync(results["CUSTOMER"], fields=["faxnumber"])


# -- what each record becomes --------------------------------------------------------------------------


def test_an_update_writes_only_the_changed_mapped_fields_with_before_and_after(pristine):
    ws, _, results = pristine
    for name, field, bc_field in (
        ("CUSTOMER", "telephone1", "phoneNumber"),
        ("CONTACT", "telephone1", "phoneNumber"),
    ):
        drift = one(results[name], "drift")
        values = results[name].values.set_index("coupling_id").loc[drift["coupling_id"]]
        plan = ws.plan_sync(results[name], records=[drift["bc_id"]], direction="to_dataverse", progress=False)
        (op,) = plan.operations
        assert (op.kind, op.direction, op.fields) == ("update", "to_dataverse", (field,))
        assert op.body == {field: values["bc_value"]} and op.after == {field: values["bc_value"]}
        assert op.before == {field: values["dataverse_value"]}
        assert op.etag and op.dataverse_id == drift["dataverse_id"] and op.coupling_id == drift["coupling_id"]
        back = ws.plan_sync(
            results[name], records=[drift["bc_id"]], direction="from_dataverse", progress=False
        )
        (op,) = back.operations
        assert (op.fields, op.after, op.before) == (
            (bc_field,),
            {bc_field: values["dataverse_value"]},
            {bc_field: values["bc_value"]},
        )
        assert op.target_set == results[name].mapping.bc_entity and op.etag.startswith('W/"')


def test_a_drift_without_a_direction_asks_for_one(pristine):
    ws, _, results = pristine
    drift = one(results["CUSTOMER"], "drift")
    (op,) = ws.plan_sync(results["CUSTOMER"], records=[drift["bc_id"]], progress=False).operations
    assert op.kind == "skip" and "pass direction=" in op.reason


def test_conflict_policies_are_bc_update_conflict_options(pristine):
    ws, _, results = pristine
    conflict = one(results["CUSTOMER"], "conflict")
    values = results["CUSTOMER"].values.set_index("coupling_id").loc[conflict["coupling_id"]]
    picked = {}
    for policy in ("skip", "bc_wins", "dataverse_wins"):
        (op,) = ws.plan_sync(
            results["CUSTOMER"], categories=["conflict"], conflict=policy, progress=False
        ).operations
        picked[policy] = (op.kind, op.direction, dict(op.after))
    assert picked["skip"] == ("skip", None, {})
    assert picked["bc_wins"] == ("update", "to_dataverse", {"telephone1": values["bc_value"]})
    assert picked["dataverse_wins"] == (
        "update",
        "from_dataverse",
        {"phoneNumber": values["dataverse_value"]},
    )
    # an explicit direction does not decide conflicts: the policy does
    (op,) = ws.plan_sync(
        results["CUSTOMER"], categories=["conflict"], direction="to_dataverse", progress=False
    ).operations
    assert op.kind == "skip" and "conflict='skip'" in op.reason


def test_every_category_becomes_its_operation(pristine):
    ws, _, results = pristine
    result = results["CONTACT"]
    plan = ws.plan_sync(result, progress=False)
    by_category = plan.to_frame().groupby("category")["kind"].agg(lambda k: sorted(set(k)))
    assert by_category.to_dict() == {
        "conflict": ["skip"],
        "coupled_missing_bc": ["uncouple"],
        "coupled_missing_dataverse": ["uncouple"],
        "drift": ["skip"],
        "duplicate_coupling": ["skip"],
        "failed": ["update"],
        "out_of_scope": ["skip"],
        "pending": ["update"],
        "skipped": ["update"],
        "uncoupled_bc": ["couple", "create"],
        "uncoupled_dataverse": ["create"],
    }
    assert len(plan) == (result.records["category"] != "in_sync").sum() - 1  # a matched pair is one couple
    creates = [op for op in plan if op.kind == "create"]
    for op in creates:  # the new row's id and its coupling's id are chosen now, and sent in the body
        key = "contactid" if op.direction == "to_dataverse" else "id"
        assert op.body[key] == op.target_id and op.coupling_id
    to_dv = next(op for op in creates if op.direction == "to_dataverse")
    assert to_dv.after["_parentcustomerid_value"] and to_dv.body[
        "parentcustomerid_account@odata.bind"
    ].startswith("/accounts(")
    from_dv = next(op for op in creates if op.direction == "from_dataverse")
    assert from_dv.after["type"] == "Person" and from_dv.after["companyNumber"]
    pending = [op for op in plan if op.category == "pending"]
    assert {op.direction for op in pending} == {
        "to_dataverse",
        "from_dataverse",
    }  # from the side that changed


def test_in_sync_records_named_explicitly_are_skipped_as_unchanged(pristine):
    ws, _, results = pristine
    record = one(results["CUSTOMER"], "in_sync")
    (op,) = ws.plan_sync(results["CUSTOMER"], records=[record["coupling_id"]], progress=False).operations
    assert (op.kind, op.reason) == ("skip", IN_SYNC)


# -- frames and files ------------------------------------------------------------------------------------


def test_plan_frames_summary_and_file_round_trip(pristine, tmp_path):
    ws, _, results = pristine
    plan = ws.plan_sync(results["CUSTOMER"], progress=False)
    frame = plan.to_frame()
    assert list(frame.columns[:4]) == ["op_id", "mapping", "kind", "direction"] and len(frame) == len(plan)
    assert frame["reason"].str.len().gt(0).all()
    long = plan.to_frame(long=True)
    assert len(long) == sum(max(len(op.after), 1) for op in plan)
    summary = plan.summary()
    assert summary["operations"].sum() == len(plan) and list(summary["kind"]) == sorted(
        summary["kind"], key=["create", "update", "couple", "uncouple", "skip"].index
    )
    assert "<table" in plan._repr_html_()
    again = SyncPlan.load(plan.save(tmp_path / "plan.json"))
    assert [op.to_json() for op in again] == [op.to_json() for op in plan]
    assert Operation.from_json(plan.operations[0].to_json()) == plan.operations[0]


# -- pure rules ------------------------------------------------------------------------------------------


def test_dependency_order_follows_lookups_dependencies_and_code_links():
    names = [
        "POSTEDSALESLINE-INV",
        "CONTACT",
        "POSTEDSALESINV-INV",
        "CUSTOMER",
        "ITEM-PRODUCT",
        "CURRENCY",
        "SALESPEOPLE",
    ]
    order = dependency_order(CATALOG, names)
    assert sorted(order) == sorted(names)
    before = {(a, b) for i, a in enumerate(order) for b in order[i + 1 :]}
    for first, then in [
        ("CURRENCY", "CUSTOMER"),
        ("SALESPEOPLE", "CUSTOMER"),
        ("CUSTOMER", "CONTACT"),
        ("ITEM-PRODUCT", "POSTEDSALESLINE-INV"),
        ("POSTEDSALESINV-INV", "POSTEDSALESLINE-INV"),
        ("CUSTOMER", "POSTEDSALESINV-INV"),
    ]:
        assert (first, then) in before, (first, then, order)


def _records(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {
        "bc_id": [f"b{i}" for i in range(n)],
        "dataverse_id": [f"d{i}" for i in range(n)],
        "changed_side": [None] * n,
        "fields": [()] * n,
        "reason": [""] * n,
        "match_id": [None] * n,
        "match_score": [None] * n,
    }
    return pd.DataFrame({**base, **columns})


def test_decide_directions_by_side_mapping_and_fields():
    customer, currency = CATALOG["CUSTOMER"], CATALOG["CURRENCY"]
    recs = _records(
        category=["pending", "pending", "drift", "drift", "pending"],
        changed_side=["bc", "dataverse", None, None, "both"],
        fields=[("name",), ("name",), ("name",), ("creditlimit",), ("creditlimit",)],
    )
    out = decide(customer, recs, pd.DataFrame(), None, "skip")
    assert list(out["intent"]) == ["update", "update", "skip", "update", "update"]
    assert list(out["direction"]) == ["to_dataverse", "from_dataverse", None, "to_dataverse", "to_dataverse"]
    forced = decide(customer, recs, pd.DataFrame(), "from_dataverse", "skip")
    assert list(forced["direction"])[:3] == ["from_dataverse"] * 3 and "overrides" in forced["reason"][0]
    own = decide(currency, _records(category=["drift", "uncoupled_dataverse"]), pd.DataFrame(), None, "skip")
    assert list(own["intent"]) == ["update", "skip"] and own["direction"][0] == "to_dataverse"
    assert "syncs to_dataverse only" in own["reason"][1]


def test_decide_couples_only_unambiguous_exact_matches():
    m = CATALOG["CUSTOMER"]
    recs = _records(
        category=["uncoupled_bc", "uncoupled_bc", "uncoupled_bc"],
        match_id=["x", "y", "z"],
        match_score=[100.0, 100.0, 91.0],
    )
    candidates = pd.DataFrame(
        {
            "bc_id": ["b0", "b1", "b1", "b2"],
            "dataverse_id": ["x", "y", "w", "z"],
            "score": [100.0, 100.0, 100.0, 91.0],
            "ambiguous": [False, True, True, False],
        }
    )
    out = decide(m, recs, candidates, None, "skip")
    assert list(out["intent"]) == ["couple", "create", "create"]
    assert "91 < 100" in out["reason"][2]


def test_filter_defaults_make_new_rows_land_in_scope():
    assert filter_defaults("statecode eq 0 and customertypecode eq 3") == {"customertypecode": 3}
    assert filter_defaults("type eq 'Person' and companyNumber ne ''") == {"type": "Person"}
    assert filter_defaults("blocked eq false") == {"blocked": False}
    assert filter_defaults("status eq 'Open' or status eq 'Paid'") == {}
    assert filter_defaults("name eq 'O''Brien'") == {"name": "O'Brien"}


def test_values_become_what_each_api_takes():
    text = pd.Series(["a", "", None, "  "], dtype="string")
    assert list(dv_json(text, "Edm.String")) == ["a", None, None, None]  # Dataverse stores blank text as null
    assert list(bc_json(text, "Edm.String")) == ["a", "", "", "  "]  # BC has no null text
    numbers = pd.Series([1.5, None], dtype="float64")
    assert list(dv_json(numbers, "Edm.Decimal")) == [1.5, None] and list(bc_json(numbers, "Edm.Decimal")) == [
        1.5,
        0.0,
    ]
    assert list(bc_json(pd.Series(["In Progress", " "], dtype="string"), "Microsoft.NAV.status")) == [
        "In_x0020_Progress",
        None,
    ]
    dates = pd.Series(pd.to_datetime(["2026-11-20", None]))
    assert list(dv_json(dates, "Edm.Date")) == ["2026-11-20", None] and list(bc_json(dates, "Edm.Date")) == [
        "2026-11-20",
        "0001-01-01",
    ]
