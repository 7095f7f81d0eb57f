"""Partitioned parallel reads (``to_frame(parallel=N)``) return exactly the rows of a sequential read."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest

from d365kit.dataverse import createdon_cuts, createdon_ranges
from d365kit.errors import TransportError
from d365kit.odata.parallel import merge_threaded
from d365kit.odata.query import Q, Query

PAGE = 7  # small pages, so a few dozen rows make several partitions of several pages each


def _by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("accountid", ignore_index=True)


@pytest.fixture(scope="module")
def batch(ws):
    """120 accounts from one CreateMultiple (one transaction, so many share a createdon millisecond)."""
    marker = f"ptest-{uuid.uuid4().hex[:8]}"
    rows = [
        {"name": f"{marker} {i:03d}", "revenue": float(i), "telephone1": f"+1 555 {i:04d}"}
        for i in range(120)
    ]
    ids = ws.dataverse.create_multiple("accounts", rows, chunk_size=len(rows))
    yield marker, set(ids)
    for key in ids:
        ws.dataverse.delete("accounts", key)


def test_whole_table_parallel_equals_sequential(ws, batch):
    dv = ws.dataverse
    assert len(dv.createdon_partitions("accounts", Query(), 4, sample_size=PAGE)) == 4, (
        "the read must be split"
    )
    sequential = dv.to_frame("accounts", page_size=PAGE)
    parallel = dv.to_frame("accounts", page_size=PAGE, parallel=4)
    assert parallel["accountid"].is_unique
    assert set(parallel["accountid"]) == set(sequential["accountid"])
    pd.testing.assert_frame_equal(_by_id(parallel), _by_id(sequential))


@pytest.mark.parametrize("scratch", [True, False], ids=["batch-by-name", "active-accounts"])
def test_filter_and_select_parallel_equals_sequential(ws, batch, scratch):
    marker, ids = batch
    where = Q.startswith("name", marker) if scratch else Q.eq("statecode", 0)
    query = Query().with_select("name", "revenue", "telephone1", "createdon").where(where)
    assert len(ws.dataverse.createdon_partitions("accounts", query, 4, sample_size=PAGE)) > 1
    sequential = ws.dataverse.to_frame("accounts", query, page_size=PAGE)
    parallel = ws.dataverse.to_frame("accounts", query, page_size=PAGE, parallel=4)
    pd.testing.assert_frame_equal(_by_id(parallel), _by_id(sequential))
    if scratch:
        assert set(parallel["accountid"]) == ids


def test_rows_on_a_cut_are_read_exactly_once(ws, batch):
    marker, ids = batch
    query = Query().with_select("name", "createdon").where(Q.startswith("name", marker))
    frame = ws.dataverse.to_frame("accounts", query)
    counts = frame["createdon"].value_counts()
    tied = counts[counts > 1].index
    # 120 inserts in one transaction take well under 120 ms, so some rows share a millisecond.
    assert len(tied) > 0, "the batch has no rows with identical createdon to cut at"
    cuts = sorted({t.to_pydatetime() for t in tied[:3]} | {frame["createdon"].max().to_pydatetime()})
    parts = [
        ws.dataverse.to_frame("accounts", query.where(r), page_size=PAGE) for r in createdon_ranges(cuts)
    ]
    together = pd.concat(parts, ignore_index=True)
    assert together["accountid"].is_unique
    assert set(together["accountid"]) == ids
    assert all(len(p) for p in parts[1:]), "each range after the first starts at a cut held by a row"


def test_cuts_are_sample_quantiles_and_ranges_are_half_open():
    sample = ["2026-01-01T00:00:00.000Z"] * 4 + [None, "2026-01-03T00:00:00Z", "2026-01-02T12:00:00.500Z"]
    cuts = createdon_cuts(sample, 4)
    assert cuts == [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, 12, 0, 0, 500_000, tzinfo=UTC)]
    assert createdon_cuts([], 4) == [] and createdon_cuts(sample, 1) == []
    assert [str(f) for f in createdon_ranges(cuts)] == [
        "(createdon lt 2026-01-01T00:00:00.000Z) or (createdon eq null)",
        "(createdon ge 2026-01-01T00:00:00.000Z) and (createdon lt 2026-01-02T12:00:00.500Z)",
        "createdon ge 2026-01-02T12:00:00.500Z",
    ]


def test_overlapping_partitions_raise(ws, monkeypatch):
    overlapping = [Q.ge("createdon", datetime(2000, 1, 1, tzinfo=UTC))] * 2
    monkeypatch.setattr(ws.dataverse, "createdon_partitions", lambda *a, **k: overlapping)
    with pytest.raises(TransportError, match="overlapped"):
        ws.dataverse.to_frame("accounts", page_size=PAGE, parallel=2)


def test_parallel_refuses_orderby_and_top(ws):
    for query in (Query().order_by("name"), Query().limit(5)):
        with pytest.raises(ValueError, match="parallel=1"):
            ws.dataverse.to_frame("accounts", query, parallel=2)


def test_merge_threaded_reraises_and_stops_the_other_sources():
    produced = itertools.count()
    last = {"n": 0}

    def endless():
        for n in produced:
            last["n"] = n
            time.sleep(0.001)
            yield n

    def failing():
        yield -1
        raise RuntimeError("partition failed")

    with pytest.raises(RuntimeError, match="partition failed"):
        for _ in merge_threaded([endless, failing], workers=2):
            pass
    stopped_at = last["n"]
    time.sleep(0.2)
    assert last["n"] <= stopped_at + 1, "the endless source kept running after the consumer left"
    assert not [t for t in threading.enumerate() if t.name.startswith("d365kit-read")]


def test_merge_threaded_yields_every_item_of_every_source():
    sources = [lambda i=i: range(i * 100, i * 100 + 50) for i in range(5)]
    assert sorted(merge_threaded(sources, workers=2)) == sorted(
        x for i in range(5) for x in range(i * 100, i * 100 + 50)
    )
