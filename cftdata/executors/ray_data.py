"""``run.executor: ray``: tasks as Ray Data jobs (the ``ray`` extra: ``pip install -e '.[ray]'``).

* Cluster: ``run.ray_address``, else the ``RAY_ADDRESS`` environment variable, else a local single-node
  instance started here, bound to 127.0.0.1 only (no dashboard, no usage stats). A Ray session that is
  already initialised in this process is reused as it is. :class:`RaySession` counts its users and shuts
  down only an instance it started itself, when the last user closes.
* :meth:`RayExecutor.map`: the items of one call (one shard's requests or answer pairs) become a dataset of
  (index, pickled item) rows; ``map_batches`` runs :class:`TaskActor`, which builds the task's worker once
  per actor (a :class:`~cftdata.executors.base.BackendWorker` holding one vLLM engine; the verify stage's
  math-verify pool), on ``run.ray_concurrency`` actors. Outputs stream back to the driver in item order as
  blocks finish, so the request cache stores each answer at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from cftdata.errors import BackendConfigError
from cftdata.executors.base import EXECUTORS, Executor, Task
from cftdata.supervise import ENV_TEST_CRASH, NativeCrashError, crash_message, crash_now

if TYPE_CHECKING:
    from cftdata.backends.base import Backend
    from cftdata.recipe import RunSpec

#: Host every socket of a locally started Ray instance binds to.
LOOPBACK = "127.0.0.1"

#: Environment for a local Ray instance: loopback only, no usage-stats upload.
#: Restarts (and task retries) of a Ray Data actor that died, before the build stops with a message.
ACTOR_RESTARTS = 2
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def import_ray() -> Any:
    """``ray`` (with Ray Data), or a clear error naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise BackendConfigError("run.executor 'ray' needs Ray Data: pip install -e '.[ray]' "
                                 "(or pip install 'ray[data]').") from None
    return ray


def cluster_address(run: RunSpec) -> str | None:
    """The Ray cluster to join: ``run.ray_address``, else ``$RAY_ADDRESS``; None = start a local instance."""
    return run.ray_address or os.environ.get("RAY_ADDRESS") or None


def init_local_ray(num_cpus: int | None = None, num_gpus: int | None = None, **kwargs: Any) -> None:
    """Start a single-node Ray instance whose sockets all listen on 127.0.0.1 (no dashboard).

    Ray turns a loopback ``_node_ip_address`` into the machine's external address unless
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which Ray reads once, when it is imported. So the variable is
    set here for Ray's processes and, if ``ray`` was imported before it was set, Ray's copy of it is
    switched off for the start (and restored). If the node still comes up on another address, Ray is shut
    down and this raises.
    """
    for k, v in LOCAL_RAY_ENV.items():
        os.environ[k] = v
    ray = import_ray()
    from ray._private import ray_constants

    before = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", _node_ip_address=LOOPBACK, include_dashboard=False, num_cpus=num_cpus,
                 num_gpus=num_gpus, log_to_driver=False, configure_logging=False, **kwargs)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before
    where = sorted({n["NodeManagerAddress"] for n in ray.nodes()})
    if where != [LOOPBACK]:
        ray.shutdown()
        raise BackendConfigError(f"the local Ray instance came up on {where}, not {LOOPBACK} only; stopped it. "
                                 "Set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray is imported, or give "
                                 "run.ray_address / RAY_ADDRESS.")


class RaySession:
    """A handle on the Ray runtime for one stage; ``close()`` when the stage is done.

    Joins ``cluster_address(run)`` or starts a local loopback instance, unless Ray is already initialised
    in this process (then that session is used and never shut down here).
    """

    _lock = threading.Lock()
    _users = 0
    _started_here = False

    def __init__(self, run: RunSpec) -> None:
        ray = import_ray()
        self.run = run
        self._open = True
        with RaySession._lock:
            if not ray.is_initialized():
                address = cluster_address(run)
                if address:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
                else:
                    init_local_ray()
                RaySession._started_here = True
            RaySession._users += 1

    def close(self) -> None:
        """Release this handle; the last one shuts down an instance this module started."""
        if not self._open:
            return
        self._open = False
        ray = import_ray()
        with RaySession._lock:
            RaySession._users -= 1
            if RaySession._users == 0 and RaySession._started_here:
                RaySession._started_here = False
                ray.shutdown()


# ---------------------------------------------------------------------------------------------
# the executor


