"""The executor contract: where scale-out work runs, chosen once per run from ``run.executor``.

Stages and backends never ask which executor runs them. The pipeline makes one with
:func:`cftdata.executors.make_executor` and hands it on:

* to the model layer as the *placement* of backends (:meth:`Executor.place`): an in-process engine that may
  scale out (``Backend.scale_out``, vLLM) is run on the executor's workers, built there from its spec by
  :class:`BackendWorker`, and a :class:`ShippedBackend` stands in for it here. Every other backend (HTTP
  APIs with their rate limiter, batch APIs) runs in this process whatever the executor.
* to stages as :meth:`Executor.map`: a :class:`Task` (a worker class, its constructor arguments, the
  resources one worker needs) applied to a list of items, results streamed back in order. The verify stage
  runs its math-verify pool this way.

A worker class is built once per worker from keyword arguments (picklable), called on lists of items, and
closed with ``close()`` if it has one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from cftdata.backends.base import Backend, OnResult, Request, Result
from cftdata.registry import Registry

if TYPE_CHECKING:
    from cftdata.recipe import RunSpec


@dataclass(frozen=True)
class Task:
    """Work for an executor: ``worker(**kwargs)`` is built once per worker, then called on lists of items."""

    worker: type
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: CPU cores one worker uses (a pool of processes counts all of them).
    cpus: float = 1
    #: Whether one worker needs an accelerator (the executor decides how much of one).
    accelerator: bool = False

    def key(self) -> tuple[str, str]:
        """Tasks with equal keys can share a worker."""
        return f"{self.worker.__module__}.{self.worker.__qualname__}", repr(sorted(self.kwargs.items()))


class Executor(ABC):
    """Runs tasks over items (:meth:`map`) and decides where backends run (:meth:`place`)."""

    name: ClassVar[str]

    def __init__(self, run: RunSpec) -> None:
        self.run = run

    @abstractmethod
    def map(self, task: Task, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """``(index, output)`` for every item, in item order, each as soon as its batch is done."""

    def runs_elsewhere(self, backend: Backend) -> bool:
        """Whether this executor runs ``backend``'s engine on its own workers."""
        return False

    def place(self, backend: Backend) -> Backend:
        """The backend to call in this process: ``backend`` itself, or a stand-in that ships its requests to
        this executor's workers."""
        return ShippedBackend(backend, self) if self.runs_elsewhere(backend) else backend

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers and clusters."""


EXECUTORS: Registry[type[Executor]] = Registry("executor")


# ---------------------------------------------------------------------------------------------
# backends on workers


class BackendWorker:
    """A worker that builds a backend from its spec and answers lists of requests with it: the very backend
    code that runs in process, built once per worker."""

    def __init__(self, backend_cls: type[Backend], spec: dict[str, Any]) -> None:
        from cftdata.recipe import ModelSpec

        self.backend = backend_cls(ModelSpec.model_validate(spec))

    def __call__(self, requests: list[Request]) -> list[Result]:
        out: list[Result | None] = [None] * len(requests)

        def on_result(i: int, r: Result) -> None:
            out[i] = r

        try:
            self.backend.generate(requests, on_result)
        except Exception as e:  # a failed batch becomes error results, never a lost build
            detail = f"{type(e).__name__}: {e}"[:500]
            out = [r or Result(error="worker_error", error_detail=detail) for r in out]
        return [r or Result(error="no_result", error_detail="the worker returned nothing") for r in out]

    def close(self) -> None:
        self.backend.close()


class ShippedBackend(Backend):
    """Stands in for a backend whose engine runs on an executor's workers; same name, cache namespace and
    shard needs, so cached answers are shared with the in-process engine."""

    def __init__(self, inner: Backend, executor: Executor) -> None:
        super().__init__(inner.spec)
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.min_shard_rows = inner.min_shard_rows  # type: ignore[misc]
        self.executor = executor
        self.calls = 0
        from cftdata.recipe import ModelSpec

        spec = inner.spec.model_dump(include=set(ModelSpec.model_fields))  # respond/teacher extras dropped
        self.task = Task(BackendWorker, {"backend_cls": type(inner), "spec": spec}, accelerator=inner.accelerator)

    @property
    def cache_namespace(self) -> str:
        return self.inner.cache_namespace

    def generate(self, requests: Sequence[Request], on_result: OnResult) -> None:
        self.inner.check(requests)  # a request the engine cannot take is an error here, before any job
        for i, result in self.executor.map(self.task, list(requests)):
            self.calls += 1
            on_result(i, result)

    def stats(self) -> dict[str, Any]:
        return {"requests": self.calls, "executor": self.executor.name}


__all__ = ["EXECUTORS", "BackendWorker", "Executor", "ShippedBackend", "Task"]
