"""``run.executor: ray``: the verify stage's checks and the vllm backend as Ray Data jobs.

A real local Ray instance is started once for this module by the executor's own code
(:class:`~cftdata.executors.ray_data.RaySession` with no ``RAY_ADDRESS``), bound to 127.0.0.1 only. The
fixture asserts that every listening socket of every Ray process (and every connection's remote end) is on
the loopback interface, before and after the tests run, and that no Ray process is left after shutdown.

vLLM itself cannot run here (no GPU; vLLM is not installed), so the actors run the real ``vllm`` backend
class with its engine classes swapped for stand-ins that follow vLLM's documented ``RequestOutput``
(``prompt_token_ids``, ``outputs``) and ``CompletionOutput`` (``text``, ``token_ids``, ``finish_reason``)
fields (:class:`StandInVLLMBackend`, registered as ``vllm-standin``), with ``run.ray_num_gpus_per_worker: 0``.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest

ray = pytest.importorskip("ray", reason="the ray extra (ray[data]) is not installed")
psutil = pytest.importorskip("psutil", reason="psutil is needed to check Ray's sockets")

from cftdata.backends import BACKENDS, make_backend  # noqa: E402
from cftdata.backends.base import Request  # noqa: E402
from cftdata.backends.cache import RequestCache  # noqa: E402
from cftdata.backends.caller import ModelLayer  # noqa: E402
from cftdata.backends.vllm_offline import VLLMBackend  # noqa: E402
from cftdata.executors import make_executor, ray_data  # noqa: E402
from cftdata.executors.base import ShippedBackend  # noqa: E402
from cftdata.pipeline import build  # noqa: E402
from cftdata.recipe import RespondSpec, RunSpec, validate_recipe  # noqa: E402

pytestmark = pytest.mark.slow

TOWER = "2^{2^{2^{2^{100}}}}"


# ---------------------------------------------------------------------------------------------
# the local Ray instance, kept on loopback


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _is_ray(p: Any) -> bool:
    try:
        return p.name() in ("gcs_server", "raylet") or any("/ray/" in a or "ray::" in a for a in p.cmdline())
    except psutil.Error:
        return False


def _ray_processes() -> list[Any]:
    """The Ray processes this test process started (gcs_server, raylet, agents), with all their descendants
    (workers, actors and the verifier processes the actors spawn)."""
    roots = [p for p in psutil.Process().children() if _is_ray(p)]
    return roots + [c for r in roots for c in _children(r)]


def _children(p: Any) -> list[Any]:
    try:
        return p.children(recursive=True)
    except psutil.Error:
        return []


def _sockets() -> tuple[list[tuple], list[tuple]]:
    """(listening, connected) inet sockets of the Ray processes: (pid, name, local ip, port, remote ip)."""
    listening, connected = [], []
    for p in _ray_processes():
        try:
            name, conns = p.name(), p.net_connections(kind="inet")
        except psutil.Error:  # exited meanwhile
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN:
                listening.append((p.pid, name, c.laddr.ip, c.laddr.port, None))
            elif c.raddr:
                connected.append((p.pid, name, c.laddr.ip, c.laddr.port, c.raddr.ip))
    return listening, connected


def assert_on_loopback() -> int:
    """Every Ray socket listens on, and talks to, 127.0.0.1; returns how many listening sockets there are."""
    listening, connected = _sockets()
    assert listening, "no listening Ray sockets found (is Ray running as a child of this process?)"
    assert [s for s in listening if not _is_loopback(s[2])] == []
    assert [s for s in connected if not (_is_loopback(s[2]) and _is_loopback(s[4]))] == []
    return len(listening)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[ray_data.RaySession]:
    """A local Ray instance started by the executor (no RAY_ADDRESS), checked to stay on loopback."""
    assert not ray.is_initialized()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_ADDRESS", raising=False)
        for k, v in ray_data.LOCAL_RAY_ENV.items():
            mp.setenv(k, v)
        session = ray_data.RaySession(RunSpec(executor="ray"))
        procs = _ray_processes()
        try:
            assert ray.is_initialized()
            assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
            assert_on_loopback()
            yield session
            assert_on_loopback()  # also the actors the jobs started
        finally:
            session.close()
            assert not ray.is_initialized()
            procs += _ray_processes()
            gone, alive = psutil.wait_procs(procs, timeout=20)
            for p in alive:  # never expected; do not leave anything behind either way
                print("left behind:", p.pid, p.cmdline())
                p.kill()
            assert alive == []


# ---------------------------------------------------------------------------------------------
# verify: the same statuses as the local executor, in a real build


def _rows() -> list[dict[str, str]]:
    pairs = [("5", "\\boxed{5}"), ("5", "\\boxed{6}"), ("\\frac{1}{2}", "\\boxed{0.5}"), ("12", "no box here"),
             ("", "\\boxed{3}"), ("x^2+2x+1", "\\boxed{(x+1)^2}"), ("7", "\\boxed{8}"), ("3", f"\\boxed{{{TOWER}}}"),
             ("\\sqrt{2}", "\\boxed{\\frac{2}{\\sqrt{2}}}"), ("10", "\\boxed{10.0}"), ("[1, 2]", "\\boxed{[1,2]}"),
             ("4", "\\boxed{four}"), ("9", "\\boxed{9}")]
    return [{"question": f"Question number {i}: compute the value asked for.", "response": f"Work... {resp}",
             "answer": gold, "critique": "Fine.\nConclusion: right [END]"} for i, (gold, resp) in enumerate(pairs)]


def _verify_build(source: Path, out: Path, executor: str) -> tuple[dict, list[tuple]]:
    recipe = validate_recipe({
        "name": f"ray-{executor}", "source": {"path": str(source), "answer": "answer", "response": "response"},
        "respond": {"mode": "existing"}, "teacher": {"backend": "existing", "model": "published"},
        "verify": {"answer_rule": "boxed", "workers": 1, "timeout_s": 1.0}, "output": {"dir": str(out)},
        "run": {"executor": executor, "shard_size": 7, "ray_batch_size": 4, "ray_concurrency": 2},
    })
    res = build(recipe)
    df = pl.read_parquet(res.output_dir / "data" / "*.parquet").sort("id")
    cols = ["id", "verify_status", "verify_pred", "verify_gold", "verify_detail"]
    return res.manifest["stages"]["verify"]["statuses"], list(df.select(cols).iter_rows())


def test_ray_verify_build_matches_local(ray_session, tmp_path):
    source = tmp_path / "pool.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    local_counts, local_rows = _verify_build(source, tmp_path / "local", "local")
    ray_counts, ray_rows = _verify_build(source, tmp_path / "ray", "ray")
    assert ray_counts == local_counts
    assert ray_rows == local_rows
    assert len(ray_rows) == 13
    assert {"correct", "incorrect", "unverifiable", "timeout"} <= set(local_counts)
    assert ray.is_initialized()  # the build's own session closed; the fixture's keeps Ray up
    assert_on_loopback()


# ---------------------------------------------------------------------------------------------
# vllm generation: the Ray Data job with a stand-in engine


@dataclass
class CompletionOutput:
    """vLLM's documented ``CompletionOutput`` fields."""

    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: Any = None
    finish_reason: str | None = "stop"


