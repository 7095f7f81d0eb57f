"""The write benchmark (bench/write.py) at a tiny size, against a sandbox of its own: every update lands.

Correctness only, never speed: d365kit's records are in sync afterwards (a fresh reconcile) and Dataverse
holds the last values each contender wrote."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from d365kit.odata.query import Guid, Q, Query

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def write(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("bench.write")


def _line2(ws, dataverse_ids: list[str]) -> dict[str, str]:
    query = Query(
        select=("accountid", "address1_line2"), filter=Q.any_of("accountid", map(Guid, dataverse_ids))
    )
    frame = ws.dataverse.to_frame("accounts", query)
    return dict(zip(frame["accountid"].str.lower(), frame["address1_line2"], strict=True))


def test_write_bench_lands_every_update_at_a_tiny_size(write, tmp_path):
    from bench.context import BenchContext

    bed = write.open_bed(tmp_path, records=40, loop_records=8)
    try:
        cases = write.measure(BenchContext(repeats=1, warmup=0, workdir=tmp_path), bed, profile=False)
        recs = bed.ws.reconcile(write.MAPPING, progress=False).records
        mine = recs[recs["bc_id"].astype("string").str.lower().isin(set(bed.records["bc_id"].str.lower()))]
        assert len(mine) == 40 and set(mine["category"]) == {"in_sync"}

        held = _line2(bed.ws, list(bed.records["dataverse_id"]))
        wanted = {
            dv.lower(): write.bc_values(bed.written["d365kit"], i)["addressLine2"]
            for i, dv in enumerate(bed.records["dataverse_id"])
        }
        assert held == wanted
        held = _line2(bed.ws, list(bed.loop["dataverse_id"]))
        wanted = {
            dv.lower(): write.loop_values(bed.written["loop"], i)["address1_line2"]
            for i, dv in enumerate(bed.loop["dataverse_id"])
        }
        assert held == wanted
    finally:
        bed.close()
    speed, limited = cases
    assert [m.work for m in speed.candidates] == [8, 40] and [m.work for m in limited.candidates] == [40]
    assert speed.best.label == "d365kit apply"  # the most updates/s, whatever the seconds
    assert all(len(m.seconds) == 1 for case in cases for m in case.candidates)
