"""The coupling ledger: one DataFrame shape from the companion API, a CSV/Excel export and the journal."""

from __future__ import annotations

import importlib.util
import sqlite3

import pandas as pd
import pytest

from d365kit import couplings as C
from d365kit.errors import ConfigError

GUID_A = "8039929b-c80b-5383-b59c-606fe8f3e0fe"
GUID_B = "1f2915a1-b47b-5b9e-b48d-a954760b2373"
GUID_C = "3f1aa479-73a8-5f41-8f9b-a36a98966843"


def assert_ledger_shape(ledger: pd.DataFrame) -> None:
    assert list(ledger.columns) == list(C.LEDGER_COLUMNS)
    assert {c: str(t) for c, t in ledger.dtypes.items()} == C.LEDGER_COLUMNS


def test_from_companion_has_the_ledger_shape_and_filters_by_table(ws):
    every = C.from_companion(ws.bc)
    assert_ledger_shape(every)
    assert every.attrs["source"] == "companion API"
    assert every["coupling_id"].is_unique and every["bc_id"].notna().all()
    assert set(every["last_synch_crm_result"]) <= {"", "Success", "Failure"}
    customers = C.from_companion(ws.bc, [18, 13])
    assert set(customers["table_id"]) == {18, 13}
    assert len(customers) == int(every["table_id"].isin([18, 13]).sum())
    assert customers["last_synch_modified_on"].notna().all()


def test_from_file_reads_bc_captions_braced_guids_and_yes_no(tmp_path):
    path = tmp_path / "couplings.csv"
    path.write_text(
        "CRM ID,Integration ID,Table ID,Last Synch. Modified On,Last Synch. CRM Modified On,"
        "Last Synch. Result,Last Synch. CRM Result,Skipped\n"
        f"{{{GUID_B.upper()}}},{{{GUID_A.upper()}}},18,2026-11-20 11:30:00,2026-11-20T11:31:00Z,,Failure,Yes\n"
        f"{GUID_C},{GUID_A},18,,,Success,Success,No\n"
    )
    ledger = C.from_file(path)
    assert_ledger_shape(ledger)
    first = ledger.iloc[0]
    assert (first["bc_id"], first["dataverse_id"], first["table_id"]) == (GUID_A, GUID_B, 18)
    assert first["coupling_id"] == f"{GUID_A}:{GUID_B}"  # the page has no SystemId column
    assert first["last_synch_modified_on"] == pd.Timestamp("2026-11-20T11:30:00Z")
    assert first["last_synch_crm_modified_on"] == pd.Timestamp("2026-11-20T11:31:00Z")
    assert (first["last_synch_result"], first["last_synch_crm_result"], bool(first["skipped"])) == (
        "",
        "Failure",
        True,
    )
    assert pd.isna(ledger.iloc[1]["last_synch_modified_on"]) and not ledger.iloc[1]["skipped"]
    # times without an offset can be read in another timezone
    berlin = C.from_file(path, tz="Europe/Berlin")
    assert berlin.iloc[0]["last_synch_modified_on"] == pd.Timestamp("2026-11-20T10:30:00Z")
    assert C.duplicates(ledger)[["side", "id", "count"]].to_dict("records") == [
        {"side": "bc", "id": GUID_A, "count": 2}
    ]


def test_bc_blank_date_means_never_synchronized(tmp_path):
    path = tmp_path / "couplings.csv"
    path.write_text(
        "CRM ID,Integration ID,Table ID,Last Synch. Modified On,Last Synch. CRM Modified On\n"
        f"{GUID_B},{GUID_A},18,0001-01-01T00:00:00Z,2026-11-20T11:31:00Z\n"
    )
    first = C.from_file(path).iloc[0]
    assert pd.isna(first["last_synch_modified_on"])
    assert first["last_synch_crm_modified_on"] == pd.Timestamp("2026-11-20T11:31:00Z")


def test_from_file_names_missing_columns(tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("CRM ID,Integration,Table ID\nx,y,18\n")
    with pytest.raises(
        C.LedgerError, match=r"wrong.csv: no column\(s\) 'Integration ID'; expected BC's captions"
    ):
        C.from_file(path)


def test_excel_needs_openpyxl(tmp_path):
    path = tmp_path / "couplings.xlsx"
    frame = pd.DataFrame({"CRM ID": [GUID_B], "Integration ID": [GUID_A], "Table ID": [18]})
    if importlib.util.find_spec("openpyxl") is None:
        path.write_bytes(b"PK")
        with pytest.raises(ConfigError, match=r"needs the 'openpyxl' package.*pip install openpyxl"):
            C.from_file(path)
    else:
        frame.to_excel(path, index=False)
        assert C.from_file(path)[["bc_id", "dataverse_id"]].values.tolist() == [[GUID_A, GUID_B]]


def test_from_journal_reads_the_couplings_table_and_skips_removed_ones(tmp_path):
    path = tmp_path / "journal.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(C.JOURNAL_DDL)
        conn.executemany(
            "INSERT INTO couplings (coupling_id, bc_id, dataverse_id, table_id, last_synch_modified_on, "
            "last_synch_crm_result, skipped, removed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ("c1", GUID_A, GUID_B, 18, "2026-11-20T11:30:00.000Z", "Success", 0, None),
                ("c2", GUID_C, GUID_B, 18, None, "Failure", 1, None),
                ("c3", GUID_C, GUID_A, 18, None, "", 0, "2026-11-21T00:00:00.000Z"),
            ],
        )
    ledger = C.from_journal(path)
    assert_ledger_shape(ledger)
    assert ledger["coupling_id"].tolist() == ["c1", "c2"]
    assert ledger["skipped"].tolist() == [False, True]
    assert ledger["last_synch_modified_on"].iloc[0] == pd.Timestamp("2026-11-20T11:30:00Z")
    dup = C.duplicates(ledger)
    assert dup[["side", "id"]].values.tolist() == [["dataverse", GUID_B]] and dup["coupling_ids"][0] == (
        "c1",
        "c2",
    )
    with pytest.raises(C.LedgerError, match="not a d365kit journal"):
        C.from_journal(tmp_path / "missing.sqlite")


def test_duplicates_group_bc_ids_first():
    ledger = C.normalize(
        pd.DataFrame(
            {
                "coupling_id": ["c1", "c2", "c3", "c4"],
                "bc_id": [GUID_A, GUID_A, GUID_C, "b4"],
                "dataverse_id": [GUID_B, "d2", GUID_B, GUID_B],
                "table_id": [18] * 4,
            }
        )
    )
    dup = C.duplicates(ledger)
    assert dup[["side", "id"]].values.tolist() == [["bc", GUID_A], ["dataverse", GUID_B]]
    assert dup["coupling_ids"].tolist() == [("c1", "c2"), ("c3", "c4")]  # c1 is counted once, on the BC side
    assert C.duplicates(C.empty_ledger()).empty
