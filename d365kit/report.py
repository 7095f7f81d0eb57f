"""Headless notebook runs (papermill) and shareable HTML reports (nbconvert), plus the two notebook helpers
those reports rely on.

Offline charts. ``setup_notebook()`` (first cell of every notebook) makes plotly figures display as two
outputs: ``application/vnd.plotly.v1+json`` (JupyterLab's interactive view) and ``text/html`` that calls a
``window.Plotly`` loaded once, inline, by ``setup_notebook()`` itself — the whole plotly.js bundle in that
cell's output. The exported HTML therefore shows every chart with no network. Plotly's own ``notebook``
renderer is not used because every figure it renders loads MathJax from a CDN; nbconvert's ``lab``
template is used without its require.js and MathJax CDN scripts (``_OFFLINE_TEMPLATE``) for the same reason.

Key figures. A notebook calls ``record_figures({...})``: it displays a small table and, in the same output,
the figures as JSON ``[[name, value], ...]`` (a list, so their order survives nbformat's sorted keys) under
``FIGURES_MIME``. ``run_notebook`` reads every such output back from the executed notebook
(later ones update earlier ones) and the report index shows them.

Interactive cells. A cell tagged ``interactive`` (the ipywidgets panel of ``d365kit.widgets`` and its
heading) runs headlessly like any other but is left out of the exported HTML, with the widget state.

Secrets. Notebooks get a profile NAME and plain values only; ``check_parameters`` refuses parameters that
look like secrets or tokens. Each notebook connects through its profile, which finds its own secret.
"""

from __future__ import annotations

import ast
import html
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from d365kit.errors import ConfigError, UsageError

FIGURES_MIME = "application/vnd.d365kit.figures+json"
INTERACTIVE_TAG = "interactive"  # cells showing widget panels: run headlessly, left out of the HTML
KERNEL = "python3"
CELL_TIMEOUT_S = 600
NOTEBOOKS_DIR = Path("notebooks")
CHECKOUT_NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
REPORTS_DIR = Path("reports")
_OFFLINE_RENDERER = "d365kit_offline"
_SECRET_NAME = re.compile(r"secret|password|passwd|token|credential|api_?key|private_?key", re.IGNORECASE)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")
_OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

# -- inside a notebook -------------------------------------------------------------------------------


def setup_notebook() -> None:
    """Make plotly charts show in JupyterLab and in exported HTML without network (see the module doc)."""
    import plotly.io as pio
    from IPython.display import display
    from plotly.io.base_renderers import MimetypeRenderer
    from plotly.offline import get_plotlyjs

    class OfflineHtml(MimetypeRenderer):
        def to_mimebundle(self, fig_dict: dict) -> dict[str, str]:
            return {
                "text/html": pio.to_html(
                    fig_dict,
                    include_plotlyjs=False,
                    include_mathjax=False,
                    full_html=False,
                    default_width="100%",
                    default_height=480,
                    validate=False,
                    config={"displaylogo": False},
                )
            }

    pio.renderers[_OFFLINE_RENDERER] = OfflineHtml()
    pio.renderers.default = f"plotly_mimetype+{_OFFLINE_RENDERER}"
    script = (
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n<script>"
        + get_plotlyjs()
        + "</script>"
    )
    display({"text/html": script}, raw=True)


def record_figures(figures: Mapping[str, Any]) -> None:
    """Show the notebook's key figures and record them (JSON, ``FIGURES_MIME``) for the report index."""
    from IPython.display import display

    values = json.loads(json.dumps(dict(figures), default=str))
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_text(v))}</td></tr>" for k, v in values.items()
    )
    display(
        {
            FIGURES_MIME: [[k, v] for k, v in values.items()],
            "text/html": f'<table class="d365kit-figures">{rows}</table>',
            "text/plain": "\n".join(f"{k}: {_text(v)}" for k, v in values.items()),
        },
        raw=True,
    )


def _text(value: Any) -> str:
    return "—" if value is None else str(value)


# -- running ------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """One notebook's headless run: where its outputs are, whether it worked, and its key figures."""

    notebook: Path
    executed: Path | None = None  # the executed .ipynb (also written when a cell failed)
    html: Path | None = None  # the exported HTML, code cells hidden
    status: str = "ok"  # "ok" | "failed"
    error: str | None = None  # "<error name>: <message>" when failed
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        """One line for a terminal (plus the error on a second line when it failed)."""
        where = self.html or self.executed or self.notebook
        line = f"{self.notebook.name}: {self.status} in {self.seconds:.1f} s -> {where}"
        return line if self.ok else f"{line}\n  {self.error}"


