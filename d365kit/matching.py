"""Match candidates for uncoupled records: BC's match-based coupling rules first, then fuzzy scoring.

Why: an uncoupled record is either new on one side or a coupling that was never made (or was lost). BC's own
"Match-Based Coupling" (docs/reconcile.md#match-based-coupling) couples on the fields flagged "Use For Match-Based
Coupling". Its code (codeunit 5360 "CDS Int. Table Couple", ``CoupleRecords``) walks the Match Priorities
in ascending order (0/blank first) and *adds* each group's filters to those already set; a text field whose
BC value is blank sets no filter; case-insensitive fields filter with ``@``. The first priority that leaves
exactly one row couples it; none or more than one ("more than one match") leaves the record uncoupled.
This module reproduces that as *suggestions* (the unique match, else the narrowest ambiguous set), then
scores the records no rule matched with rapidfuzz so a typo or an abbreviation still yields a candidate.
Nothing here couples.

Choices (UNVERIFIED where BC has no counterpart):
- Values are compared as trimmed text (BC does not trim; whitespace is noise for an analyst). Missing and
  empty values are blank: blank on the BC side constrains nothing, blank on the Dataverse side matches
  nothing.
- Fuzzy scoring (rapidfuzz ``WRatio`` by default) ignores case and punctuation (``default_process``) whatever
  the rule says, uses every field of ``fuzzy_rules`` (default: all rules; prefer text-like fields, since
  codes fuzz into false neighbours such as N0001/N0002) and averages the per-field scores over the fields
  non-blank on both sides. A candidate needs ``score >= threshold``.
- Blocking: a pair is scored only if, on some field, its two values share the first character and that
  field alone reaches the threshold (a mean at or above the threshold implies such a field). A pair whose
  strong fields all differ in their first character is missed. BC rows go in chunks of at most
  ``CHUNK_CELLS`` pairs against the Dataverse rows, so memory stays bounded; 10k x 10k names take ~3 s on
  two cores.
- ``ambiguous`` describes the BC record: for exact rules BC's "more than one match", for fuzzy scoring a
  best score shared by more than one Dataverse row. All rows tied at the best score are reported, even
  beyond ``limit``; exact matches are never cut by ``limit``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process, utils
from tqdm.auto import tqdm

from d365kit.errors import UnknownNameError

COLUMNS = ("bc_id", "dataverse_id", "score", "rule", "fields", "ambiguous")
CHUNK_CELLS = 4_000_000  # BC x Dataverse pairs handled at once (bounds every score matrix and pair list)
_PROGRESS_CELLS = 20_000_000  # show a progress bar when the fuzzy stage compares more pairs than this


@dataclass(frozen=True)
class MatchRule:
    """One match field pair: BC column ``bc`` against Dataverse column ``dv`` (transformed, comparable values)."""

    bc: str
    dv: str
    priority: int = 0
    case_sensitive: bool = False

    @property
    def label(self) -> str:
        return f"{self.bc}={self.dv}"


def candidates(
    bc: pd.DataFrame,
    dv: pd.DataFrame,
    rules: list[MatchRule],
    *,
    bc_key: str,
    dv_key: str,
    threshold: float = 85.0,
    limit: int = 3,
    fuzzy_rules: list[MatchRule] | None = None,
    scorer: Callable[..., float] = fuzz.WRatio,
) -> pd.DataFrame:
    """Candidate Dataverse rows for each BC row (columns ``COLUMNS``), best first per BC row.

    ``bc``/``dv`` hold the uncoupled rows of one mapping; ``score`` is 0-100 (exact = 100); ``rule`` is
    ``exact:<priority>`` or ``fuzzy``; ``fields`` names the compared field pairs (``bc=dv, ...``).
    ``fuzzy_rules`` (default: ``rules``) are the fields scored for BC rows no exact rule matched, e.g. the
    names when the exact rules are codes; ``[]`` turns fuzzy matching off.
    """
    fuzzy_rules = rules if fuzzy_rules is None else fuzzy_rules
    _check_columns(bc, [bc_key, *(r.bc for r in [*rules, *fuzzy_rules])], "BC")
    _check_columns(dv, [dv_key, *(r.dv for r in [*rules, *fuzzy_rules])], "Dataverse")
    if bc.empty or dv.empty:
        return _empty()
    exact, matched = _exact(bc, dv, rules, bc_key, dv_key)
    rest = bc[~bc[bc_key].isin(matched)]
    fuzzy = _fuzzy(rest, dv, fuzzy_rules, bc_key, dv_key, threshold, limit, scorer)
    parts = [f for f in (exact, fuzzy) if not f.empty]
    if not parts:
        return _empty()
    out = pd.concat(parts, ignore_index=True)
    order = pd.Index(bc[bc_key].unique())
    out["_pos"] = order.get_indexer(out["bc_id"])
    out = out.sort_values(["_pos", "score", "dataverse_id"], ascending=[True, False, True], kind="stable")
    return out.drop(columns="_pos").reset_index(drop=True)[list(COLUMNS)]


def _check_columns(frame: pd.DataFrame, names: list[str], side: str) -> None:
    missing = [n for n in dict.fromkeys(names) if n not in frame.columns]
    if missing:
        raise UnknownNameError(f"{side} frame lacks match column(s) {missing}; it has {list(frame.columns)}")


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bc_id": pd.Series(dtype=object),
            "dataverse_id": pd.Series(dtype=object),
            "score": pd.Series(dtype=float),
            "rule": pd.Series(dtype=object),
            "fields": pd.Series(dtype=object),
            "ambiguous": pd.Series(dtype=bool),
        }
    )


def _text(values: pd.Series) -> pd.Series:
    """Comparable text: missing -> "", everything else its trimmed string form."""
    return values.astype("string").fillna("").str.strip().astype(object)


# -- exact: BC's match-based coupling ---------------------------------------------------------------


def _exact(
    bc: pd.DataFrame, dv: pd.DataFrame, rules: list[MatchRule], bc_key: str, dv_key: str
) -> tuple[pd.DataFrame, set]:
    """BC's match-based coupling (codeunit 5360 "CDS Int. Table Couple", ``CoupleRecords``), vectorized.

    Per BC record BC walks the priorities in ascending order and *adds* each group's field filters to the
    filters already set (the record ref is not cleared between priorities), skipping text fields whose BC
    value is blank; a priority whose fields are all blank counts as no match. The first priority leaving
    exactly one row couples it; otherwise the record stays uncoupled ("more than one match" / "no match").
    Here: the unique match where there is one, else the narrowest ambiguous set, flagged ``ambiguous``.
    Returns the candidates and the BC ids that have any.
    """
    if not rules:
        return _empty(), set()
    left = [_normalized(bc[r.bc], r.case_sensitive) for r in rules]
    right = [_normalized(dv[r.dv], r.case_sensitive) for r in rules]
    present = np.column_stack([(v != "") for v in left])  # BC row x rule: the value constrains
    bc_ids, dv_ids = bc[bc_key].to_numpy(dtype=object), dv[dv_key].to_numpy(dtype=object)
    open_rows = np.ones(len(bc), dtype=bool)  # no unique match yet
    unique: list[pd.DataFrame] = []
    narrowest = pd.DataFrame(columns=["r", "c", "fields", "priority"])
    active: list[int] = []
    for priority in sorted({r.priority for r in rules}):
        group = [i for i, r in enumerate(rules) if r.priority == priority]
        active += group
        rows = np.flatnonzero(open_rows & present[:, group].any(axis=1))
        pairs = _filter_pairs(left, right, present, rows, active, [r.label for r in rules])
        if pairs.empty:
            continue
        pairs = pairs.assign(priority=priority)
        size = pairs.groupby("r")["c"].transform("size")
        single = pairs[size == 1]
        unique.append(single)
        open_rows[single["r"].to_numpy()] = False
        multi = pairs[size > 1]
        narrowest = pd.concat([narrowest[~narrowest["r"].isin(multi["r"])], multi], ignore_index=True)
    narrowest = narrowest[open_rows[narrowest["r"].to_numpy(dtype=np.int64)]]
    found = pd.concat([*unique, narrowest], ignore_index=True)
    if found.empty:
        return _empty(), set()
    r, c = found["r"].to_numpy(dtype=np.int64), found["c"].to_numpy(dtype=np.int64)
    out = pd.DataFrame(
        {
            "bc_id": bc_ids[r],
            "dataverse_id": dv_ids[c],
            "score": 100.0,
            "rule": ("exact:" + found["priority"].astype(str)).to_numpy(dtype=object),
            "fields": found["fields"].to_numpy(dtype=object),
            "ambiguous": open_rows[r],  # a row without a unique match only has its narrowest ambiguous set
        }
    )
    return out, set(out["bc_id"])


def _normalized(values: pd.Series, case_sensitive: bool) -> np.ndarray:
    text = _text(values)
    return (text if case_sensitive else text.str.casefold()).to_numpy(dtype=object)


def _filter_pairs(
    left: list[np.ndarray],
    right: list[np.ndarray],
    present: np.ndarray,
    rows: np.ndarray,
    active: list[int],
    labels: list[str],
) -> pd.DataFrame:
    """(BC row ``r``, DV row ``c``) pairs equal on every active rule whose BC value is non-blank.

    BC rows are grouped by which active rules constrain them (a handful of fields, so few patterns) and each
    group is one merge on those fields; ``fields`` names the rules used.
    """
    empty = pd.DataFrame(columns=["r", "c", "fields"])
    if len(rows) == 0:
        return empty
    patterns = pd.DataFrame(present[np.ix_(rows, active)], columns=active).assign(_r=rows)
    out: list[pd.DataFrame] = []
    for key, members in patterns.groupby(active, sort=False)["_r"]:
        used = tuple(i for i, on in zip(active, np.atleast_1d(key), strict=True) if on)
        if not used:
            continue
        lhs = pd.DataFrame({f"k{i}": left[i][members.to_numpy()] for i in used}).assign(r=members.to_numpy())
        rhs = pd.DataFrame({f"k{i}": right[i] for i in used}).assign(c=np.arange(len(right[0])))
        merged = lhs.merge(rhs, on=[f"k{i}" for i in used])[["r", "c"]]
        out.append(merged.assign(fields=", ".join(labels[i] for i in used)))
    return pd.concat(out, ignore_index=True) if out else empty


# -- fuzzy: rapidfuzz over blocked, chunked candidates -----------------------------------------------


def _processed(frame: pd.DataFrame, columns: list[str]) -> list[np.ndarray]:
    """Per field: lower-cased text, punctuation and runs of spaces as one space ("" = blank)."""
    return [
        _text(frame[c]).map(utils.default_process).str.replace(r"\s+", " ", regex=True).to_numpy(dtype=object)
        for c in columns
    ]


def _blocks(values: np.ndarray) -> dict[str, np.ndarray]:
    """Row positions by the first character of the value (blank values are in no block)."""
    first = pd.Series(values, dtype=object).str[:1]
    return {k: v for k, v in first.groupby(first.to_numpy()).indices.items() if k != ""}


def _fuzzy(
    bc: pd.DataFrame,
    dv: pd.DataFrame,
    rules: list[MatchRule],
    bc_key: str,
    dv_key: str,
    threshold: float,
    limit: int,
    scorer: Callable[..., float],
) -> pd.DataFrame:
    """Fuzzy candidates: pairs found per field within first-character blocks, then scored on all fields.

    A pair's score is the mean of its per-field scores, so a pair at or above ``threshold`` has at least one
    field at or above it: collecting, per field, the block pairs that reach the threshold (``score_cutoff``)
    finds every such pair whose strong field shares its first character. BC rows go in chunks so no
    matrix exceeds ``CHUNK_CELLS`` cells.
    """
    if bc.empty or not rules or limit < 1:
        return _empty()
    left = _processed(bc, [r.bc for r in rules])
    right = _processed(dv, [r.dv for r in rules])
    right_blocks = [_blocks(v) for v in right]
    bc_ids, dv_ids = bc[bc_key].to_numpy(dtype=object), dv[dv_key].to_numpy(dtype=object)
    step = max(1, CHUNK_CELLS // len(dv))
    found: list[pd.DataFrame] = []
    cells = len(bc) * len(dv)
    with tqdm(total=cells, desc="fuzzy match", unit="pair", disable=cells < _PROGRESS_CELLS) as bar:
        for start in range(0, len(bc), step):
            rows = np.arange(start, min(start + step, len(bc)))
            r, c = _block_pairs(left, right, right_blocks, rows, threshold, scorer)
            score = _pair_scores(left, right, r, c, scorer)
            found.append(_best(r, c, score, threshold, limit))
            bar.update(len(rows) * len(dv))
    out = pd.concat(found, ignore_index=True)
    if out.empty:
        return _empty()
    return pd.DataFrame(
        {
            "bc_id": bc_ids[out["r"].to_numpy()],
            "dataverse_id": dv_ids[out["c"].to_numpy()],
            "score": out["score"].to_numpy(dtype=float),
            "rule": "fuzzy",
            "fields": ", ".join(r.label for r in rules),
            "ambiguous": out["ambiguous"].to_numpy(dtype=bool),
        }
    )


def _block_pairs(
    left: list[np.ndarray],
    right: list[np.ndarray],
    right_blocks: list[dict[str, np.ndarray]],
    rows: np.ndarray,
    threshold: float,
    scorer: Callable[..., float],
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (bc row, dv row) pairs where some field reaches ``threshold`` within its block."""
    rs: list[np.ndarray] = []
    cs: list[np.ndarray] = []
    for lv, rv, blocks in zip(left, right, right_blocks, strict=True):
        for block, sub in _blocks(lv[rows]).items():
            cols = blocks.get(block)
            if cols is None:
                continue
            m = process.cdist(
                lv[rows[sub]], rv[cols], scorer=scorer, score_cutoff=threshold, dtype=np.float32, workers=-1
            )
            i, j = np.nonzero(m >= max(threshold, np.finfo(np.float32).tiny))
            rs.append(rows[sub][i])
            cs.append(cols[j])
    if not rs:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    pairs = np.unique(np.column_stack([np.concatenate(rs), np.concatenate(cs)]), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _pair_scores(
    left: list[np.ndarray],
    right: list[np.ndarray],
    r: np.ndarray,
    c: np.ndarray,
    scorer: Callable[..., float],
) -> np.ndarray:
    """Mean per-field score of each pair over the fields non-blank on both sides (2 decimals, so ties tie)."""
    total = np.zeros(len(r), dtype=np.float64)
    count = np.zeros(len(r), dtype=np.float64)
    for lv, rv in zip(left, right, strict=True):
        a, b = lv[r], rv[c]
        both = (a != "") & (b != "")
        if both.any():
            total[both] += process.cpdist(a[both], b[both], scorer=scorer, dtype=np.float32, workers=-1)
            count[both] += 1
    return np.round(np.divide(total, count, out=np.zeros_like(total), where=count > 0), 2)


def _best(r: np.ndarray, c: np.ndarray, score: np.ndarray, threshold: float, limit: int) -> pd.DataFrame:
    """Per BC row: the top ``limit`` pairs at or above ``threshold``, plus every pair tied at the best score."""
    pairs = pd.DataFrame({"r": r, "c": c, "score": score})
    pairs = pairs[pairs["score"] >= threshold].sort_values(["r", "score", "c"], ascending=[True, False, True])
    by_row = pairs.groupby("r")["score"]
    best = by_row.transform("max")
    tied = (pairs["score"] == best).groupby(pairs["r"]).transform("sum")
    keep = (pairs.groupby("r").cumcount() < limit) | (pairs["score"] == best)
    return pairs.assign(ambiguous=tied > 1)[keep]
