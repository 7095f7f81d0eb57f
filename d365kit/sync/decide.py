"""What each selected reconcile record becomes: ``intent`` (create, update, couple, uncouple, skip), the
direction and the reason, column-wise over the records.

- ``drift``, ``pending``, ``failed``, ``skipped`` -> update, in ``direction`` if given, else from the side
  that changed (``changed_side``), else the mapping's own direction when it has one, else the one direction
  all differing fields share; otherwise a skip that asks for a direction. A skipped coupling selected here
  is BC's Retry.
- ``conflict`` -> the ``conflict`` policy, as BC's Resolve Update Conflicts: ``skip`` (None: left as it is),
  ``bc_wins`` (Send Update to Integration), ``dataverse_wins`` (Get Update from Integration). An explicit
  ``direction`` does not decide conflicts.
- ``uncoupled_bc`` / ``uncoupled_dataverse`` -> couple when reconcile found an exact, unambiguous match
  (score 100), else create on the other side (+ couple). Choice: a fuzzy candidate (< 100) is not coupled;
  the reason names its score, so a reviewer can couple by hand instead of creating a near-duplicate.
- ``coupled_missing_bc`` / ``coupled_missing_dataverse`` -> uncouple (BC's "Remove Coupling"; choice: not
  "Restore Records", which would recreate a row someone deleted).
- ``duplicate_coupling``, ``out_of_scope``, ``in_sync`` -> skip, with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from d365kit.mapping import TableMapping
from d365kit.sync.model import IN_SYNC, POLICY_DIRECTION
from d365kit.sync.values import allows

UPDATES = ("drift", "pending", "failed", "skipped")
BASE_REASON = {
    "drift": "values differ though neither side changed since the last synchronization",
    "pending": "changed in {side} since the last synchronization",
    "failed": "retry of the failed synchronization",
    "skipped": "retry of a skipped coupling (BC's Retry)",
    "conflict": "update conflict (both sides changed) resolved by conflict={policy!r}",
    "uncoupled_bc": "coupled to its exact match",
    "uncoupled_dataverse": "coupled to its exact match",
}
SIDE_NAME = {"bc": "BC", "dataverse": "Dataverse", "both": "both systems"}


def _shared_direction(m: TableMapping, differing: pd.Series) -> np.ndarray:
    """Per record: the one direction all its differing fields sync in (bidirectional ones excluded), else ""."""
    by_dv = {f.dv: f.direction for f in m.compared}

    def one(names: Any) -> str:
        found = {by_dv.get(n) for n in (names if isinstance(names, tuple | list) else ())} - {
            "bidirectional",
            None,
        }
        return found.pop() if len(found) == 1 else ""

    return differing.map(one).to_numpy(dtype=object)


def _exact_pairs(candidates: pd.DataFrame) -> set[tuple[str, str]]:
    if candidates is None or candidates.empty:
        return set()
    exact = candidates[pd.to_numeric(candidates["score"], errors="coerce") >= 100]
    if "ambiguous" in exact:
        exact = exact[~exact["ambiguous"].astype("boolean").fillna(False).to_numpy(dtype=bool)]
    exact = exact[~exact["bc_id"].duplicated(keep=False) & ~exact["dataverse_id"].duplicated(keep=False)]
    return set(zip(exact["bc_id"].astype(str), exact["dataverse_id"].astype(str), strict=True))


def _pairs_in(left: pd.Series, right: pd.Series, pairs: set[tuple[str, str]]) -> np.ndarray:
    keys = left.astype("string").fillna("") + "|" + right.astype("string").fillna("")
    return keys.isin({f"{a}|{b}" for a, b in pairs}).to_numpy(dtype=bool)


def decide(
    m: TableMapping, recs: pd.DataFrame, candidates: pd.DataFrame, direction: str | None, conflict: str
) -> pd.DataFrame:
    """Per record: ``intent`` (create, update, couple, uncouple, skip), ``direction`` and ``reason`` (column-wise)."""
    n = len(recs)
    cat = recs["category"].astype("string").fillna("").to_numpy(dtype=object)
    side = recs["changed_side"].astype("string").fillna("").to_numpy(dtype=object)
    given = recs["reason"].astype("string").fillna("").to_numpy(dtype=object)
    by_side = np.select(
        [side == "bc", side == "dataverse"], ["to_dataverse", "from_dataverse"], default=""
    ).astype(object)
    own = m.direction if m.direction != "bidirectional" else ""
    shared = _shared_direction(m, recs["fields"]) if n else np.array([], dtype=object)
    natural = np.where(by_side != "", by_side, own or shared)
    policy = POLICY_DIRECTION.get(conflict, "")
    is_conflict = cat == "conflict"
    d_update = np.where(is_conflict, policy, np.full(n, direction, dtype=object) if direction else natural)
    exact = _exact_pairs(candidates)
    matched = ((cat == "uncoupled_bc") & _pairs_in(recs["bc_id"], recs["match_id"], exact)) | (
        (cat == "uncoupled_dataverse") & _pairs_in(recs["match_id"], recs["dataverse_id"], exact)
    )
    created = np.where(cat == "uncoupled_bc", "to_dataverse", "from_dataverse").astype(object)
    other = np.where(cat == "uncoupled_bc", "Dataverse", "BC").astype(object)
    score = pd.to_numeric(recs["match_score"], errors="coerce").round().astype("Int64").astype("string")
    note = np.where(
        score.isna(), "", " (best candidate scored " + score.fillna("") + " < 100: not coupled)"
    ).astype(object)
    side_name = np.array([SIDE_NAME.get(x, x) for x in side], dtype=object)
    base = np.select(
        [cat == "drift", cat == "pending", cat == "failed", cat == "skipped", is_conflict],
        [
            BASE_REASON["drift"],
            "changed in " + side_name + " since the last synchronization",
            BASE_REASON["failed"],
            BASE_REASON["skipped"],
            BASE_REASON["conflict"].format(policy=conflict),
        ],
        default="",
    ).astype(object)
    allowed = np.array([bool(d) and allows(m.direction, d) for d in d_update], dtype=bool)
    overrides = (by_side != "") & (by_side != d_update) & ~is_conflict & bool(direction)
    updates = np.isin(cat, [*UPDATES, "conflict"])
    uncoupled = np.isin(cat, ["uncoupled_bc", "uncoupled_dataverse"])
    can_create = np.array([allows(m.direction, d) for d in created], dtype=bool) & (
        (created == direction) if direction else np.ones(n, dtype=bool)
    )
    rules = [  # (condition, intent, direction, reason): the first that holds wins
        (cat == "in_sync", "skip", None, IN_SYNC),
        (
            updates & is_conflict & (policy == ""),
            "skip",
            None,
            "update conflict: both sides changed since the last synchronization "
            "(conflict='skip'; bc_wins or dataverse_wins picks the side that wins)",
        ),
        (updates & (d_update == ""), "skip", None, base + "; pass direction= to choose the side that wins"),
        (updates & ~allowed, "skip", None, base + f"; mapping {m.name} syncs {m.direction} only"),
        (
            updates,
            "update",
            d_update,
            np.where(overrides, base + " (direction=" + d_update.astype(str) + " overrides it)", base),
        ),
        (uncoupled & matched, "couple", direction or own or None, "coupled to its exact match"),
        (
            uncoupled & can_create,
            "create",
            created,
            "no coupling: created in " + other + " and coupled" + note,
        ),
        (
            uncoupled & bool(direction),
            "skip",
            None,
            "uncoupled: creating it in " + other + " needs direction " + created,
        ),
        (
            uncoupled,
            "skip",
            None,
            f"uncoupled: mapping {m.name} syncs {m.direction} only, so it is not created in " + other,
        ),
        (
            cat == "coupled_missing_bc",
            "uncouple",
            None,
            "the coupled BC row no longer exists: the coupling is removed (BC's Remove Coupling)",
        ),
        (
            cat == "coupled_missing_dataverse",
            "uncouple",
            None,
            "the coupled Dataverse row no longer exists: the coupling is removed (BC's Remove Coupling)",
        ),
        (cat == "duplicate_coupling", "skip", None, given + ": choose which coupling to remove"),
    ]
    conditions = [np.asarray(c, dtype=bool) for c, _, _, _ in rules]
    pick = lambda i: [np.broadcast_to(np.asarray(r[i], dtype=object), (n,)) for r in rules]  # noqa: E731
    fallback = np.where(given != "", given, np.char.replace(cat.astype(str), "_", " ").astype(object))
    return pd.DataFrame(
        {
            "intent": pd.Series(
                np.select(conditions, pick(1), default="skip"), index=recs.index, dtype=object
            ),
            "direction": pd.Series(
                np.select(conditions, pick(2), default=None), index=recs.index, dtype=object
            ),
            "reason": pd.Series(
                np.select(conditions, pick(3), default=fallback), index=recs.index, dtype=object
            ),
        },
        index=recs.index,
    )