@dataclass
class ReportResult:
    index: Path
    results: list[RunResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def parse_value(text: str) -> Any:
    """A ``-p name value`` value: a Python literal (30, 1.5, True, None, ['A']) or else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_parameters(parameters: Mapping[str, Any]) -> None:
    """Refuse parameters that look like a secret or a token: notebooks get a profile name, never a credential."""
    for name, value in parameters.items():
        if _SECRET_NAME.search(name) or _JWT.search(json.dumps(value, default=str)):
            raise UsageError(
                f"parameter {name!r} looks like a secret; pass a profile name instead — its secret stays in the "
                "profile's secret_env variable or the OS keyring."
            )


def ensure_kernel(name: str = KERNEL) -> None:
    """Make sure the Jupyter kernel ``name`` exists; install ipykernel's ``python3`` spec into this venv if not."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
        return
    except NoSuchKernel:
        if name != KERNEL:
            raise
    try:
        import ipykernel  # noqa: F401
    except ImportError:
        raise ConfigError(
            "no Jupyter kernel: install ipykernel (pip install ipykernel) into this environment"
        ) from None
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--sys-prefix"], check=True, capture_output=True
    )


def _attach(parameters: Mapping[str, Any]) -> None:
    """For the built-in sandbox profile: start (or attach to) the sandbox in this process first, so every
    notebook kernel attaches to that one instead of starting its own."""
    if parameters.get("profile") == "sandbox":
        from d365kit.profiles import get_profile

        get_profile("sandbox")


def read_figures(executed: Path) -> dict[str, Any]:
    """The key figures recorded by ``record_figures`` in an executed notebook (later outputs win)."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    figures: dict[str, Any] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if FIGURES_MIME in data:
                figures.update((name, value) for name, value in data[FIGURES_MIME])
    return figures


def export_html(executed: Path, target: Path) -> Path:
    """The executed notebook as standalone HTML: outputs only (no code, no prompts), no CDN scripts.

    Cells tagged ``interactive`` (the widget panels) are left out, and so is the widget state papermill
    saves: a report has no kernel to drive them, and nbconvert would load the widget manager from a CDN."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"d365kit_offline.html.j2": _OFFLINE_TEMPLATE})],
        template_file="d365kit_offline.html.j2",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={INTERACTIVE_TAG}), enabled=True)
    nb = nbformat.read(executed, as_version=4)
    nb.metadata.pop("widgets", None)
    body, _ = exporter.from_notebook_node(nb)
    target.write_text(body, encoding="utf-8")
    return target


