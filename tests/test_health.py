"""Sync-health metrics: pure functions on small frames, error classification, and one read of the sandbox log."""

from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from d365kit import charts, health


def _jobs() -> pd.DataFrame:
    """Four BC jobs over three days (one empty day between), companion API field names."""
    return pd.DataFrame(
        {
            "id": ["A1", "a2", "a3", "a4"],
            "startDateTime": [
                "2026-11-01T10:00:00Z",
                "2026-11-01T10:00:05Z",
                "2026-11-03T10:00:00Z",
                "2026-11-03T11:00:00Z",
            ],
            "finishDateTime": ["2026-11-01T10:00:10Z", "2026-11-01T10:00:07Z", "2026-11-03T10:01:00Z", None],
            "integrationTableMappingName": ["CUSTOMER", "CONTACT", "CUSTOMER", "CONTACT"],
            "inserted": [1, 0, 0, 0],
            "modified": [2, 3, 0, 1],
            "deleted": [0, 0, 1, 0],
            "unchanged": [5, 0, 0, 0],
            "skipped": [0, 1, 0, 2],
            "failed": [2, 0, 1, 0],
            "coupled": [0, 0, 0, 0],
            "uncoupled": [0, 0, 0, 0],
            "synchDirection": [
                "ToIntegrationTable",
                "FromIntegrationTable",
                "ToIntegrationTable",
                "FromIntegrationTable",
            ],
            "type": ["Synchronization"] * 4,
            "message": ["", "", "", ""],
        }
    )


def _errors() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "integrationSynchJobId": ["a1", "A1", "a3", "zz"],
            "message": ["short", "The Currency EUR is not coupled.", "x", "orphan"],
            "errorMessage": [
                "Cannot update the Customer record because the mapping CUSTOMER is bi-directional, and one or both "
                "values have changed since the last synchronization.",
                "",
                "The Customer record cannot be updated because it is coupled to a deleted record.",
                "The remote service returned an error: (429) Too Many Requests.",
            ],
            "dateTime": [
                "2026-11-01T10:00:08Z",
                "2026-11-01T10:00:09Z",
                "2026-11-03T10:00:30Z",
                "2026-11-03T10:00:30Z",
            ],
            "sourceRecordId": ["Customer: 10000", "Customer: 20000", "Customer: 30000", "?"],
        }
    )


@pytest.fixture()
def hist() -> pd.DataFrame:
    return health.history(_jobs())


@pytest.mark.parametrize(
    ("message", "category"),
    [
        (
            "Cannot update the Contact record because the mapping CONTACT is bi-directional, and one or both values "
            "have changed since the last synchronization. Contact: CT000061",
            "conflict (bi-directional)",
        ),
        (
            "The Sales Price record cannot be updated because it is coupled to a deleted record.",
            "coupled to deleted record",
        ),
        ("The Salesperson/Purchaser with Code SP NO. 00015 is not coupled.", "not coupled"),
        (
            "The Customer 170000 is not coupled to a Dataverse account. Posted Sales Invoice: 103001",
            "not coupled",
        ),
        ("You do not have the following permissions on TableData 5331 Read.", "permission"),
        ("Principal user is missing prvReadAccount privilege on OTC=1", "permission"),
        ("The remote server returned an error: (403) Forbidden.", "permission"),
        (
            "The remote service returned an error: (429) Too Many Requests. Try again later.",
            "throttling/transient",
        ),
        ("The operation has timed out.", "throttling/transient"),
        (
            "The length of the string is 55, but it must be less than or equal to 30 characters. Value: x",
            "validation/length",
        ),
        (
            "The exchange rate for currency TRY cannot be found. Set up a Currency Exchange Rate.",
            "validation/length",
        ),
        ("The Customer 10000 cannot be synchronized: field name is not valid.", "validation/length"),
        (
            "Invoice lines cannot be synchronized on their own. Synchronize the posted sales invoice instead.",
            "other",
        ),
        ("", "other"),
        (None, "other"),
    ],
)
def test_classify_errors(message, category):
    got = health.classify_errors(pd.Series([message], index=[7]))
    assert got.loc[7] == category
    assert list(got.cat.categories) == list(health.ERROR_CATEGORIES)


