"""The reconcile core (d365kit.compare): comparison rules per field, pairing by key, the result's shape;
and the reconcile-core benchmark at a tiny size (its frames, both contenders, one run)."""

from __future__ import annotations

import importlib
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from d365kit.compare import Comparison, FieldSpec, compare, field_differs
from d365kit.mapping.transforms import equal, normalize

ROOT = Path(__file__).resolve().parents[1]


def differs(left: list, right: list, kind: str, **rules) -> list[bool]:
    return field_differs(
        pd.Series(left, dtype=object), pd.Series(right, dtype=object), kind, **rules
    ).tolist()


# -- the rules, field by field ---------------------------------------------------------------------------


def test_decimal_tolerance_is_inclusive_and_absolute():
    left = [100.0, 100.0, 100.0, -5.0, 1e9]
    right = [100.5, 100.5000001, 99.4999999, -4.5, 1e9 + 0.25]
    assert differs(left, right, "decimal", tolerance=0.5) == [False, True, True, False, False]
    # the default: half a cent (BC and Dataverse both round money to 2 decimals)
    assert differs([10.0, 10.0], [10.004, 10.01], "decimal") == [False, True]
    assert differs([10.0], [10.0], "decimal", tolerance=0.0) == [False]


def test_null_equals_null_and_never_a_value():
    for kind, value in [("text", "Adatum"), ("decimal", 1.5), ("integer", 3), ("date", "2026-11-20")]:
        assert differs([None, None, value], [None, value, None], kind) == [False, True, True], kind
    assert differs([float("nan")], [None], "decimal") == [False]


def test_blank_text_is_null_and_case_and_spaces_are_ignored_unless_case_sensitive():
    left = ["  Adatum ", "", "   ", "Adatum", "Straße", "Adatum Intl."]
    right = ["ADATUM", None, None, "adatum", "STRASSE", "Adatum"]
    assert differs(left, right, "text") == [False, False, False, False, False, True]
    assert differs(left, right, "text", case_sensitive=True) == [True, False, False, True, True, True]


@pytest.mark.parametrize(
    ("kind", "left", "right", "same"),
    [
        ("phone", "+1 (425) 555-0100", "+14255550100", True),
        ("phone", "+1 425 555 0100", "+1 425 555 0101", False),
        ("url", "https://www.Adatum.example/", "www.adatum.example", True),
        ("email", "Info@Adatum.example", "info@adatum.example", True),
        ("email", "info@adatum.example", "sales@adatum.example", False),
        ("guid", "00000000-0000-0000-0000-000000000000", None, True),
        ("guid", "A1B2C3D4-0000-0000-0000-000000000001", "a1b2c3d4-0000-0000-0000-000000000001", True),
        ("integer", 3, 3.0, True),
        ("integer", 3, 4, False),
        ("date", "2026-11-20T23:00:00Z", "2026-11-20", True),
        ("date", "2026-11-20", "2026-11-21", False),
        ("boolean", True, False, False),
    ],
)
def test_kinds(kind, left, right, same):
    assert differs([left], [right], kind) == [not same]


@pytest.mark.filterwarnings("ignore:Could not infer format")  # dates among the texts, on purpose
def test_string_columns_take_the_shortcut_with_the_same_verdicts():
    """Identical strings are settled without normalizing; the verdicts are those of normalize/equal."""
    rng = np.random.default_rng(3)
    pool = np.array(
        ["Adatum", " adatum", "ADATUM ", "", "  ", None, "Straße", "STRASSE", "Ǆemal", "ǆemal", "+1 425", "1425",
         "https://x.example/", "X.EXAMPLE", "00000000-0000-0000-0000-000000000000", "3", "3.0", "2026-11-20"],
        dtype=object,
    )  # fmt: skip
    left = pd.Series(pool[rng.integers(0, len(pool), 2_000)], dtype="string")
    right = pd.Series(pool[rng.integers(0, len(pool), 2_000)], dtype="string").sample(frac=1, random_state=1)
    right.iloc[:500] = left.iloc[:500].to_numpy()  # identical pairs (right's index is shuffled: ignored)
    for kind in ("text", "email", "phone", "url", "guid", "integer", "decimal", "date"):
        for case_sensitive in (False, True):
            a, b = (
                normalize(left, kind, case_sensitive),
                normalize(right.reset_index(drop=True), kind, case_sensitive),
            )
            expected = ~equal(a, b, kind).to_numpy(dtype=bool)
            got = field_differs(left, right, kind, case_sensitive)
            assert (got == expected).all(), (kind, case_sensitive)


