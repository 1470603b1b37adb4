"""Ray Data jobs for the two stages that scale out: ``vllm`` generation and answer verification.

Chosen with ``run.executor: ray`` in the recipe (the ``ray`` extra: ``pip install -e '.[ray]'``).

* Cluster: ``run.ray_address``, else the ``RAY_ADDRESS`` environment variable, else a local single-node
  instance started here, bound to 127.0.0.1 only (no dashboard, no usage stats). A Ray session that is
  already initialised in this process is reused as it is. :class:`RaySession` counts its users and shuts
  down only an instance it started itself, when the last stage using it closes.
* Generation (:func:`generate_on_ray`): the requests of one shard become a dataset of (index, messages,
  sampling kwargs) rows; ``map_batches`` runs :class:`VLLMPredictor`, a callable class holding one
  ``vllm.LLM`` per actor, with ``num_gpus=run.ray_num_gpus_per_worker`` and
  ``concurrency=run.ray_concurrency`` actors. Results are streamed back to the driver in request order
  and handed to ``on_result(index, Result)`` as they arrive, so the request cache stores each at once.
* Verification (:func:`verify_pairs`): the (gold, pred) pairs of one shard run through
  :class:`VerifyPredictor`, one :class:`~cftdata.verify.pool.Verifier` (process pool with the hard
  per-item time limit) per actor, so statuses are exactly those of the local verifier.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from cftdata.errors import BackendConfigError

if TYPE_CHECKING:
    from cftdata.backends.base import OnResult, Request
    from cftdata.recipe import ModelSpec, RunSpec, VerifySpec
    from cftdata.verify.pool import VerifyResult

#: Host every socket of a locally started Ray instance binds to.
LOOPBACK = "127.0.0.1"

#: Environment for a local Ray instance: loopback only, no usage-stats upload.
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
# generation (vllm)


class VLLMPredictor:
    """Ray Data callable class: one ``vllm.LLM`` per actor; a batch of chat requests in, one result each out.

    ``llm_cls`` / ``sampling_cls`` default to ``vllm.LLM`` / ``vllm.SamplingParams``; tests pass stand-ins
    that follow vLLM's documented ``RequestOutput`` / ``CompletionOutput`` fields.
    """

    def __init__(self, model: str, engine_options: dict[str, Any], llm_cls: Callable[..., Any] | None = None,
                 sampling_cls: Callable[..., Any] | None = None) -> None:
        if llm_cls is None or sampling_cls is None:
            from vllm import LLM, SamplingParams

            llm_cls = llm_cls or LLM
            sampling_cls = sampling_cls or SamplingParams
        self.sampling_cls = sampling_cls
        self.llm = llm_cls(model=model, **engine_options)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from cftdata.backends.base import Result
        from cftdata.backends.vllm_offline import parse_output

        messages = [json.loads(m) for m in batch["messages"]]
        params = [self.sampling_cls(**json.loads(k)) for k in batch["sampling"]]
        try:
            outputs = self.llm.chat(messages, sampling_params=params, use_tqdm=False)
            results = [parse_output(o) for o in outputs]
            if len(results) != len(messages):
                raise RuntimeError(f"vLLM returned {len(results)} outputs for {len(messages)} requests")
        except Exception as e:  # one failed batch becomes error results, never a crashed build
            results = [Result(error="vllm_error", error_detail=f"{type(e).__name__}: {e}"[:500])] * len(messages)
        return {"index": [int(i) for i in batch["index"]], "result": [r.to_json() for r in results]}


def generation_job_options(spec: ModelSpec, run: RunSpec) -> dict[str, Any]:
    """The ``map_batches`` arguments of the generation job (besides the callable and its constructor args)."""
    ray = import_ray()
    return {"batch_size": run.ray_batch_size, "num_gpus": run.ray_num_gpus_per_worker,
            "compute": ray.data.ActorPoolStrategy(size=run.ray_concurrency), "batch_format": "numpy"}


def generation_dataset(requests: Sequence[Request], kwargs: Sequence[dict[str, Any]], spec: ModelSpec,
                       run: RunSpec, llm_cls: Callable[..., Any] | None = None,
                       sampling_cls: Callable[..., Any] | None = None) -> Any:
    """The (lazy) Ray Dataset that generates one result per request with :class:`VLLMPredictor`."""
    ray = import_ray()
    from cftdata.backends.vllm_offline import ENGINE_OPTIONS

    rows = [{"index": i, "messages": json.dumps(r.message_dicts, ensure_ascii=False),
             "sampling": json.dumps(k, ensure_ascii=False)} for i, (r, k) in enumerate(zip(requests, kwargs, strict=True))]
    engine = {k: v for k, v in spec.options.items() if k in ENGINE_OPTIONS}
    ds = ray.data.from_items(rows, override_num_blocks=_blocks(len(rows), run))
    return ds.map_batches(VLLMPredictor, fn_constructor_kwargs={"model": spec.model, "engine_options": engine,
                                                                "llm_cls": llm_cls, "sampling_cls": sampling_cls},
                          **generation_job_options(spec, run))


def generate_on_ray(requests: Sequence[Request], on_result: OnResult, spec: ModelSpec, run: RunSpec,
                    llm_cls: Callable[..., Any] | None = None, sampling_cls: Callable[..., Any] | None = None) -> int:
    """Run the requests as a Ray Data job; ``on_result(index, Result)`` for each, in request order, as the
    results stream back. Returns how many results were delivered."""
    from cftdata.backends.base import Result
    from cftdata.backends.vllm_offline import sampling_kwargs

    if not requests:
        return 0
    kwargs = [sampling_kwargs(r.param_dict) for r in requests]  # validate before starting anything
    done = 0
    with _preserve_order():
        ds = generation_dataset(requests, kwargs, spec, run, llm_cls, sampling_cls)
        for index, blob in _rows(ds, ("index", "result")):
            on_result(int(index), Result(**json.loads(blob)))
            done += 1
    return done


# ---------------------------------------------------------------------------------------------
# verification


class VerifyPredictor:
    """Ray Data callable class: one :class:`~cftdata.verify.pool.Verifier` per actor (its own worker processes
    with the hard per-item limit), so each status is what the local verify stage would give."""

    def __init__(self, workers: int, timeout_s: float, max_chars: int) -> None:
        from cftdata.verify.pool import Verifier

        self.verifier = Verifier(workers=workers, timeout_s=timeout_s, max_chars=max_chars).__enter__()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        pairs = [(str(g), str(p)) for g, p in zip(batch["gold"], batch["pred"], strict=True)]
        res = self.verifier.verify_many(pairs)
        return {"index": [int(i) for i in batch["index"]],
                "result": [json.dumps([r.status, r.pred_parsed, r.gold_parsed, r.detail]) for r in res]}

    def __del__(self) -> None:
        verifier = getattr(self, "verifier", None)
        if verifier is not None:
            verifier.close()


def verify_job_options(spec: VerifySpec, run: RunSpec) -> dict[str, Any]:
    """The ``map_batches`` arguments of the verify job: ``verify.workers`` CPUs per actor."""
    ray = import_ray()
    return {"batch_size": run.ray_batch_size, "num_cpus": spec.workers,
            "compute": ray.data.ActorPoolStrategy(size=run.ray_concurrency), "batch_format": "numpy"}


def verify_pairs(pairs: Sequence[tuple[str, str]], spec: VerifySpec, run: RunSpec) -> list[VerifyResult]:
    """Verify (gold, pred) pairs as a Ray Data job; one result per pair, in order (like ``verify_many``)."""
    ray = import_ray()
    from cftdata.verify.pool import VerifyResult

    if not pairs:
        return []
    rows = [{"index": i, "gold": g, "pred": p} for i, (g, p) in enumerate(pairs)]
    out: list[VerifyResult | None] = [None] * len(pairs)
    with _preserve_order():
        ds = ray.data.from_items(rows, override_num_blocks=_blocks(len(rows), run)).map_batches(
            VerifyPredictor, fn_constructor_kwargs={"workers": spec.workers, "timeout_s": spec.timeout_s,
                                                    "max_chars": spec.max_chars},
            **verify_job_options(spec, run))
        for index, blob in _rows(ds, ("index", "result")):
            status, pred_parsed, gold_parsed, detail = json.loads(blob)
            out[int(index)] = VerifyResult(status=status, pred_parsed=pred_parsed, gold_parsed=gold_parsed,
                                           detail=detail)
    missing = [i for i, r in enumerate(out) if r is None]
    if missing:
        raise RuntimeError(f"the Ray verify job returned no result for {len(missing)} of {len(pairs)} pairs")
    return out  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# helpers


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
