"""Executors: where scale-out work runs, chosen once per run (``run.executor``) by :func:`make_executor`.

* ``local`` (default, :mod:`cftdata.executors.local`): this process.
* ``ray`` (:mod:`cftdata.executors.ray_data`, the optional ``ray`` extra): Ray Data jobs on a cluster (or a
  local instance on 127.0.0.1) for the verify stage's checks and for in-process engines that scale out (vLLM).

The contract is in :mod:`cftdata.executors.base`; Ray is imported only when the Ray executor runs. See
``docs/scale-out.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cftdata.executors import local, ray_data  # noqa: F401  (registration side effects)
from cftdata.executors.base import EXECUTORS, Executor, Task

if TYPE_CHECKING:
    from cftdata.recipe import RunSpec

__all__ = ["EXECUTORS", "Executor", "Task", "make_executor"]


def make_executor(run: RunSpec, dry_run: bool = False) -> Executor:
    """The executor ``run.executor`` names: the one place it is chosen. A dry run runs everything in this
    process (executors differ in where work runs, never in what it gives)."""
    return EXECUTORS.get("local" if dry_run else run.executor)(run)
