"""The demo's round trip, against the session sandbox, with a hostile global CA bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from d365kit.demo import round_trip
from d365kit.odata.session import PinnedSession


def test_round_trip_survives_a_foreign_requests_ca_bundle(sandbox, monkeypatch, tmp_path, capsys):
    foreign = tmp_path / "elsewhere.pem"
    foreign.write_bytes(Path(requests.certs.where()).read_bytes())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(foreign))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(foreign))

    info = sandbox.info()
    # A plain session is overridden by the environment and no longer trusts the sandbox ...
    plain = requests.Session()
    plain.verify = info["ca_bundle"]
    with pytest.raises(requests.exceptions.SSLError):
        plain.get(f"{info['authority']}/v2.0/.well-known/openid-configuration", timeout=10)
    # ... the pinned one keeps its CA.
    pinned = PinnedSession(verify=info["ca_bundle"])
    assert pinned.get(f"{info['authority']}/v2.0/.well-known/openid-configuration", timeout=10).ok

    figures = round_trip(info)
    assert figures["customers"] > 0 and figures["accounts"] > 0 and figures["pages"] >= 1
    out = capsys.readouterr().out
    assert info["client_secret"] not in out