def test_field_specs_are_checked():
    with pytest.raises(ValueError, match="not one of"):
        FieldSpec("a", "b", "money")
    with pytest.raises(ValueError, match=">= 0"):
        FieldSpec("a", "b", "decimal", tolerance=-0.01)
    with pytest.raises(ValueError, match="cannot pair"):
        field_differs(pd.Series([1.0]), pd.Series([1.0, 2.0]), "decimal")
    assert FieldSpec("a", "b").label == "b" and FieldSpec("a", "b", name="c").label == "c"


# -- pairing frames by key -------------------------------------------------------------------------------


def _frames(keys: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Left rows k0..k4, right rows k1..k5 in another order; k1 differs in name, k3 in amount."""
    k = keys
    left = pd.DataFrame(
        {
            "key": k[:5],
            "displayName": pd.array(["Adatum", " Fabrikam", "Contoso", "Litware", None], dtype="string"),
            "balance": [10.0, 20.0, 30.0, 40.0, 50.0],
        }
    )
    right = pd.DataFrame(
        {
            "key": [k[5], k[3], k[1], k[4], k[2]],
            "name": pd.array(["New", "LITWARE", "Fabrikam Inc.", None, "contoso "], dtype="string"),
            "revenue": [1.0, 40.5, 20.0, 50.004, 30.0],
        }
    )
    return left, right


FIELDS = [FieldSpec("displayName", "name"), FieldSpec("balance", "revenue", "decimal", tolerance=0.01)]


@pytest.mark.parametrize(
    "keys",
    [
        [str(uuid.UUID(int=i * 7919)) for i in range(6)],  # GUIDs: one byte length, matched by hash
        ["a", "bb", "ccc", "dddd", "eeeee", "ffffff"],  # other strings
        [10, 20, 30, 40, 50, 60],
    ],
    ids=["guid", "text", "int"],
)
def test_compare_pairs_rows_by_key_and_reports_the_differences(keys):
    left, right = _frames(keys)
    for result in (
        compare(left, right, FIELDS, on="key", progress=False),
        compare(left.set_index("key"), right.set_index("key"), FIELDS, progress=False),
    ):
        assert isinstance(result, Comparison)
        assert result.diff.index.tolist() == keys[1:5]  # paired keys, in left order
        assert result.diff.index.name == "key"
        assert result.diff.columns.tolist() == ["name", "revenue"]
        assert result.diff.to_numpy().tolist() == [
            [True, False],
            [False, False],
            [False, True],
            [False, False],
        ]
        assert result.counts.to_dict() == {"name": 1, "revenue": 1} and result.cells == 2
        assert result.values.to_dict("records") == [
            {"key": keys[1], "field": "name", "left": " Fabrikam", "right": "Fabrikam Inc."},
            {"key": keys[3], "field": "revenue", "left": 40.0, "right": 40.5},
        ]
        assert result.left_only.tolist() == [keys[0]] and result.right_only.tolist() == [keys[5]]


@pytest.mark.parametrize(
    "hashes",
    [lambda rows: np.zeros(len(rows), dtype=np.uint64), lambda rows: np.arange(len(rows), dtype=np.uint64)],
    ids=["colliding", "misleading"],
)
def test_bad_key_hashes_fall_back_to_matching_the_strings(monkeypatch, hashes):
    """Hashes only propose pairs: a collision, or a proposed pair whose strings differ, is caught.

    The hash path runs only for pyarrow-backed string keys (pyarrow is a dependency): the bad hashes must
    really have been used, else this test would pass without testing anything."""
    import d365kit.compare

    keys = [str(uuid.UUID(int=i * 7919)) for i in range(6)]
    left, _ = _frames(keys)
    assert left["key"].dtype.storage == "pyarrow"
    assert d365kit.compare._fixed_width_hash(pd.Index(left["key"])) is not None  # GUIDs: one byte length
    expected = compare(*_frames(keys), FIELDS, on="key", progress=False)
    calls: list[int] = []

    def bad(rows):
        calls.append(len(rows))
        return hashes(rows)

    monkeypatch.setattr(d365kit.compare, "_hash_rows", bad)
    result = compare(*_frames(keys), FIELDS, on="key", progress=False)
    assert calls and sum(calls) >= len(keys)  # the (bad) hashes were computed for the keys
    pd.testing.assert_frame_equal(result.diff, expected.diff)
    pd.testing.assert_frame_equal(result.values, expected.values)
    assert result.left_only.tolist() == [keys[0]] and result.right_only.tolist() == [keys[5]]


def test_text_normalizes_on_arrow_strings_so_the_pyarrow_casefold_runs(monkeypatch):
    """``normalize`` casefolds pyarrow-backed strings with pyarrow (Python only for non-ASCII values)."""
    import pyarrow.compute as pc

    lowered: list[int] = []
    real = pc.ascii_lower
    monkeypatch.setattr(pc, "ascii_lower", lambda arr: lowered.append(len(arr)) or real(arr))
    out = normalize(pd.Series([" Adatum ", "Straße", None, "ǄEMAL"], dtype=object), "text")
    assert out.dtype.storage == "pyarrow" and lowered == [4]
    assert out.tolist()[:2] == ["adatum", "strasse"] and pd.isna(out.iloc[2]) and out.iloc[3] == "ǆemal"


def test_compare_same_keys_in_the_same_order_and_no_differences():
    left = pd.DataFrame({"name": pd.array(["A", "b"], dtype="string")}, index=pd.Index(["x", "y"], name="id"))
    right = pd.DataFrame(
        {"name": pd.array(["a", "B "], dtype="string")}, index=pd.Index(["x", "y"], name="id")
    )
    result = compare(left, right, [FieldSpec("name", "name")], progress=False)
    assert result.cells == 0 and result.diff.shape == (2, 1) and not result.diff.to_numpy().any()
    assert result.values.columns.tolist() == ["key", "field", "left", "right"] and result.values.empty
    assert result.left_only.empty and result.right_only.empty


@pytest.mark.parametrize(
    "keys", [[str(uuid.UUID(int=i)) for i in range(3)], ["a", "bb", "ccc"]], ids=["guid", "text"]
)
def test_duplicate_keys_are_refused(keys):
    one = pd.DataFrame({"k": keys, "v": [1.0, 2.0, 3.0]})
    twice = pd.DataFrame({"k": [keys[0], keys[1], keys[1]], "v": [1.0, 2.0, 3.0]})
    spec = [FieldSpec("v", "v", "decimal")]
    with pytest.raises(ValueError, match="duplicate keys in the right"):
        compare(one, twice, spec, on="k", progress=False)
    with pytest.raises(ValueError, match="duplicate keys in the left"):
        compare(twice, one.iloc[::-1], spec, on="k", progress=False)
    with pytest.raises(ValueError, match="duplicate keys"):
        compare(twice, twice, spec, on="k", progress=False)


# -- the benchmark at a tiny size ------------------------------------------------------------------------


@pytest.fixture
def core(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("bench.reconcile_core")


def test_bench_frames_plant_what_compare_finds(core):
    left, right, planted = core.frames(rows=2_000, seed=11)
    assert len(left) == len(right) == 2_000 and sum(planted.values()) > 0
    assert left[core.KEY].tolist() != right[core.KEY].tolist()  # shuffled: the tools must join
    result = compare(left, right, core.FIELDS, on=core.KEY, progress=False)
    assert result.counts.to_dict() == planted
    assert result.left_only.empty and result.right_only.empty


def test_bench_runs_both_contenders_at_a_tiny_size(core, tmp_path):
    pytest.importorskip("datacompy", reason="datacompy comes with the bench extra: pip install -e '.[bench]'")
    from bench.context import BenchContext

    speed, memory = core.run(BenchContext(repeats=1, warmup=0, workdir=tmp_path), rows=1_000)
    for case in (speed, memory):
        assert case.baseline is not None and len(case.baseline.seconds) == len(case.best.seconds) == 1
        assert case.figure > 0
    assert core.PEAK in case.best.extra and core.PEAK in case.baseline.extra
