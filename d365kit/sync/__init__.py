"""Selective sync: plan (``plan_sync`` -> ``SyncPlan``), apply through a journal (``apply``/``resume`` ->
``SyncRun``). See ``plan``, ``apply`` and ``journal`` for the rules."""

from d365kit.sync.apply import SyncRun, apply, resume
from d365kit.sync.journal import Journal, default_path
from d365kit.sync.model import Operation, SyncDirectionError, SyncPlanError
from d365kit.sync.plan import SyncPlan, plan_sync

__all__ = [
    "Journal",
    "Operation",
    "SyncDirectionError",
    "SyncPlan",
    "SyncPlanError",
    "SyncRun",
    "apply",
    "default_path",
    "plan_sync",
    "resume",
]
