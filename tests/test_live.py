"""Live tests against a real tenant: skipped unless credentials are in the environment.

Set ``D365KIT_LIVE_PROFILE`` to the name of a profile in your config file (see README, "A real tenant")
and make its secret available (``secret_env`` variable or keyring). They only read.
"""

from __future__ import annotations

import os

import pytest

import d365kit
from d365kit.doctor import Doctor
from d365kit.odata.query import Query

LIVE = os.environ.get("D365KIT_LIVE_PROFILE")
pytestmark = pytest.mark.skipif(
    not LIVE, reason="set D365KIT_LIVE_PROFILE to a configured profile to run live tests"
)


@pytest.fixture(scope="module")
def live():
    return d365kit.connect(LIVE)


def test_live_doctor_reads_every_mapped_entity_set():
    findings = Doctor(LIVE).run()
    failed = [
        f
        for f in findings
        if not f.ok and f.check != "companion API" and "d365kit/integration" not in f.detail
    ]
    assert not failed, "\n".join(f"{f.check}: {f.detail} -> {f.fix}" for f in failed)


def test_live_reads_both_services(live):
    assert live.bc.companies()
    customers = live.bc.to_frame("customers", Query().with_select("id", "number", "displayName").limit(10))
    assert len(customers) <= 10 and {"id", "number"} <= set(customers.columns)
    assert live.dataverse.whoami()["UserId"]
    accounts = live.dataverse.to_frame("accounts", Query().with_select("accountid", "name").limit(10))
    assert {"accountid", "name"} <= set(accounts.columns)
