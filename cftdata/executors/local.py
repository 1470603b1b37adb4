"""``run.executor: local`` (the default): everything runs in this process.

Backends are called where they are; a task's worker is built once (keyed on the task) and kept for the whole
run, so a process pool or a loaded model serves every shard, and closed with the executor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from cftdata.executors.base import EXECUTORS, Executor, Task


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    name = "local"

    def __init__(self, run: Any = None) -> None:
        super().__init__(run)
        self._workers: dict[tuple[str, str], Any] = {}

    def worker(self, task: Task) -> Any:
        """The live worker for ``task`` (built on first use)."""
        key = task.key()
        if key not in self._workers:
            self._workers[key] = task.worker(**task.kwargs)
        return self._workers[key]

    def map(self, task: Task, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        if not items:
            return iter(())
        return enumerate(self.worker(task)(list(items)))

    def close(self) -> None:
        workers, self._workers = self._workers, {}
        for w in workers.values():
            close = getattr(w, "close", None)
            if close is not None:
                close()