class TaskActor:
    """Ray Data callable class: one worker of a :class:`~cftdata.executors.base.Task` per actor; a batch of
    pickled items in, their pickled outputs out."""

    def __init__(self, task: Task) -> None:
        self.worker = task.worker(**task.kwargs)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        if os.environ.get(ENV_TEST_CRASH) == "ray":
            crash_now()
        outputs = self.worker([pickle.loads(b) for b in batch["item"]])
        return {"index": [int(i) for i in batch["index"]], "output": [pickle.dumps(o) for o in outputs]}

    def __del__(self) -> None:
        close = getattr(getattr(self, "worker", None), "close", None)
        if close is not None:
            close()


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """Each :meth:`map` is a Ray Data job: ``run.ray_concurrency`` actors (one task worker each), batches of
    ``run.ray_batch_size`` items, ``task.cpus`` CPUs and, for a task that needs an accelerator,
    ``run.ray_num_gpus_per_worker`` GPUs per actor. Backends that scale out (vLLM) run on the actors."""

    name = "ray"

    def __init__(self, run: RunSpec) -> None:
        super().__init__(run)
        import_ray()  # a missing extra is an error before any work
        self._session: RaySession | None = None

    def runs_elsewhere(self, backend: Backend) -> bool:
        return backend.scale_out

    def job_options(self, task: Task) -> dict[str, Any]:
        """The ``map_batches`` arguments of a task's job (besides the callable and its constructor args)."""
        ray = import_ray()
        run = self.run
        return {"batch_size": run.ray_batch_size, "num_cpus": task.cpus,
                "num_gpus": run.ray_num_gpus_per_worker if task.accelerator else 0,
                "compute": ray.data.ActorPoolStrategy(size=run.ray_concurrency), "batch_format": "numpy",
                # Ray Data restarts a dead actor forever by default: a native crash would loop, never report.
                "max_restarts": ACTOR_RESTARTS, "max_task_retries": ACTOR_RESTARTS}

    def dataset(self, task: Task, items: Sequence[Any]) -> Any:
        """The (lazy) Ray Dataset that applies ``task`` to ``items``."""
        ray = import_ray()
        rows = [{"index": i, "item": pickle.dumps(x)} for i, x in enumerate(items)]
        ds = ray.data.from_items(rows, override_num_blocks=_blocks(len(rows), self.run))
        return ds.map_batches(TaskActor, fn_constructor_kwargs={"task": task}, **self.job_options(task))

    def map(self, task: Task, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        if not items:
            return
        if self._session is None:
            self._session = RaySession(self.run)
        seen = 0
        ray = import_ray()
        _quiet_actor_deaths()
        try:
            with _preserve_order():
                for index, blob in _rows(self.dataset(task, items), ("index", "output")):
                    seen += 1
                    yield int(index), pickle.loads(blob)
        except ray.exceptions.RayError as e:
            died = _actor_death(e)
            if died is None:
                raise
            raise NativeCrashError(crash_message(
                f"a Ray actor running {task.key()[0]} (restarted {ACTOR_RESTARTS} times)", None,
                f"Ray says: {died}. Look at the actor's log (Ray's session folder, logs/worker-*.err); run the build "
                "with run.executor: local to see whether the crash is in the task itself")) from None
        if seen != len(items):
            raise RuntimeError(f"the Ray job of {task.key()[0]} returned {seen} results for {len(items)} items")

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


# ---------------------------------------------------------------------------------------------
# helpers


def _drop_actor_death(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]  # logged inside its except block
    return exc is None or _actor_death(exc) is None


def _quiet_actor_deaths() -> None:
    """Ray Data logs an actor's death with a full traceback before raising it; :meth:`RayExecutor.map` turns it
    into a message instead, so that record is dropped (idempotent)."""
    for name in ("ray.data.exceptions", "ray.data._internal.execution.streaming_executor_state"):
        log = logging.getLogger(name)
        if _drop_actor_death not in log.filters:
            log.addFilter(_drop_actor_death)


def _actor_death(e: BaseException) -> str | None:
    """The first line of an actor-died error in ``e``'s cause chain (Ray Data wraps it), or None."""
    from ray.exceptions import RayActorError

    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, RayActorError) or type(cur).__name__ in ("ActorDiedError", "ActorUnavailableError"):
            return (str(cur).strip().splitlines() or [type(cur).__name__])[0][:300]
        cur = cur.__cause__ or cur.__context__
    return None


def _blocks(n: int, run: RunSpec) -> int:
    """Input blocks: about one per batch, so every actor gets work."""
    return max(1, min(n, -(-n // run.ray_batch_size)))


@contextlib.contextmanager
def _preserve_order() -> Iterator[None]:
    """Datasets created inside keep their input order (Ray Data's ``preserve_order``); restored after."""
    ray = import_ray()
    ctx = ray.data.DataContext.get_current()
    before = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True
    try:
        yield
    finally:
        ctx.execution_options.preserve_order = before


def _rows(ds: Any, columns: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
    """Stream a dataset's rows back to the driver as its blocks finish."""
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        yield from zip(*(batch[c] for c in columns), strict=True)
