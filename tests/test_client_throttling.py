"""Under service protection scaled to trip in seconds, big reads and bulk writes still complete exactly."""

from __future__ import annotations

import logging
import uuid

import pytest

import d365kit
from d365kit.odata.query import Q, Query
from d365kit.profiles import sandbox_profile
from d365kit.sandbox.server import Sandbox


@pytest.fixture(scope="module")
def throttled(tmp_path_factory):
    """A private sandbox (this module fills it with 12,000 rows) and a workspace on it."""
    data_dir = tmp_path_factory.mktemp("throttled")
    with Sandbox(data_dir) as sbx:
        mp = pytest.MonkeyPatch()
        mp.setenv("D365KIT_SANDBOX_DIR", str(data_dir))
        ws = d365kit.connect(sandbox_profile())
        mp.undo()
        yield sbx, ws


def test_10000_row_read_and_2000_row_bulk_write_complete_exactly_under_429s(throttled, caplog):
    sbx, ws = throttled
    tag = uuid.uuid4().hex[:8]
    ids = [str(uuid.uuid4()) for _ in range(10_000)]
    rows = [{"accountid": i, "name": f"{tag} {n:05d}", "creditlimit": float(n)} for n, i in enumerate(ids)]
    assert ws.dataverse.create_multiple("accounts", rows, chunk_size=1000) == ids  # unlimited: set-up

    sbx.knobs.update(limits="realistic", limits_scale=0.005)  # 30 requests per 1.5 s per principal
    caplog.set_level(logging.WARNING, logger="d365kit.odata")
    try:
        query = Query().with_select("accountid", "name", "creditlimit").where(Q.startswith("name", tag))
        frame = ws.dataverse.to_frame("accounts", query, page_size=100)
        assert len(frame) == 10_000 and frame["accountid"].is_unique
        assert set(frame["accountid"]) == set(ids)
        assert (
            frame.set_index("accountid").loc[ids, "creditlimit"].to_numpy()
            == [float(n) for n in range(10_000)]
        ).all()

        new = [str(uuid.uuid4()) for _ in range(2_000)]
        created = ws.dataverse.create_multiple(
            "contacts",
            [{"contactid": i, "firstname": tag, "lastname": f"L{n:04d}"} for n, i in enumerate(new)],
            chunk_size=50,
        )
        assert created == new
    finally:
        sbx.knobs.update(limits="unlimited", limits_scale=1.0)
    contacts = ws.dataverse.to_frame(
        "contacts", Query().with_select("contactid", "lastname").where(Q.eq("firstname", tag))
    )
    assert len(contacts) == 2_000 and set(contacts["contactid"]) == set(new)
    assert sorted(contacts["lastname"]) == [f"L{n:04d}" for n in range(2_000)]

    retries = [r.getMessage() for r in caplog.records if "answered 429" in r.getMessage()]
    assert retries, "the retries must be visible in the log"
    assert all("Retry-After" in m for m in retries)
    assert ws.dataverse.session.stats["throttled"] == len(retries)
