"""Issue #13 (7a): a date-time pandas cannot hold (``9999-12-31T23:59:59Z``) reads as NaT with a
``DataWarning`` naming where it was; it never sinks a frame, the coupling ledger or a mapping's reconcile."""

from __future__ import annotations

import uuid
import warnings

import pandas as pd
import pytest
from helpers import private_sandbox

from d365kit import couplings
from d365kit.frames import DataWarning, convert, rows_to_frame

FAR = "9999-12-31T23:59:59Z"
TYPES = {"id": "Edm.Guid", "at": "Edm.DateTimeOffset", "on": "Edm.Date", "name": "Edm.String"}


def _messages(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


# -- frames.convert: typed frames of both services -------------------------------------------------


def test_convert_reads_far_datetimes_as_nat_and_names_the_row():
    raw = pd.DataFrame(
        {
            "id": ["A0000000-0000-0000-0000-000000000001", "a0000000-0000-0000-0000-000000000002"],
            "at": ["2026-11-20T12:00:00Z", FAR],
            "on": ["2026-11-20", "2026-11-21"],
            "name": ["ok", "far"],
        }
    )
    with pytest.warns(DataWarning) as record:
        frame = convert(raw, TYPES, source="customers")
    assert str(frame["at"].dtype) == "datetime64[ns, UTC]"
    assert frame["at"].iloc[0] == pd.Timestamp("2026-11-20T12:00:00Z") and pd.isna(frame["at"].iloc[1])
    (message,) = _messages(record)
    assert message.startswith("customers: at: 1 value(s)")
    assert "id=a0000000-0000-0000-0000-000000000002" in message and FAR in message
    assert "a0000000-0000-0000-0000-000000000001" not in message  # only the row that was lost


def test_convert_far_dates_and_unparsable_values_warn_but_bc_blanks_do_not():
    raw = pd.DataFrame(
        {
            "accountid": ["k1", "k2", "k3", "k4"],
            "at": ["0001-01-01T00:00:00Z", None, "not a time", "1500-01-01T00:00:00Z"],
            "on": ["0001-01-01", "9999-12-31", "", None],
        }
    )
    with pytest.warns(DataWarning) as record:
        frame = convert(
            raw, {"at": "Edm.DateTimeOffset", "on": "Edm.Date"}, source="accounts", key="accountid"
        )
    assert frame["at"].isna().all() and frame["on"].isna().all()
    assert str(frame["on"].dtype) == "datetime64[ns]"  # as the frames docstring promises
    at, on = _messages(record)
    assert at.startswith("accounts: at: 2 value(s)") and "accountid=k3 'not a time'" in at and "k4" in at
    assert "k1" not in at and "k2" not in at  # BC's blank and a null say "none": no warning
    assert on.startswith("accounts: on: 1 value(s)") and "accountid=k2 '9999-12-31'" in on


def test_convert_without_a_lost_value_is_silent_and_names_five_rows_at_most():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows_to_frame([{"id": "x", "at": "2262-04-11T00:00:00Z", "on": "1677-09-22"}], TYPES)
        rows_to_frame([], TYPES, ["id", "at", "on"])
    many = [{"id": f"r{i}", "at": FAR} for i in range(8)]
    with pytest.warns(DataWarning, match=r"at: 8 value\(s\).*id=r4 .* and 3 more$"):
        rows_to_frame(many, TYPES, source="s")


# -- couplings: the ledger, from any source -----------------------------------------------------------


def test_ledger_from_a_csv_export_with_a_far_time(tmp_path):
    path = tmp_path / "couplings.csv"
    pd.DataFrame(
        {
            "CRM ID": ["{D1000000-0000-0000-0000-000000000001}", "d2"],
            "Integration ID": ["b1", "b2"],
            "Table ID": ["18", "18"],
            "Last Synch. Modified On": [FAR, "2026-11-20 10:00"],
            "Last Synch. CRM Modified On": ["2026-11-20 10:00", "0001-01-01"],
        }
    ).to_csv(path, index=False)
    with pytest.warns(DataWarning) as record:
        ledger = couplings.from_file(path)
    assert pd.isna(ledger.loc[0, "last_synch_modified_on"])
    assert ledger.loc[1, "last_synch_modified_on"] == pd.Timestamp("2026-11-20T10:00Z")
    assert ledger["last_synch_modified_on"].dtype == "datetime64[ns, UTC]"
    (message,) = _messages(record)
    assert message.startswith("couplings.csv: last_synch_modified_on: 1 value(s)")
    assert "coupling=b1:d1000000-0000-0000-0000-000000000001" in message and FAR in message


def test_normalize_takes_far_datetimes_already_typed():
    far = pd.Series([pd.Timestamp("9999-12-31T23:59:59Z"), pd.Timestamp("2026-01-01T00:00:00Z")]).astype(
        "datetime64[us, UTC]"
    )
    frame = pd.DataFrame({"coupling_id": ["c1", "c2"], "bc_id": ["b", "b"], "dataverse_id": ["d", "e"]})
    frame["last_synch_crm_modified_on"] = far
    with pytest.warns(DataWarning, match="journal: last_synch_crm_modified_on: 1 value.*coupling=c1"):
        ledger = couplings.normalize(frame, source="journal")
    assert ledger["last_synch_crm_modified_on"].isna().tolist() == [True, False]


# -- through the sandbox: the companion API, couplings() and reconcile ---------------------------------


@pytest.fixture(scope="module")
def far_coupling(tmp_path_factory):
    """A private sandbox with one CUSTOMER coupling whose BC last-sync time is 9999-12-31T23:59:59Z."""
    with private_sandbox(tmp_path_factory.mktemp("far-times")) as (sbx, ws):
        bc_id = ws.bc.create("customers", {"id": str(uuid.uuid4()), "displayName": "Far Future Ltd"})["id"]
        dv_id = ws.dataverse.create("accounts", {"name": "Far Future Ltd"})
        added = ws.bc.add_coupling(
            {"integrationId": bc_id, "crmId": dv_id, "tableId": 18, "lastSynchModifiedOn": FAR}
        )
        assert added["lastSynchModifiedOn"].startswith("9999-12-31T23:59:59")  # BC keeps it as written
        yield ws, added["id"], bc_id


def test_couplings_read_with_a_far_time_and_name_it(far_coupling):
    ws, coupling_id, _ = far_coupling
    with pytest.warns(DataWarning) as record:
        frame = ws.bc.couplings()
    (row,) = frame[frame["id"] == coupling_id].to_dict("records")
    assert pd.isna(row["lastSynchModifiedOn"])
    assert len(frame) > 1 and frame["lastSynchModifiedOn"].notna().any()  # the other couplings are intact
    (message,) = _messages(record)
    assert message.startswith("crmIntegrationRecords: lastSynchModifiedOn: 1 value(s)")
    assert f"id={coupling_id}" in message

    with pytest.warns(DataWarning, match=f"crmIntegrationRecords: lastSynchModifiedOn: .*{coupling_id}"):
        ledger = couplings.from_companion(ws.bc, table_ids=[18])
    (entry,) = ledger[ledger["coupling_id"] == coupling_id].to_dict("records")
    assert pd.isna(entry["last_synch_modified_on"])


def test_reconcile_of_the_mapping_survives_a_far_time(far_coupling):
    ws, coupling_id, bc_id = far_coupling
    with pytest.warns(DataWarning, match=coupling_id):
        result = ws.reconcile("CUSTOMER")
    records = result.to_frame()
    assert len(records) > 1 and result.summary()["records"].sum() == len(records)
    assert coupling_id in set(records["coupling_id"].dropna()) or bc_id in set(records["bc_id"].dropna())
