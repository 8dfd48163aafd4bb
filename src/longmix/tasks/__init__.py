"""Synthetic long-range tasks (seeded generators with exact metrics) and a small real-text task.

``TASKS`` maps a name to the task class; every task has ``generate(n, *, seed, split)``
returning a :class:`Batch` and ``evaluate(outputs, batch)`` returning its metrics.
"""
from .base import IGNORE, Batch
from .induction import Induction
from .listops import ListOps
from .mqar import MQAR
from .passkey import Passkey
from .regression import Regression
from .selective_copy import SelectiveCopy
from .text import KJVText, TaskUnavailable

TASKS = {t.name: t for t in (MQAR, SelectiveCopy, Passkey, Regression, Induction, ListOps, KJVText)}

__all__ = ["TASKS", "IGNORE", "Batch", "MQAR", "SelectiveCopy", "Passkey", "Regression", "Induction", "ListOps",
           "KJVText", "TaskUnavailable"]
