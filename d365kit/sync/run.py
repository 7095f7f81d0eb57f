"""``SyncRun``: what a run did, as the journal records it: every operation's end state, the job rows and
error rows, and the counts of BC's Integration Synch. Job."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from d365kit.document import Document


@dataclass
class SyncRun:
    """What a run did: every operation's end state, the job rows and error rows it wrote."""

    run_id: str
    journal: Path
    operations: pd.DataFrame
    jobs: pd.DataFrame
    errors: pd.DataFrame
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """inserted / modified / unchanged / skipped / failed / coupled / uncoupled over the run's jobs."""
        keys = ("inserted", "modified", "unchanged", "skipped", "failed", "coupled", "uncoupled")
        return {k: int(self.jobs[k].sum()) if k in self.jobs else 0 for k in keys}

    @property
    def conflicts(self) -> pd.DataFrame:
        return self.operations[self.operations["state"] == "conflict"].reset_index(drop=True)

    @property
    def failed(self) -> pd.DataFrame:
        return self.operations[self.operations["state"] == "failed"].reset_index(drop=True)

    @property
    def stale(self) -> pd.DataFrame:
        """Operations not written because their source changed after planning (plan them again)."""
        return self.operations[self.operations["state"] == "stale"].reset_index(drop=True)

    @property
    def unknown(self) -> pd.DataFrame:
        """Operations whose outcome is not verified yet (resume the run: it verifies them first)."""
        return self.operations[self.operations["state"].isin(["planned", "sent", "unknown"])].reset_index(
            drop=True
        )

    @property
    def already_applied(self) -> pd.DataFrame:
        """Operations an earlier run of the same plan finished (a replay): not sent again."""
        return self.operations[self.operations["state"] == "already_applied"].reset_index(drop=True)

    @property
    def ok(self) -> bool:
        """Every operation done, skipped or already applied; every coupling change made."""
        return (
            bool(self.operations["state"].isin(["done", "skipped", "already_applied"]).all())
            and not self.operations["coupling_state"].isin(["failed", "pending"]).any()
        )

    def to_frame(self) -> pd.DataFrame:
        return self.operations

    def summary(self) -> pd.DataFrame:
        """Operations per mapping, kind and end state."""
        if self.operations.empty:
            return pd.DataFrame(columns=["mapping", "kind", "state", "operations"])
        out = self.operations.groupby(["mapping", "kind", "state"], sort=False).size().rename("operations")
        return out.reset_index()

    def document(self) -> Document:
        """What the run shows: its counts, operations per mapping/kind/state, failures and warnings."""
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        doc = Document(
            f"Sync run {self.run_id}",
            [f"Applied: {counts} ({self.seconds:.1f} s)", f"Journal: {self.journal}"],
        )
        doc.add("Summary", self.summary())
        if len(self.failed):
            doc.add("Failed", self.failed)
        if len(self.conflicts):
            doc.add("Conflicts", self.conflicts)
        doc.notes += self.warnings
        return doc

    def to_html(self, limit: int | None = 200) -> str:
        return self.document().to_html(limit)

    def to_text(self, limit: int | None = 20) -> str:
        return self.document().to_text(limit)

    def _repr_html_(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        return f"<p>SyncRun {self.run_id}: {counts} ({self.seconds:.1f} s)</p>" + self.summary().to_html(
            index=False
        )

    def __repr__(self) -> str:
        return f"SyncRun({self.run_id}, {self.counts})"
