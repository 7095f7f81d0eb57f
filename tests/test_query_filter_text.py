"""Issue #13 (7b): ``Query(filter="...")`` takes filter text as a user expects (it was an AttributeError at
``params()``): the text is wrapped in ``Filter``, combines with ``where()``, ``&`` and ``|``, and reads the
same rows from both services as the ``Q``-built filter."""

from __future__ import annotations

import pytest

from d365kit.errors import UsageError
from d365kit.odata.query import Filter, Q, Query, as_filter


def test_filter_text_is_wrapped_and_combines():
    q = Query(filter="number eq '10000'")
    assert q.filter == Filter("number eq '10000'")
    assert q.params() == [("$filter", "number eq '10000'")]
    both = q.where(Q.eq("blocked", " "))
    assert both.filter.text == "(number eq '10000') and (blocked eq ' ')"
    assert Query().where("a eq 1").where("b eq 2").filter.text == "(a eq 1) and (b eq 2)"
    assert (Q.eq("a", 1) | "b eq 2").text == "(a eq 1) or (b eq 2)"
    assert ("b eq 2" & Q.eq("a", 1)).text == "(b eq 2) and (a eq 1)"
    assert Query(filter=Q.eq("a", 1)) == Query(filter="a eq 1")  # one shape, whichever way it was built


def test_string_select_and_orderby_are_lists_and_expand_stays_whole():
    q = Query(select="number, displayName", orderby="number desc", expand="lines($select=a,b)")
    assert q.select == ("number", "displayName") and q.orderby == ("number desc",)
    assert q.expand == ("lines($select=a,b)",)
    assert q.params() == [
        ("$select", "number,displayName"),
        ("$orderby", "number desc"),
        ("$expand", "lines($select=a,b)"),
    ]
    assert Query(select=["a", "b"]).select == ("a", "b")


@pytest.mark.parametrize("bad", [42, ["a eq 1"], "", "   "])
def test_what_is_not_filter_text_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="filter"):
        Query(filter=bad)
    with pytest.raises(UsageError, match="filter"):
        Query().where(bad)
    with pytest.raises(UsageError, match="filter"):
        as_filter(bad)


def test_select_of_other_types_is_a_usage_error():
    with pytest.raises(UsageError, match="select"):
        Query(select=42)


def test_filter_text_reads_the_same_rows_from_both_services(ws):
    bc_text = ws.bc.to_frame("customers", Query(filter="number eq '10000'", select="id,number"))
    bc_q = ws.bc.to_frame("customers", Query(filter=Q.eq("number", "10000"), select=("id", "number")))
    assert len(bc_text) == 1 and bc_text["id"].tolist() == bc_q["id"].tolist()

    first = ws.dataverse.to_frame("accounts", Query(select="accountid,name", top=1))
    name = first["name"].iloc[0]
    text = "name eq '" + name.replace("'", "''") + "'"
    dv = ws.dataverse.to_frame(
        "accounts", Query(filter=text, select="accountid,name").where("statecode eq 0")
    )
    dv_q = ws.dataverse.to_frame(
        "accounts", Query(select=("accountid", "name")).where(Q.eq("name", name) & Q.eq("statecode", 0))
    )
    assert len(dv) >= 1 and sorted(dv["accountid"]) == sorted(dv_q["accountid"])
