"""The HTML report in a real browser: headless Chromium opens every page from disk with networking off,
the plotly charts must be drawn (``.js-plotly-plot .main-svg``) and the console must stay silent.

Chromium is driven from the command line only (``--dump-dom`` for the DOM after the scripts ran,
``--screenshot`` for the artifact, ``--enable-logging=stderr`` for the console: every ``console.*`` call
and uncaught error is logged there as ``INFO:CONSOLE``). No browser driver package is needed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "reports" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=10000",
    "--window-size=1280,2400",
)
CONSOLE = re.compile(r"INFO:CONSOLE[^\]]*\] (.*)")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH: install it (Debian/Ubuntu: `sudo apt-get install -y chromium`; .ci/run does) "
    "to check the report in a browser",
)


class Plots(HTMLParser):
    """Counts plotly graph divs and, inside each ``js-plotly-plot``, the ``main-svg`` layers and traces."""

    def __init__(self) -> None:
        super().__init__()
        self.graph_divs = 0  # plotly-graph-div elements
        self.drawn: list[dict[str, int]] = []  # per js-plotly-plot: svg layers and trace groups
        self._depth: list[int] = []  # nesting depth of each open js-plotly-plot div
        self._level = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "div":
            self._level += 1
            if "plotly-graph-div" in classes:
                self.graph_divs += 1
            if "js-plotly-plot" in classes:
                self.drawn.append({"main_svg": 0, "traces": 0})
                self._depth.append(self._level)
        if self._depth:
            if tag == "svg" and "main-svg" in classes:
                self.drawn[-1]["main_svg"] += 1
            if tag == "g" and "trace" in classes:
                self.drawn[-1]["traces"] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            if self._depth and self._depth[-1] == self._level:
                self._depth.pop()
            self._level -= 1


def _chromium(page: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *mode, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_headless_chromium_draws_every_chart_offline_without_console_errors(notebook_run, tmp_path):
    pages = sorted(notebook_run.out.glob("0*.html"))
    assert len(pages) == 4
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = {page: ARTIFACTS / f"{page.stem}.png" for page in pages}
    with ThreadPoolExecutor(4) as pool:  # one browser per page and mode, side by side
        doms = {p: pool.submit(_chromium, p, tmp_path / f"{p.stem}-dom", "--dump-dom") for p in pages}
        runs = {
            p: pool.submit(_chromium, p, tmp_path / f"{p.stem}-shot", f"--screenshot={shots[p]}")
            for p in pages
        }
    for page in pages:
        expected = page.read_text().count('class="plotly-graph-div"')
        assert expected >= 1, page.name  # every notebook draws charts

        dom = doms[page].result()
        assert dom.returncode == 0, dom.stderr[-2000:]
        plots = Plots()
        plots.feed(dom.stdout)
        assert plots.graph_divs == expected, page.name
        assert len(plots.drawn) == expected, f"{page.name}: {len(plots.drawn)} of {expected} charts drawn"
        for drawn in plots.drawn:
            assert drawn["main_svg"] >= 1 and drawn["traces"] >= 1, (page.name, drawn)
        assert CONSOLE.findall(dom.stderr) == [], page.name

        run = runs[page].result()
        assert run.returncode == 0 and shots[page].stat().st_size > 20_000, run.stderr[-2000:]
        print(f"screenshot: {shots[page]}")


def test_the_console_check_sees_errors(tmp_path):
    """The console check above is not blind: a page that logs an error and throws is caught."""
    page = tmp_path / "broken.html"
    page.write_text('<html><body><script>console.error("planted"); null.boom();</script></body></html>')
    run = _chromium(page, tmp_path / "profile", "--dump-dom")
    messages = CONSOLE.findall(run.stderr)
    assert any("planted" in m for m in messages) and any("Uncaught TypeError" in m for m in messages)