@dataclass
class RequestOutput:
    """vLLM's documented ``RequestOutput`` fields."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool = True


@dataclass
class StandInSamplingParams:
    """Accepts ``vllm.SamplingParams`` keyword names (the ones cftdata sends)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


class StandInLLM:
    """``vllm.LLM(model=..., **engine)`` with ``chat(messages_list, sampling_params=[...], use_tqdm=False)``."""

    def __init__(self, model: str, **engine: Any) -> None:
        self.model, self.engine, self.pid = model, engine, os.getpid()

    def chat(self, messages: list[list[dict[str, str]]], sampling_params: list[StandInSamplingParams],
             use_tqdm: bool = True) -> list[RequestOutput]:
        assert len(messages) == len(sampling_params) and use_tqdm is False
        out = []
        for k, (conv, sp) in enumerate(zip(messages, sampling_params, strict=True)):
            text = f"{self.model}|{self.engine.get('max_model_len')}|{conv[-1]['content']}|seed={sp.seed}"
            words = text.split()
            finish = "length" if len(words) > sp.max_tokens else "stop"
            out.append(RequestOutput(str(k), None, list(range(len(conv[-1]["content"]))),
                                     [CompletionOutput(0, text, list(range(min(len(words), sp.max_tokens))),
                                                       finish_reason=finish)]))
        return out


class StandInVLLMBackend(VLLMBackend):
    """The real ``vllm`` backend code with the stand-in engine classes."""

    name = "vllm-standin"
    llm_cls = StandInLLM
    sampling_cls = StandInSamplingParams


if "vllm-standin" not in BACKENDS:  # also imported in the Ray actors, which unpickle the class by reference
    BACKENDS.add("vllm-standin", StandInVLLMBackend)

RUN = {"executor": "ray", "ray_num_gpus_per_worker": 0, "ray_concurrency": 2, "ray_batch_size": 3}


def _spec() -> RespondSpec:
    recipe = validate_recipe({
        "name": "gen", "source": {"path": "unused.jsonl"},
        "respond": {"mode": "generate", "backend": "vllm-standin", "model": "Qwen/Qwen2.5-Math-7B-Instruct",
                    "options": {"max_model_len": 4096, "gpu_memory_utilization": 0.9},
                    "params": {"temperature": 0.7, "max_tokens": 64}},
        # no GPU here: CPU actors; on a cluster ray_num_gpus_per_worker stays 1
        "run": RUN,
    })
    return recipe.respond


def _requests(spec: RespondSpec, n: int) -> list[Request]:
    return [Request.make(spec.model, [{"role": "user", "content": f"Solve problem {i}."}],
                         {**spec.params.as_request_params(), "seed": i}, sample=0) for i in range(n)]