def test_history_normalizes_bc_jobs_and_merges_runs_with_defaults(hist):
    assert list(hist.columns) == list(health.HISTORY_COLUMNS)
    assert hist["job_id"].tolist() == ["a1", "a2", "a3", "a4"]  # GUIDs compare lower case
    assert hist["duration_s"].tolist()[:3] == [10.0, 2.0, 60.0] and pd.isna(hist["duration_s"].iloc[3])
    runs = pd.DataFrame(
        {
            "startDateTime": ["2026-11-02T09:00:00Z"],
            "integrationTableMappingName": ["CUSTOMER"],
            "failed": [4],
        }
    )
    merged = health.history(_jobs(), runs)
    own = merged[merged["source"] == "d365kit"].iloc[0]
    assert merged.index[merged["source"] == "d365kit"].tolist() == [2]  # sorted by start among BC's jobs
    assert (own["failed"], own["inserted"], own["type"], own["direction"]) == (4, 0, "Synchronization", "")
    assert pd.isna(own["finish"]) and pd.isna(own["job_id"])


def test_history_names_missing_required_columns():
    with pytest.raises(ValueError, match="integrationTableMappingName"):
        health.history(pd.DataFrame({"startDateTime": ["2026-11-01T10:00:00Z"]}))


def test_recent_counts_back_from_newest_job_and_filters_mappings(hist):
    assert len(health.recent(hist, days=1)) == 2  # newest 11-03 11:00 -> from 11-02 11:00
    assert len(health.recent(hist, days=3)) == 4
    only = health.recent(hist, days=30, mappings=["CONTACT"])
    assert only["mapping"].unique().tolist() == ["CONTACT"]
    assert health.recent(hist, mappings=["NOPE"]).empty


def test_runs_per_day_has_no_gaps(hist):
    per_day = health.runs_per_day(hist)
    assert [d.day for d in per_day.index] == [1, 2, 3]
    assert per_day.loc["2026-11-02"].tolist() == [0, 0, 0, 0, 0]
    day1 = per_day.loc["2026-11-01"]
    assert (day1["jobs"], day1["failed_jobs"], day1["synced"], day1["failed"], day1["skipped"]) == (
        2,
        1,
        6,
        2,
        1,
    )
    assert health.runs_per_day(hist.iloc[0:0]).empty


def test_failures_by_mapping_worst_first(hist):
    f = health.failures_by_mapping(hist)
    assert f["mapping"].tolist() == ["CUSTOMER", "CONTACT"]
    customer = f.iloc[0]
    assert (customer["jobs"], customer["failed_jobs"], customer["failed"], customer["failure_rate"]) == (
        2,
        2,
        3,
        1.0,
    )
    assert f.iloc[1]["skipped"] == 3


def test_error_log_joins_jobs_classifies_and_drops_unknown_jobs(hist):
    log = health.error_log(_errors(), hist)
    assert list(log.columns) == list(health.ERROR_COLUMNS)
    assert len(log) == 3  # job "zz" is not in the history
    assert log["mapping"].unique().tolist() == ["CUSTOMER"]
    # errorMessage wins; an empty one falls back to the short message
    assert log["category"].astype(str).tolist() == [
        "conflict (bi-directional)",
        "not coupled",
        "coupled to deleted record",
    ]
    cats = health.error_categories(log)
    assert set(cats.columns) == {"category", "mapping", "errors", "example"}
    assert cats["errors"].sum() == 3 and cats["example"].str.len().gt(0).all()
    assert health.error_categories(log.iloc[0:0]).empty


def test_slowest_mappings_ignores_unfinished_jobs(hist):
    slow = health.slowest_mappings(hist)
    assert slow["mapping"].tolist() == ["CUSTOMER", "CONTACT"]
    customer = slow.iloc[0]
    assert (customer["jobs"], customer["median_s"], customer["max_s"], customer["total_s"]) == (
        2,
        35.0,
        60.0,
        70.0,
    )
    assert customer["p95_s"] == pytest.approx(57.5)
    assert slow.iloc[1]["jobs"] == 1  # the unfinished CONTACT job has no duration


