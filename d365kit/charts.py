"""Charts of sync health and reconcile results: plotly figures on one shared ``d365kit`` template.

Presentation only: the numbers come from ``d365kit.health`` (and ``d365kit.views``); registering the
template here keeps importing the domain free of display side effects.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

TEMPLATE = "d365kit"
COLORS = {
    "ok": "#2a9d8f",
    "failed": "#e76f51",
    "skipped": "#e9c46a",
    "neutral": "#264653",
    "muted": "#a8b5bd",
}
pio.templates[TEMPLATE] = go.layout.Template(
    pio.templates["plotly_white"],
    layout={
        "font": {"family": "Segoe UI, Helvetica, Arial, sans-serif", "size": 13},
        "colorway": ["#264653", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51", "#8d99ae", "#6d597a", "#b5838d"],
        "margin": {"l": 60, "r": 30, "t": 60, "b": 50},
        "legend": {"orientation": "h", "y": -0.18},
        "hoverlabel": {"namelength": -1},
        "xaxis": {"automargin": True},
        "yaxis": {"automargin": True},
    },
)


def _figure(title: str, **layout: Any) -> go.Figure:
    return go.Figure(layout={"template": TEMPLATE, "title": {"text": title}, **layout})


def fig_runs_over_time(per_day: pd.DataFrame) -> go.Figure:
    """Jobs per day (clean vs with failures) and failed records on a second axis."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.update_layout(template=TEMPLATE, title={"text": "Sync jobs per day"}, barmode="stack")
    x = per_day.index
    fig.add_bar(
        x=x,
        y=per_day["jobs"] - per_day["failed_jobs"],
        name="jobs without failures",
        marker_color=COLORS["ok"],
    )
    fig.add_bar(x=x, y=per_day["failed_jobs"], name="jobs with failures", marker_color=COLORS["failed"])
    fig.add_scatter(
        x=x,
        y=per_day["failed"],
        name="failed records",
        mode="lines+markers",
        line={"color": COLORS["neutral"]},
        secondary_y=True,
    )
    fig.update_yaxes(title_text="jobs", secondary_y=False)
    fig.update_yaxes(
        title_text="failed records", secondary_y=True, rangemode="tozero", showgrid=False, tickformat=",.0f"
    )
    return fig


def fig_failures_by_mapping(failures: pd.DataFrame) -> go.Figure:
    """Failed and skipped records per mapping (horizontal bars, worst on top)."""
    f = failures.iloc[::-1]
    fig = _figure("Failed and skipped records by mapping", barmode="stack", xaxis_title="records")
    fig.add_bar(y=f["mapping"], x=f["failed"], name="failed", orientation="h", marker_color=COLORS["failed"])
    fig.add_bar(
        y=f["mapping"], x=f["skipped"], name="skipped", orientation="h", marker_color=COLORS["skipped"]
    )
    return fig


def fig_error_categories(categories: pd.DataFrame) -> go.Figure:
    """Errors per category, stacked by mapping."""
    fig = _figure("Sync errors by category", barmode="stack", xaxis_title="errors")
    order = list(dict.fromkeys(categories["category"].astype(str)))[::-1]
    for mapping, rows in categories.groupby("mapping", sort=True):
        fig.add_bar(
            y=rows["category"].astype(str),
            x=rows["errors"],
            name=str(mapping),
            orientation="h",
            customdata=rows[["example"]],
            hovertemplate="%{y}: %{x}<br>%{customdata[0]}<extra>%{fullData.name}</extra>",
        )
    fig.update_yaxes(categoryorder="array", categoryarray=order)
    return fig


def fig_slowest_mappings(slowest: pd.DataFrame, top: int = 15) -> go.Figure:
    """Median and 95th percentile job duration per mapping, slowest on top."""
    s = slowest.head(top).iloc[::-1]
    fig = _figure("Job duration by mapping (seconds)", barmode="group", xaxis_title="seconds")
    fig.add_bar(y=s["mapping"], x=s["median_s"], name="median", orientation="h", marker_color=COLORS["muted"])
    fig.add_bar(
        y=s["mapping"], x=s["p95_s"], name="95th percentile", orientation="h", marker_color=COLORS["neutral"]
    )
    return fig


def fig_coverage(cov: pd.DataFrame) -> go.Figure:
    """Coupled vs uncoupled records per mapping, with the coverage percentage."""
    c = cov.dropna(subset=["coverage"]).iloc[::-1]
    coupled = c["total"] - c["uncoupled"]
    fig = _figure("Coupling coverage by mapping", barmode="stack", xaxis_title="records")
    fig.add_bar(
        y=c["mapping"],
        x=coupled,
        name="coupled",
        orientation="h",
        marker_color=COLORS["ok"],
        text=(c["coverage"] * 100).round(1).astype(str) + "%",
        textposition="inside",
    )
    fig.add_bar(
        y=c["mapping"], x=c["uncoupled"], name="uncoupled", orientation="h", marker_color=COLORS["muted"]
    )
    return fig


def fig_drift_trend(trend: pd.DataFrame) -> go.Figure:
    """Share of records out of sync per mapping over time."""
    fig = _figure(
        "Drift over time (share of records out of sync)", yaxis_tickformat=".0%", yaxis_rangemode="tozero"
    )
    for mapping, rows in trend.groupby("mapping", sort=True):
        fig.add_scatter(x=rows["at"], y=rows["drift_rate"], name=str(mapping), mode="lines+markers")
    return fig