def _expected(spec: RespondSpec, req: Request) -> str:
    return f"{spec.model}|4096|{req.messages[-1][1]}|seed={req.param_dict['seed']}"


def test_the_executor_places_only_engines_that_scale_out():
    spec = _spec()
    ray_exec = make_executor(RunSpec(executor="ray", ray_concurrency=8, ray_batch_size=128))
    local_exec = make_executor(RunSpec())
    vllm = make_backend(spec.model_copy(update={"backend": "vllm"}))
    shipped = ray_exec.place(vllm)
    assert isinstance(shipped, ShippedBackend) and shipped.inner is vllm
    assert shipped.cache_namespace == vllm.cache_namespace == "vllm:offline"  # cache shared with the local engine
    assert local_exec.place(vllm) is vllm
    http = make_backend(RespondSpec(backend="openai", model="m", base_url="http://127.0.0.1:9/v1"))
    assert ray_exec.place(http) is http  # HTTP APIs stay in the driver, with their rate limiter
    opts = ray_exec.job_options(shipped.task)
    pool = opts.pop("compute")
    assert isinstance(pool, ray.data.ActorPoolStrategy) and (pool.min_size, pool.max_size) == (8, 8)
    from cftdata.executors.ray_data import ACTOR_RESTARTS

    # a crashing actor is restarted a bounded number of times, then reported (never restarted forever)
    assert opts == {"batch_size": 128, "num_gpus": 1, "num_cpus": 1, "batch_format": "numpy",
                    "max_restarts": ACTOR_RESTARTS, "max_task_retries": ACTOR_RESTARTS}
    assert not hasattr(spec, "_run")  # run settings are no longer smuggled into model specs


def test_vllm_backend_on_ray_streams_results_in_order(ray_session):
    spec = _spec()
    executor = make_executor(RunSpec(**RUN))
    backend = executor.place(make_backend(spec))
    reqs = _requests(spec, 10)
    seen: list[tuple[int, Any]] = []
    try:
        backend.generate(reqs, lambda i, r: seen.append((i, r)))
    finally:
        executor.close()
    assert [i for i, _ in seen] == list(range(10))
    for i, res in seen:
        assert res.ok and res.text == _expected(spec, reqs[i]) and res.finish_reason == "stop"
        assert res.input_tokens == len(reqs[i].messages[-1][1]) and res.output_tokens > 0
        assert res.text.split("|")[0] == spec.model


def test_vllm_on_ray_fills_the_request_cache_the_local_engine_reads(ray_session, tmp_path):
    spec = _spec()
    executor = make_executor(RunSpec(**RUN))
    cache = RequestCache(tmp_path / "cache.sqlite")
    reqs = _requests(spec, 7)
    reqs.append(reqs[2])  # a duplicate is sent once
    try:
        caller = ModelLayer(cache, place=executor.place).caller(spec)
        first = caller.call(reqs)
        assert caller.stats.calls == 7 and caller.backend.stats() == {"requests": 7, "executor": "ray"}
        assert [r.text for r in first] == [_expected(spec, r) for r in reqs]
        local = ModelLayer(cache).caller(spec)  # the local executor: the engine in this process
        second = local.call(reqs)
        assert local.stats.cache_hits == 8 and local.stats.calls == 0  # all from the cache, no engine built
        assert local.backend._llm is None
        assert [r.text for r in second] == [r.text for r in first]
    finally:
        executor.close()
        cache.close()
    assert ray.is_initialized()  # the executor's session closed; the fixture's keeps Ray up


def test_a_build_generates_on_ray_and_resumes_locally(ray_session, tmp_path):
    """The same recipe with run.executor ray, then local: the stages never know; the second build makes no call."""
    source = tmp_path / "q.jsonl"
    source.write_text("".join(json.dumps({"question": f"Solve problem {i}.", "answer": str(i)}) + "\n"
                              for i in range(5)))

    def recipe(executor: str, out: str):
        return validate_recipe({
            "name": f"gen-{executor}", "source": {"path": str(source), "answer": "answer"},
            "respond": {"mode": "generate", "backend": "vllm-standin", "model": "m", "n": 2, "prompt": "raw",
                        "options": {"max_model_len": 4096}, "params": {"temperature": 0.7, "max_tokens": 64,
                                                                       "seed": 1}},
            "teacher": {"backend": "none"}, "output": {"dir": str(tmp_path / out), "format": "sft-alpaca"},
            "run": {**RUN, "executor": executor}})

    on_ray = build(recipe("ray", "a"))
    assert on_ray.manifest["usage"]["respond"]["calls_made"] == 10
    assert on_ray.manifest["stages"]["respond"]["backend_stats"]["executor"] == "ray"
    local = build(recipe("local", "b"))
    assert local.manifest["usage"]["respond"]["calls_made"] == 0
    assert local.manifest["usage"]["respond"]["cache_hits"] == 10
    a = pl.read_parquet(on_ray.output_dir / "data" / "*.parquet")
    b = pl.read_parquet(local.output_dir / "data" / "*.parquet")
    assert a.height == b.height == 10 and a["output"].to_list() == b["output"].to_list()
