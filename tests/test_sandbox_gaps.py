"""Honesty about gaps: real entity sets the sandbox does not serve answer 501 naming them, unknown ones 404."""

from __future__ import annotations

import pytest
from helpers import PinnedSession, auth


@pytest.fixture(scope="module")
def http(sandbox):
    return PinnedSession(sandbox.info()["ca_bundle"])


@pytest.mark.parametrize("entity_set", ["subscriptions", "salesOrders", "vendors"])
def test_bc_unserved_entity_sets_answer_501(sandbox, http, entity_set):
    info = sandbox.info()
    r = http.get(f"{info['bc_url']}/{entity_set}", headers=auth(info, info["bc_scope"]))
    assert r.status_code == 501
    assert r.json()["error"]["code"] == "BadRequest_NotImplemented"
    assert f"'{entity_set}'" in r.json()["error"]["message"]


@pytest.mark.parametrize("entity_set", ["teams", "salesorders", "quotes"])
def test_dataverse_unserved_entity_sets_answer_501(sandbox, http, entity_set):
    info = sandbox.info()
    r = http.get(f"{info['dataverse_api_url']}/{entity_set}", headers=auth(info, info["dataverse_scope"]))
    assert r.status_code == 501 and f"'{entity_set}'" in r.json()["error"]["message"]


def test_unknown_names_are_404_on_both_services(sandbox, http):
    info = sandbox.info()
    bc = http.get(f"{info['bc_url']}/customerz", headers=auth(info, info["bc_scope"]))
    assert bc.status_code == 404 and bc.json()["error"]["code"] == "BadRequest_NotFound"
    dv = http.get(f"{info['dataverse_api_url']}/Account", headers=auth(info, info["dataverse_scope"]))
    assert dv.status_code == 404 and dv.json()["error"]["code"] == "0x8006088a"
