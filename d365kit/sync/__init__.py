"""Selective sync: plan (``plan_sync`` -> ``SyncPlan``), apply through a journal (``apply``/``resume`` ->
``SyncRun``). See ``plan``, ``apply`` and ``journal`` for the rules."""

from d365kit.sync.apply import apply, resume
from d365kit.sync.journal import Journal, default_path
from d365kit.sync.model import Operation
from d365kit.sync.plan import SyncPlan, plan_sync
from d365kit.sync.run import SyncRun

__all__ = [
    "Journal",
    "Operation",
    "SyncPlan",
    "SyncRun",
    "apply",
    "default_path",
    "plan_sync",
    "resume",
]
