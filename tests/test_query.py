"""Client-side query builder: literals are escaped so a value can never become syntax."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from d365kit.errors import UsageError
from d365kit.odata.query import Filter, Guid, Q, Query, key_segment, literal


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("O'Bryan", "'O''Bryan'"),
        ("x') or 1=1 --", "'x'') or 1=1 --'"),
        ("", "''"),
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (Decimal("12.50"), "12.50"),
        (1.5, "1.5"),
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
        (Guid("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
        (date(2022, 11, 5), "2022-11-05"),
        (datetime(2019, 8, 18, 20, 5, 51, 603000, tzinfo=UTC), "2019-08-18T20:05:51.603Z"),
        (datetime(2019, 8, 18, 22, 5, 51, tzinfo=timezone(timedelta(hours=2))), "2019-08-18T20:05:51.000Z"),
    ],
)
def test_literal(value, expected):
    assert literal(value) == expected


def test_naive_datetimes_and_unknown_types_are_refused():
    with pytest.raises(ValueError, match="timezone"):
        literal(datetime(2020, 1, 1))
    with pytest.raises(UsageError, match="no OData literal for object"):
        literal(object())
    with pytest.raises(ValueError):
        literal(float("nan"))
    with pytest.raises(ValueError):
        Guid("not-a-guid")


def test_filters_compose_with_parentheses():
    f = (Q.eq("number", "10000") | Q.eq("number", "20000")) & ~Q.contains("displayName", "it's")
    assert str(f) == "((number eq '10000') or (number eq '20000')) and (not (contains(displayName,'it''s')))"
    assert str(Q.in_("code", ["EUR", "USD"])) == "code in ('EUR','USD')"
    assert str(Q.any_of("code", ["EUR", "USD"])) == "code eq 'EUR' or code eq 'USD'"


def test_property_names_are_checked():
    with pytest.raises(ValueError):
        Q.eq("name eq 'x' or name", "y")
    with pytest.raises(ValueError):
        Query().with_select("id,1")


def test_query_params_and_encoding():
    q = Query().with_select("id", "number").where(Filter("number eq 'A B'")).order_by("number desc").limit(5)
    assert q.params() == [
        ("$select", "id,number"),
        ("$filter", "number eq 'A B'"),
        ("$orderby", "number desc"),
        ("$top", "5"),
    ]
    assert (
        q.query_string()
        == "$select=id,number&$filter=number%20eq%20%27A%20B%27&$orderby=number%20desc&$top=5"
    )


def test_key_segment_accepts_guids_only():
    gid = "12345678-1234-5678-1234-567812345678"
    assert key_segment("accounts", gid.upper()) == f"accounts({gid})"
    with pytest.raises(ValueError):
        key_segment("accounts", "10000")