def run_notebook(
    path: str | Path,
    out_dir: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    kernel: str = KERNEL,
) -> RunResult:
    """Execute one notebook with papermill into ``out_dir`` and export it as HTML.

    A failing cell does not raise: the result says ``failed`` with the error's name and message, and the
    executed notebook and its HTML (showing the traceback) are still written.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    path, out = Path(path), Path(out_dir)
    parameters = dict(parameters or {})
    check_parameters(parameters)
    out.mkdir(parents=True, exist_ok=True)
    result = RunResult(notebook=path, executed=out / path.name)
    started = time.monotonic()
    try:
        ensure_kernel(kernel)
        _attach(parameters)
        pm.execute_notebook(
            str(path),
            str(result.executed),
            parameters=parameters,
            kernel_name=kernel,
            progress_bar=False,
            cwd=str(path.parent),
            execution_timeout=CELL_TIMEOUT_S,
        )
    except PapermillExecutionError as exc:
        result.status, result.error = "failed", f"{exc.ename}: {exc.evalue}"
    except Exception as exc:  # a missing file, a dead kernel, a timeout: reported, never hiding the others
        result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
    result.seconds = round(time.monotonic() - started, 2)
    if result.executed is not None and result.executed.exists():
        result.figures = read_figures(result.executed)
        result.html = export_html(result.executed, result.executed.with_suffix(".html"))
    else:
        result.executed = None
    return result


def default_out_dir(now: datetime | None = None) -> Path:
    return REPORTS_DIR / (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")


def default_notebooks(folder: Path | None = None) -> list[Path]:
    """The notebooks of ``folder``; by default ``notebooks/`` here, else those of the source checkout this
    package runs from (so ``d365kit report`` and ``d365kit demo`` work from any folder of a clone)."""
    if folder is not None:
        return sorted(folder.glob("*.ipynb"))
    return sorted(NOTEBOOKS_DIR.glob("*.ipynb")) or sorted(CHECKOUT_NOTEBOOKS.glob("*.ipynb"))


def build_report(
    notebooks: Iterable[str | Path] | None = None,
    out_dir: str | Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    profile: str = "sandbox",
) -> ReportResult:
    """Run each notebook (in order) with ``parameters`` + ``profile``, export each, write ``index.html``."""
    paths = [Path(p) for p in notebooks] if notebooks is not None else default_notebooks()
    if not paths:
        raise UsageError(
            f"no notebooks to run: none given and none in {NOTEBOOKS_DIR}/ or {CHECKOUT_NOTEBOOKS}/ "
            "(run from the project folder)"
        )
    out = Path(out_dir) if out_dir is not None else default_out_dir()
    params = {**(parameters or {}), "profile": profile}
    check_parameters(params)
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    results = [run_notebook(p, out, params) for p in tqdm(paths, desc="notebooks", unit=" nb")]
    index = out / "index.html"
    index.write_text(render_index(results, profile=profile, started=started, out_dir=out), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(_summary(results, profile, started), indent=2, default=str))
    return ReportResult(index=index, results=results)


# -- index page ---------------------------------------------------------------------------------------

_CSS = """
body { font-family: "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto; max-width: 960px; color: #1d2b33; }
h1 { font-weight: 600; } .meta { color: #5b6b73; }
.nb { border: 1px solid #d6dde1; border-radius: 6px; padding: 1rem 1.25rem; margin: 1rem 0; }
.nb h2 { margin: 0 0 .5rem; font-size: 1.15rem; }
.status { font-weight: 600; padding: .1rem .5rem; border-radius: 4px; margin-left: .5rem; font-size: .85rem; }
.ok { background: #d8f0ec; color: #1f6f65; } .failed { background: #fbe1da; color: #a23b22; }
.error { color: #a23b22; font-family: monospace; white-space: pre-wrap; }
table.figures { border-collapse: collapse; margin-top: .5rem; }
table.figures th { text-align: left; padding: .15rem 1rem .15rem 0; color: #5b6b73; font-weight: normal; }
"""


def _relative(path: Path | None, base: Path) -> str | None:
    return None if path is None else path.resolve().relative_to(base.resolve()).as_posix()


def render_index(results: list[RunResult], *, profile: str, started: datetime, out_dir: Path) -> str:
    """The report's front page: one box per notebook with its status, link, key figures and any error."""
    boxes = []
    for r in results:
        link = _relative(r.html, out_dir)
        title = html.escape(r.notebook.stem)
        head = f'<a href="{html.escape(link)}">{title}</a>' if link else title
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(_text(v))}</td></tr>"
            for k, v in r.figures.items()
        )
        parts = [
            f'<h2>{head}<span class="status {r.status}">{r.status}</span></h2>',
            f'<div class="meta">{r.seconds:.1f} s</div>',
        ]
        if r.error:
            parts.append(f'<div class="error">{html.escape(r.error)}</div>')
        if rows:
            parts.append(f'<table class="figures">{rows}</table>')
        boxes.append(f'<section class="nb" data-status="{r.status}">{"".join(parts)}</section>')
    failed = sum(not r.ok for r in results)
    verdict = f"{len(results) - failed} of {len(results)} notebooks ran" + (
        f", {failed} failed" if failed else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>d365kit report</title>'
        f"<style>{_CSS}</style></head><body><h1>d365kit report</h1>"
        f'<p class="meta">Profile <b>{html.escape(profile)}</b> · {started:%Y-%m-%d %H:%M} UTC · {verdict}</p>'
        f"{''.join(boxes)}</body></html>\n"
    )


def _summary(results: list[RunResult], profile: str, started: datetime) -> dict[str, Any]:
    return {
        "profile": profile,
        "started": started.isoformat(),
        "notebooks": [
            {
                "notebook": r.notebook.name,
                "status": r.status,
                "error": r.error,
                "seconds": r.seconds,
                "html": r.html.name if r.html else None,
                "figures": r.figures,
            }
            for r in results
        ],
    }
