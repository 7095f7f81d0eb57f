"""``d365kit demo`` end to end on a fresh sandbox of its own: round trip, notebooks, report, index path last;
exit status 1 when a notebook failed, the others still reported. (``make demo`` runs all four notebooks;
this test runs the sync-health one and a broken one to stay fast.)"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from d365kit.report import default_notebooks

ROOT = Path(__file__).resolve().parents[1]
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")


def test_demo_reports_every_notebook_and_fails_when_one_fails(tmp_path, capsys, monkeypatch):
    broken = tmp_path / "00_broken.ipynb"
    nbformat.write(
        new_notebook(
            cells=[
                new_code_cell('profile = "sandbox"', metadata={"tags": ["parameters"]}),
                new_code_cell('raise RuntimeError("planted failure")'),
            ],
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        ),
        broken,
    )
    health = ROOT / "notebooks" / "04_sync_health.ipynb"
    before = os.environ.get("D365KIT_SANDBOX_DIR")
    monkeypatch.chdir(tmp_path)  # the demo finds the checkout's notebooks from anywhere
    assert [p.stem for p in default_notebooks()][-1] == "04_sync_health"

    from d365kit.demo import run_demo

    code = run_demo(out_dir=tmp_path / "report", notebooks=[broken, health])
    out, err = capsys.readouterr()
    assert code == 1
    assert "[sandbox] started" in out and "[write] BC customer" in out
    assert "04_sync_health.ipynb: ok" in out
    assert "00_broken.ipynb: failed" in err and "RuntimeError: planted failure" in err
    assert "FAILED:      00_broken.ipynb" in out
    index = Path(out.strip().splitlines()[-1])  # the index path is the last line
    assert index == (tmp_path / "report" / "index.html").resolve() and index.exists()
    assert "1 of 2 notebooks ran, 1 failed" in index.read_text()
    assert not JWT.search(out + err)
    assert os.environ.get("D365KIT_SANDBOX_DIR") == before  # the demo's sandbox dir does not leak out
