"""Why each record is in its category, what BC's next scheduled synchronization will do with it, and what
d365kit operation would fix it: the ``reason``, ``next_sync`` and ``action`` columns of a reconcile.

``next_sync`` follows how BC's integration engine treats a record (docs/reconcile.md#bc-integration-facts):
a record is synchronized only when its source side changed since the coupling's last synchronization or
its last result was a failure that is not skipped; a side that changed is written the way the mapping's
direction allows; both sides changed with a bidirectional field differing is an update conflict, settled
by the mapping's Update-Conflict Resolution (None: the record fails); a coupled row that no longer exists
is a deletion conflict, settled by the Deletion-Conflict Resolution; an uncoupled row is created on the
other side only when Synch. Only Coupled Records is off and the direction allows it; skipped couplings are
not retried until someone chooses Retry.

Everything is vectorized per category (a Python step per record only to join field names).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from d365kit.mapping import TableMapping

TO_DV, FROM_DV = "to_dataverse", "from_dataverse"


def _allows(m: TableMapping, direction: str) -> bool:
    return m.direction in ("bidirectional", direction)


def _differ(fields: pd.Series) -> pd.Series:
    """ "telephone1 differs" / "name, city differ", per record."""

    def say(f: object) -> str:
        names = [str(n) for n in f] if isinstance(f, tuple | list) else []
        if not names:
            return "mapped fields differ"
        return f"{', '.join(names)} {'differs' if len(names) == 1 else 'differ'}"

    return fields.map(say).astype("string")


def _update_action(m: TableMapping) -> str:
    if m.direction == TO_DV:
        return "update Dataverse from BC: plan_sync(..., direction='to_dataverse')"
    if m.direction == FROM_DV:
        return "update BC from Dataverse: plan_sync(..., direction='from_dataverse')"
    return "update the side that is wrong: plan_sync(..., direction='to_dataverse' or 'from_dataverse')"


def _pending(m: TableMapping, side: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(next_sync, action) of pending records, by the side that changed."""
    bc_ok, dv_ok = _allows(m, TO_DV), _allows(m, FROM_DV)
    writes_bc = "BC's next sync writes the BC values to Dataverse"
    writes_dv = "BC's next sync writes the Dataverse values to BC"
    never_bc = (
        f"never fixed by BC's sync: BC changed, but the mapping only syncs {m.direction.replace('_', ' ')}"
    )
    never_dv = f"never fixed by BC's sync: Dataverse changed, but the mapping only syncs {m.direction.replace('_', ' ')}"
    nxt = np.select(
        [side.eq("bc"), side.eq("dataverse"), side.eq("both")],
        [
            writes_bc if bc_ok else never_bc,
            writes_dv if dv_ok else never_dv,
            "BC's next sync writes each changed side's one-way fields (no bidirectional field differs)",
        ],
        default=writes_bc if bc_ok else writes_dv,
    )
    fixed = np.select([side.eq("bc"), side.eq("dataverse")], [bc_ok, dv_ok], default=True)
    action = np.where(
        fixed, "none needed: wait for the scheduled sync (or plan_sync to do it now)", _update_action(m)
    )
    return pd.Series(nxt, index=side.index), pd.Series(action, index=side.index)


def _conflict(m: TableMapping) -> str:
    if m.update_conflict == "Send Update to Integration":
        return (
            "BC's next sync overwrites Dataverse with the BC values (Update-Conflict Resolution: Send Update)"
        )
    if m.update_conflict == "Get Update from Integration":
        return (
            "BC's next sync overwrites BC with the Dataverse values (Update-Conflict Resolution: Get Update)"
        )
    return (
        "BC's next sync fails it: 'the mapping is bi-directional, and one or both values have changed since the "
        "last synchronization' (Update-Conflict Resolution: None)"
    )


def _missing(m: TableMapping, gone: str, other: str) -> tuple[str, str]:
    if m.deletion_conflict == "Restore Records":
        return (
            f"BC's next sync re-creates the {gone} row from the {other} row (Restore Records)",
            "none needed, or uncouple if the deletion was meant",
        )
    if m.deletion_conflict == "Remove Coupling":
        return (
            f"BC's next sync removes the coupling; the {other} row is then uncoupled (Remove Coupling)",
            "none needed, or plan_sync to re-create the row",
        )
    return (
        f"BC's next sync fails it when the {other} row changes: 'coupled to a deleted record' "
        "(Deletion-Conflict Resolution: None)",
        f"uncouple (plan_sync categories=['coupled_missing_{gone.lower()}']) or re-create the {gone} row",
    )


