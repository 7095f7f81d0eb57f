"""``Document``: what a result shows, as plain data (title, lines, titled tables, notes), rendered to HTML
from one template (``templates/document.html.j2``) or to text.

Results (``ReconcileResult``, ``SyncPlan``, ``SyncRun``, ``HealthResult``) only say *what* to show, by
building a Document; *how* it looks lives here, once. So every result has the same ``to_html()`` /
``to_text()`` and a page of one looks like a page of another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

TEMPLATES = Path(__file__).with_name("templates")


def cell(value: Any) -> Any:
    """A value as a table shows it: tuples and lists joined, dicts as ``key: value`` pairs."""
    if isinstance(value, tuple | list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return value


@dataclass
class Section:
    title: str
    frame: pd.DataFrame


@dataclass
class Document:
    title: str
    lines: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, title: str, frame: pd.DataFrame) -> Document:
        self.sections.append(Section(title, frame))
        return self

    def to_html(self, limit: int | None = 200) -> str:
        """A self-contained HTML page (inline CSS, no scripts); ``limit`` rows per table (None: all)."""
        sections = []
        for s in self.sections:
            shown = s.frame if limit is None else s.frame.head(limit)
            table = shown.map(cell).to_html(index=False, escape=True, na_rep="", border=0, classes="grid")
            sections.append({"title": s.title, "table": table, "more": max(0, len(s.frame) - len(shown))})
        return _template().render(doc=self, sections=sections)

    def to_text(self, limit: int | None = 20) -> str:
        parts = [self.title, *self.lines]
        for s in self.sections:
            shown = s.frame if limit is None else s.frame.head(limit)
            more = f" (first {len(shown)} of {len(s.frame)})" if len(shown) < len(s.frame) else ""
            parts += ["", f"{s.title}{more}:", shown.map(cell).to_string(index=False)]
        parts += ["", *self.notes] if self.notes else []
        return "\n".join(parts)


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    return env.get_template("document.html.j2")


__all__ = ["Document", "Section", "cell"]