def test_coupled_per_mapping_and_coverage():
    couplings = pd.DataFrame(
        {
            "id": ["c1", "c2", "c3", "c4"],
            "tableId": [18, 18, 18, 5050],
            "skipped": [True, False, None, False],
            "lastSynchResult": ["Failure", None, "Success", None],
            "lastSynchCrmResult": [None, "Failure", None, "Success"],
        }
    )
    table_mappings = pd.DataFrame({"name": ["CUSTOMER", "CONTACT", "CURRENCY"], "tableId": [18, 5050, 4]})
    counts = health.coupled_per_mapping(couplings, table_mappings)
    assert counts.set_index("mapping")[["coupled", "skipped", "failed"]].to_dict("index") == {
        "CONTACT": {"coupled": 1, "skipped": 0, "failed": 0},
        "CURRENCY": {"coupled": 0, "skipped": 0, "failed": 0},
        "CUSTOMER": {"coupled": 3, "skipped": 1, "failed": 2},
    }
    cov = health.coverage(counts.assign(total=[4, None, 2]))  # CONTACT 1/4, CURRENCY unknown, CUSTOMER 3 > 2
    assert cov["mapping"].tolist() == ["CONTACT", "CUSTOMER", "CURRENCY"]  # lowest first, unknown last
    assert (
        cov["coverage"].iloc[0] == 0.25
        and cov["coverage"].iloc[1] == 1.0
        and pd.isna(cov["coverage"].iloc[2])
    )
    assert cov["uncoupled"].iloc[:2].tolist() == [3, 0]
    assert health.headline(
        health.history(_jobs()), health.error_log(_errors(), health.history(_jobs())), cov
    )["coverage_pct"] == round(100 * (1 + 2) / (4 + 2), 1)


def test_drift_trend_counts_everything_but_in_sync_and_out_of_scope():
    summaries = pd.DataFrame(
        {
            "at": pd.to_datetime(["2026-11-01"] * 4 + ["2026-11-02"] * 2, utc=True),
            "mapping": ["CUSTOMER"] * 6,
            "category": ["in_sync", "drift", "conflict", "out_of_scope", "in_sync", "drift"],
            "count": [90, 6, 4, 10, 99, 1],
        }
    )
    trend = health.drift_trend(summaries)
    assert trend["out_of_sync"].tolist() == [10, 1]
    assert trend["drift_rate"].tolist() == pytest.approx([10 / 110, 1 / 100])


def test_headline_is_plain_json(hist):
    log = health.error_log(_errors(), hist)
    figures = health.headline(hist, log)
    assert json.loads(json.dumps(figures)) == figures
    assert figures == {
        "period_start": "2026-11-01",
        "period_end": "2026-11-03",
        "jobs": 4,
        "failed_jobs": 2,
        "failed_records": 3,
        "errors": 3,
        "top_error_category": "conflict (bi-directional)",
        "worst_mapping": "CUSTOMER",
        "slowest_mapping": "CUSTOMER",
    }
    empty = health.headline(hist.iloc[0:0], log.iloc[0:0])
    assert empty["jobs"] == 0 and empty["worst_mapping"] is None and empty["period_start"] is None


def test_figures_share_the_template_and_draw_the_data(hist):
    log = health.error_log(_errors(), hist)
    cov = health.coverage(pd.DataFrame({"mapping": ["CUSTOMER"], "coupled": [3], "total": [4]}))
    trend = health.drift_trend(
        pd.DataFrame({"at": ["2026-11-01"], "mapping": ["CUSTOMER"], "category": ["drift"], "count": [2]})
    )
    figs = {
        "runs": charts.fig_runs_over_time(health.runs_per_day(hist)),
        "failures": charts.fig_failures_by_mapping(health.failures_by_mapping(hist)),
        "errors": charts.fig_error_categories(health.error_categories(log)),
        "slowest": charts.fig_slowest_mappings(health.slowest_mappings(hist)),
        "coverage": charts.fig_coverage(cov),
        "drift": charts.fig_drift_trend(trend),
    }
    for fig in figs.values():
        assert isinstance(fig, go.Figure) and fig.data
        assert fig.layout.template.layout.font.family == pio.templates[charts.TEMPLATE].layout.font.family
        assert fig.layout.title.text
    assert list(figs["runs"].data[2].y) == [2, 0, 1]  # failed records per day
    assert list(figs["coverage"].data[0].text) == ["75.0%"]


def test_sandbox_log_reads_into_history_errors_and_coverage(ws):
    hist, errors = health.load_history(ws.bc, days=7)
    assert len(hist) > 0 and (hist["source"] == "bc").all()
    assert hist["start"].max() - hist["start"].min() <= pd.Timedelta(days=7)
    assert set(errors["job_id"]) <= set(hist["job_id"])
    assert errors["category"].astype(str).ne("other").mean() > 0.5  # the patterns know BC's messages
    cov = health.coverage(health.coverage_counts(ws.bc, ["CUSTOMER", "CURRENCY"]))
    assert set(cov["mapping"]) == {"CUSTOMER", "CURRENCY"}
    assert (cov["total"] > 0).all() and cov["coverage"].between(0, 1).all()