def _uncoupled(m: TableMapping, side: str, frame: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(reason, next_sync, action) of uncoupled rows on ``side`` ("bc" or "dataverse")."""
    here, there = ("BC", "Dataverse") if side == "bc" else ("Dataverse", "BC")
    direction = TO_DV if side == "bc" else FROM_DV
    score = pd.to_numeric(frame["match_score"], errors="coerce")
    has_match = score.notna().to_numpy()
    match_text = (
        "a "
        + there
        + " row "
        + frame["match_id"].astype("string").fillna("")
        + " matches it (score "
        + score.round(0).astype("Int64").astype("string").fillna("")
        + ", "
        + frame["match_rule"].astype("string").fillna("")
        + ")"
    )
    reason = np.where(
        has_match,
        f"in scope in {here}, no coupling; " + match_text,
        f"in scope in {here}, no coupling, no matching {there} row",
    )
    if not _allows(m, direction):
        nxt = f"never: the mapping only syncs {m.direction.replace('_', ' ')}"
    elif m.synch_only_coupled:
        nxt = "skipped: Synch. Only Coupled Records is on, so BC's sync never creates it in " + there
    else:
        nxt = f"BC's next sync creates it in {there} when it changes (Synch. Only Coupled Records is off)"
    dup = (
        f"{nxt}; creating would duplicate the matching row"
        if _allows(m, direction) and not m.synch_only_coupled
        else nxt
    )
    action = np.where(
        has_match,
        "couple to the match (plan_sync categories=['uncoupled_...'] couples it)",
        f"create in {there} (plan_sync) or leave it" if _allows(m, direction) else "none",
    )
    return (
        pd.Series(reason, index=frame.index),
        pd.Series(np.where(has_match, dup, nxt), index=frame.index),
        pd.Series(action, index=frame.index),
    )


def explain(records: pd.DataFrame, m: TableMapping) -> pd.DataFrame:
    """``records`` with ``reason``, ``next_sync`` and ``action`` filled for every record not in sync (an
    existing reason, e.g. which filter leaves a row out of scope, is kept and extended)."""
    out = records.copy()
    cat = out["category"]
    reason = (
        out["reason"].astype("string").fillna("")
        if "reason" in out
        else pd.Series("", index=out.index, dtype="string")
    )
    nxt = pd.Series("", index=out.index, dtype="string")
    action = pd.Series("", index=out.index, dtype="string")
    differ = _differ(out["fields"]) if "fields" in out else pd.Series("mapped fields differ", index=out.index)

    def put(mask: pd.Series, r: object, n: object, a: object) -> None:
        if mask.any():
            reason[mask] = r if not isinstance(r, pd.Series) else r[mask]
            nxt[mask] = n if not isinstance(n, pd.Series) else n[mask]
            action[mask] = a if not isinstance(a, pd.Series) else a[mask]

    drift = cat.eq("drift")
    put(
        drift,
        differ[drift] + ", though neither side changed since the last synchronization",
        "nothing: neither side changed, so BC's sync leaves the record as it is (counted Unchanged)",
        _update_action(m),
    )
    pending = cat.eq("pending")
    if pending.any():
        n, a = _pending(m, out["changed_side"].astype("string").fillna(""))
        put(
            pending,
            out["changed_side"].astype("string").fillna("?")
            + " changed since the last synchronization; "
            + differ,
            n,
            a,
        )
    conflict = cat.eq("conflict")
    put(
        conflict,
        "both sides changed since the last synchronization and " + differ,
        _conflict(m),
        "choose the winner: plan_sync(..., conflict='bc_wins' or 'dataverse_wins')",
    )
    for gone, other in (("BC", "Dataverse"), ("Dataverse", "BC")):
        mask = cat.eq(f"coupled_missing_{'bc' if gone == 'BC' else 'dataverse'}")
        n, a = _missing(m, gone, other)
        put(mask, f"coupled, but the {gone} row no longer exists", n, a)
    dup = cat.eq("duplicate_coupling")
    put(
        dup,
        "one row is coupled more than once ("
        + out["coupling_ids"].map(lambda c: str(len(c)) if isinstance(c, tuple) else "2")
        + " couplings)",
        "BC's sync follows one coupling; the rows of the others are never synchronized",
        "uncouple the extra couplings (plan_sync categories=['duplicate_coupling'])",
    )
    scope = cat.eq("out_of_scope")
    put(
        scope,
        reason.where(reason.ne(""), "a coupled row outside the mapping's filters"),
        "never: BC's sync reads only rows inside the mapping's filters",
        "uncouple, or change the row or the filter",
    )
    skipped = cat.eq("skipped")
    put(
        skipped,
        "BC marked the coupling Skipped (it failed twice with the same error); " + differ,
        "not retried until someone chooses Retry on Coupled Data Synchronization Errors",
        "fix the cause of the error, then retry: plan_sync(..., categories=['skipped'])",
    )
    failed = cat.eq("failed")
    put(
        failed,
        "the last synchronization of this record failed; " + differ,
        "retried on every scheduled run; fails again with the same error unless its cause is fixed",
        "fix the cause of the error (see the sync health error log), then plan_sync(..., categories=['failed'])",
    )
    for side in ("bc", "dataverse"):
        mask = cat.eq(f"uncoupled_{side}")
        if mask.any():
            r, n, a = _uncoupled(m, side, out[mask])
            put(mask, r.reindex(out.index), n.reindex(out.index), a.reindex(out.index))
    out["reason"], out["next_sync"], out["action"] = reason, nxt, action
    return out


__all__ = ["explain"]
