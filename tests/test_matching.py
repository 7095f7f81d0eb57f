"""Match candidates: BC's match-based coupling rules (exact, by priority, case sensitivity), then fuzzy."""

from __future__ import annotations

import random
import string

import pandas as pd
import pytest

from d365kit.matching import COLUMNS, MatchRule, candidates


def frames(bc_rows: list[dict], dv_rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.DataFrame(bc_rows), pd.DataFrame(dv_rows)


def pairs(out: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(out["bc_id"], out["dataverse_id"], strict=True))


def run(bc: pd.DataFrame, dv: pd.DataFrame, rules: list[MatchRule], **kw) -> pd.DataFrame:
    return candidates(bc, dv, rules, bc_key="id", dv_key="accountid", **kw)


def test_exact_priority_zero_decides_before_priority_one():
    bc, dv = frames(
        [{"id": "b1", "number": "C1", "name": "Adatum"}],
        [
            {"accountid": "d1", "accountnumber": "C1", "name": "Something else"},
            {"accountid": "d2", "accountnumber": "X9", "name": "Adatum"},
        ],
    )
    rules = [MatchRule("name", "name", priority=1), MatchRule("number", "accountnumber", priority=0)]
    out = run(bc, dv, rules)
    assert list(out.columns) == list(COLUMNS)
    assert out.to_dict("records") == [
        {
            "bc_id": "b1",
            "dataverse_id": "d1",
            "score": 100.0,
            "rule": "exact:0",
            "fields": "number=accountnumber",
            "ambiguous": False,
        }
    ]


def test_priorities_narrow_cumulatively_like_bc():
    """BC adds each priority's filters to the previous ones (codeunit 5360): p1 refines an ambiguous p0."""
    bc, dv = frames(
        [
            {"id": "b1", "city": "Oslo", "name": "Adatum"},  # p0: two rows, p0+p1: one
            {"id": "b2", "city": "Rome", "name": "Adatum"},  # p0: none, so p0+p1: none either
            {"id": "b3", "city": "", "name": "Fabrikam"},  # blank p0 value is skipped, p1 alone decides
            {"id": "b4", "city": "Oslo", "name": "Nowhere"},  # ambiguous at p0, nothing at p0+p1
        ],
        [
            {"accountid": "d1", "city": "Oslo", "name": "Other"},
            {"accountid": "d2", "city": "Oslo", "name": "Adatum"},
            {"accountid": "d3", "city": "Bergen", "name": "Adatum"},
            {"accountid": "d4", "city": "Bergen", "name": "Fabrikam"},
        ],
    )
    rules = [MatchRule("city", "city", priority=0), MatchRule("name", "name", priority=1)]
    out = run(bc, dv, rules, fuzzy_rules=[])
    rows = {(r.bc_id, r.dataverse_id): (r.rule, r.fields, r.ambiguous) for r in out.itertuples()}
    assert rows == {
        ("b1", "d2"): ("exact:1", "city=city, name=name", False),
        ("b3", "d4"): ("exact:1", "name=name", False),
        ("b4", "d1"): ("exact:0", "city=city", True),  # the narrowest set BC reached: "more than one match"
        ("b4", "d2"): ("exact:0", "city=city", True),
    }


def test_fields_of_one_priority_must_all_match():
    bc, dv = frames(
        [{"id": "b1", "number": "C1", "city": "Oslo"}],
        [
            {"accountid": "d1", "accountnumber": "C1", "city": "Bergen"},
            {"accountid": "d2", "accountnumber": "C7", "city": "Oslo"},
            {"accountid": "d3", "accountnumber": "C1", "city": "oslo"},
        ],
    )
    rules = [MatchRule("number", "accountnumber"), MatchRule("city", "city")]
    out = run(bc, dv, rules, fuzzy_rules=[])
    assert pairs(out) == {("b1", "d3")}
    assert out["fields"].tolist() == ["number=accountnumber, city=city"]


def test_case_sensitivity_is_per_field():
    bc, dv = frames(
        [{"id": "b1", "code": "eur", "name": "x"}, {"id": "b2", "code": "USD ", "name": "y"}],
        [{"accountid": "d1", "code": "EUR", "name": "q"}, {"accountid": "d2", "code": "USD", "name": "r"}],
    )
    sensitive = run(bc, dv, [MatchRule("code", "code", case_sensitive=True)], fuzzy_rules=[])
    assert pairs(sensitive) == {("b2", "d2")}  # trimmed, but "eur" != "EUR"
    insensitive = run(bc, dv, [MatchRule("code", "code")], fuzzy_rules=[])
    assert pairs(insensitive) == {("b1", "d1"), ("b2", "d2")}


def test_blank_values_never_match():
    bc, dv = frames(
        [{"id": "b1", "code": ""}, {"id": "b2", "code": None}, {"id": "b3", "code": "  "}],
        [{"accountid": "d1", "code": ""}, {"accountid": "d2", "code": None}],
    )
    assert run(bc, dv, [MatchRule("code", "code")]).empty


def test_ambiguous_exact_match_reports_every_match_beyond_limit():
    bc, dv = frames(
        [{"id": "b1", "name": "Contoso"}, {"id": "b2", "name": "Fabrikam"}],
        [{"accountid": f"d{i}", "name": "contoso"} for i in range(5)]
        + [{"accountid": "f", "name": "Fabrikam"}],
    )
    out = run(bc, dv, [MatchRule("name", "name")], limit=2)
    contoso = out[out["bc_id"] == "b1"]
    assert set(contoso["dataverse_id"]) == {f"d{i}" for i in range(5)}
    assert contoso["ambiguous"].all() and (contoso["score"] == 100.0).all()
    assert out[out["bc_id"] == "b2"][["dataverse_id", "ambiguous"]].values.tolist() == [["f", False]]


def test_fuzzy_threshold_and_limit():
    bc, dv = frames(
        [{"id": "b1", "name": "Adatum Corporation"}, {"id": "b2", "name": "Trey Research"}],
        [
            {"accountid": "d1", "name": "Adatum Corp."},
            {"accountid": "d2", "name": "Adatum Corporations"},
            {"accountid": "d3", "name": "Trey Reserch"},
            {"accountid": "d4", "name": "Alpine Ski House"},
        ],
    )
    out = run(bc, dv, [MatchRule("name", "name")], threshold=85)
    assert (out["rule"] == "fuzzy").all() and (out["score"] >= 85).all() and (out["score"] < 100).all()
    assert pairs(out) == {("b1", "d1"), ("b1", "d2"), ("b2", "d3")}
    assert out[out["bc_id"] == "b1"]["dataverse_id"].tolist()[0] == "d2"  # best first
    assert not out["ambiguous"].any()
    assert pairs(run(bc, dv, [MatchRule("name", "name")], threshold=85, limit=1)) == {
        ("b1", "d2"),
        ("b2", "d3"),
    }
    strict = run(bc, dv, [MatchRule("name", "name")], threshold=99)
    assert strict.empty


def test_fuzzy_only_for_rows_without_exact_match_and_ties_are_ambiguous():
    bc, dv = frames(
        [
            {"id": "b1", "number": "C1", "name": "Northwind"},
            {"id": "b2", "number": "C2", "name": "Litware Inc"},
        ],
        [
            {"accountid": "d1", "accountnumber": "C1", "name": "Northwind Traders"},
            {"accountid": "d2", "accountnumber": "", "name": "Litware, Inc."},
            {"accountid": "d3", "accountnumber": "", "name": "LITWARE INC"},
            {"accountid": "d4", "accountnumber": "", "name": "Northwind"},
        ],
    )
    out = run(bc, dv, [MatchRule("number", "accountnumber")], fuzzy_rules=[MatchRule("name", "name")])
    assert out[out["bc_id"] == "b1"][["dataverse_id", "rule"]].values.tolist() == [["d1", "exact:0"]]
    litware = out[out["bc_id"] == "b2"]
    assert set(litware["dataverse_id"]) == {"d2", "d3"}
    assert (litware["score"] == 100.0).all() and litware["ambiguous"].all()
    assert (litware["rule"] == "fuzzy").all() and (litware["fields"] == "name=name").all()


def test_fuzzy_averages_fields_that_are_present_on_both_sides():
    bc, dv = frames(
        [{"id": "b1", "name": "Blue Yonder Airlines", "city": "Seattle"}],
        [
            {"accountid": "d1", "name": "Blue Yonder Airlines", "city": "Boston"},
            {"accountid": "d2", "name": "Blue Yonder Airline", "city": "Seattle"},
            {"accountid": "d3", "name": "Blue Yonder Airlines", "city": None},
        ],
    )
    out = run(bc, dv, [MatchRule("name", "name"), MatchRule("city", "city")], fuzzy_rules=None, threshold=60)
    scores = dict(zip(out["dataverse_id"], out["score"], strict=True))
    assert scores["d3"] == 100.0  # city blank on one side: name alone
    assert scores["d2"] > 95 > scores["d1"]


@pytest.mark.parametrize("empty", ["bc", "dv", "both"])
def test_empty_inputs_give_an_empty_typed_frame(empty: str):
    bc, dv = frames([{"id": "b1", "name": "A"}], [{"accountid": "d1", "name": "A"}])
    if empty in ("bc", "both"):
        bc = bc.iloc[:0]
    if empty in ("dv", "both"):
        dv = dv.iloc[:0]
    out = run(bc, dv, [MatchRule("name", "name")])
    assert out.empty and list(out.columns) == list(COLUMNS)
    assert out["score"].dtype == float and out["ambiguous"].dtype == bool


def test_no_rules_and_missing_columns():
    bc, dv = frames([{"id": "b1", "name": "A"}], [{"accountid": "d1", "name": "A"}])
    assert run(bc, dv, []).empty
    with pytest.raises(KeyError, match="lacks match column"):
        run(bc, dv, [MatchRule("displayName", "name")])


def test_5k_by_5k_finds_the_planted_pairs():
    """Correctness at size (no timing): exact codes, case-only differences and one-letter typos."""
    n = 5000
    rnd = random.Random(7)
    words = ["".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(5, 9))) for _ in range(4000)]
    names = [" ".join(rnd.sample(words, 3)).title() for _ in range(n)]
    numbers = [f"N{i:05d}" if i % 2 == 0 else "" for i in range(n)]  # odd rows: no number in BC
    bc = pd.DataFrame({"id": [f"b{i}" for i in range(n)], "number": numbers, "name": names})
    dv_names = [
        nm if i % 3 == 0 else nm.upper() if i % 3 == 1 else nm[:-1] + "#" for i, nm in enumerate(names)
    ]
    dv_numbers = [f"N{i:05d}" if i % 2 == 0 else f"M{i:05d}" for i in range(n)]
    dv = pd.DataFrame(
        {"accountid": [f"d{i}" for i in range(n)], "accountnumber": dv_numbers, "name": dv_names}
    )
    dv = dv.sample(frac=1, random_state=3)  # order must not matter
    rules = [MatchRule("number", "accountnumber", priority=0), MatchRule("name", "name", priority=1)]
    out = run(bc, dv, rules, fuzzy_rules=[MatchRule("name", "name")])
    best = out.drop_duplicates("bc_id")
    assert len(best) == n
    assert (best["bc_id"].str[1:] == best["dataverse_id"].str[1:]).all()
    rule = dict(zip(best["bc_id"], best["rule"], strict=True))
    for i in (0, 2, 4, 6):  # even: the number matches
        assert rule[f"b{i}"] == "exact:0"
    assert rule["b1"] == "exact:1" and rule["b3"] == "exact:1"  # odd, name equal ignoring case
    assert rule["b5"] == "fuzzy"  # odd, i % 3 == 2: one-letter typo
    assert (best["rule"] == "fuzzy").sum() == sum(1 for i in range(n) if i % 2 and i % 3 == 2)
    assert not out["ambiguous"].any()
