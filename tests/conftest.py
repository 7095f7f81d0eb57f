"""Shared fixtures: one seeded sandbox per test session, reached over HTTPS like a real tenant."""

from __future__ import annotations

import pytest

from d365kit.sandbox.server import Sandbox


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory):
    """A running, seeded sandbox (default scale) in a private data dir."""
    with Sandbox(data_dir=tmp_path_factory.mktemp("sandbox")) as sbx:
        yield sbx


@pytest.fixture()
def knobs(sandbox):
    """The sandbox's runtime knobs, restored after the test."""
    saved = sandbox.knobs.as_dict()
    yield sandbox.knobs
    sandbox.knobs.update(**saved)


@pytest.fixture(scope="session")
def ws(sandbox):
    """A Workspace on the session sandbox through the built-in ``sandbox`` profile (which attaches to it)."""
    import os

    import d365kit

    saved = os.environ.get("D365KIT_SANDBOX_DIR")
    os.environ["D365KIT_SANDBOX_DIR"] = sandbox.info()["data_dir"]
    try:
        yield d365kit.connect("sandbox")
    finally:
        if saved is None:
            os.environ.pop("D365KIT_SANDBOX_DIR", None)
        else:
            os.environ["D365KIT_SANDBOX_DIR"] = saved
