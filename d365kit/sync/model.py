"""The operation model of a selective sync: what one step does, to which row, why, and with which values.

One ``Operation`` per record. Its ``kind`` says what the user reads in a plan; underneath, an operation is
at most one record write plus at most one coupling change:

=========  ==========================  ============================================================
kind       record write                coupling (BC table 5331, through the companion API)
=========  ==========================  ============================================================
create     create the row (client id)  add a new coupling to it
update     update the changed fields   move the existing coupling's last-sync timestamps
couple     update fields if any differ add a new coupling (an exact match that no coupling names)
uncouple   none                        remove the coupling
skip       none                        none (the reason says why)
=========  ==========================  ============================================================

``before``/``after`` hold the target's values keyed by the target column as the service reads it (a
Dataverse lookup as ``_<name>_value``); ``body`` is the request body that writes ``after``. Ids are chosen
when planning: a create carries its new row's id and its coupling's id, so a retry cannot duplicate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

KINDS = ("create", "update", "couple", "uncouple", "skip")
SYNC_DIRECTIONS = ("to_dataverse", "from_dataverse")
POLICIES = ("skip", "bc_wins", "dataverse_wins")  # BC's update-conflict resolution: None / Send / Get
POLICY_DIRECTION = {"bc_wins": "to_dataverse", "dataverse_wins": "from_dataverse"}
# planned: not sent yet; sent: sent, no answer yet; unknown: sent, outcome not verified (verify by reading);
# done / failed / conflict / skipped; stale: not sent, the source changed after planning (re-plan);
# already_applied: a replay of an operation an earlier run of the same journal finished.
STATES = ("planned", "sent", "unknown", "done", "failed", "conflict", "skipped", "stale", "already_applied")
FINAL = frozenset({"done", "failed", "conflict", "skipped", "stale", "already_applied"})
OPEN = frozenset({"planned", "sent", "unknown"})  # a run with one of these is not finished
STALE_POLICIES = ("stop", "current")  # a source changed after planning: stale, or write its current value
IN_SYNC = "nothing to write: the mapped fields agree"
BC_DIRECTION = {"to_dataverse": "ToIntegrationTable", "from_dataverse": "FromIntegrationTable"}


@dataclass
class Operation:
    """One planned step; see the module docstring. ``etag`` is the target row's ETag as read when planning
    (sent as ``If-Match``); ``target_stamp``/``source_stamp`` the rows' modification times then;
    ``synced`` the coupling's last-sync timestamps (``bc``/``dataverse``) before the run."""

    op_id: str
    mapping: str
    kind: str
    direction: str | None
    category: str
    reason: str
    bc_id: str | None = None
    dataverse_id: str | None = None
    coupling_id: str | None = None
    bc_key: str | None = None
    table_id: int | None = None
    target_set: str | None = None  # entity set written (BC or Dataverse, by ``direction``)
    target_api: str | None = None  # BC API path of ``target_set`` (v2.0 or the companion API)
    stamp_field: str | None = (
        None  # the target's modification time property (modifiedon, lastModifiedDateTime)
    )
    fields: tuple[str, ...] = ()  # catalog fields written (Dataverse attribute or BC property)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    etag: str | None = None
    target_stamp: str | None = None
    source_stamp: str | None = None
    synced: dict[str, str | None] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    source_set: str | None = None  # the source row's entity set (re-read at apply: changed since planning?)
    source_api: str | None = None  # BC API path of ``source_set``
    source_stamp_field: str | None = None  # the source's modification time property
    truncated: dict[str, int] = field(default_factory=dict)  # column -> original length (``truncate=True``)

    @property
    def write(self) -> str | None:
        """The record write: "create", "update" or None."""
        if self.kind == "create":
            return "create"
        if self.kind == "update" or (self.kind == "couple" and self.after):
            return "update"
        return None

    @property
    def coupling_action(self) -> str | None:
        return {"create": "add", "couple": "add", "update": "update", "uncouple": "remove"}.get(self.kind)

    @property
    def source_id(self) -> str | None:
        return {"to_dataverse": self.bc_id, "from_dataverse": self.dataverse_id}.get(self.direction or "")

    @property
    def record_ids(self) -> set[str]:
        """The ids that name this record (BC id, Dataverse id, coupling id), lower case."""
        return {i.lower() for i in (self.bc_id, self.dataverse_id, self.coupling_id) if i}

    @property
    def target(self) -> str | None:
        """The side written: "dataverse" (to_dataverse) or "bc" (from_dataverse)."""
        return {"to_dataverse": "dataverse", "from_dataverse": "bc"}.get(self.direction or "")

    @property
    def target_id(self) -> str | None:
        return (
            self.dataverse_id if self.target == "dataverse" else self.bc_id if self.target == "bc" else None
        )

    def to_json(self) -> str:
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, default=str)

    @classmethod
    def from_json(cls, text: str) -> Operation:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        op = cls(**{k: v for k, v in data.items() if k in known})
        op.fields, op.depends_on = tuple(op.fields), tuple(op.depends_on)
        return op
