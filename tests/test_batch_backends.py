"""The batch backends ``openai-batch`` and ``anthropic-batch``: life cycle, resubmission, kill and resume.

Neither the OpenAI Batch API nor the Anthropic Message Batches API can be reached from tests, so both
are tested against their documented wire formats (OpenAI Files + Batches: JSONL input and output
files, status life cycle, request counts, error file; Anthropic Message Batches: processing_status,
request counts, results JSONL) served by the local server :mod:`tests.servers.batch_server`, which
also counts batches created, items submitted and items submitted twice (``duplicate_items``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cftdata.backends.anthropic_batch import AnthropicBatchBackend
from cftdata.backends.anthropic_messages import AnthropicMessagesBackend
from cftdata.backends.base import Request, Result
from cftdata.backends.batch import BatchStatus, default_state_dir
from cftdata.backends.cache import RequestCache
from cftdata.backends.caller import ModelCaller
from cftdata.backends.openai_batch import OpenAIBatchBackend
from cftdata.backends.openai_chat import OpenAIChatBackend
from cftdata.errors import BackendConfigError
from cftdata.recipe import ModelSpec
from tests.servers.batch_server import BatchServer

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-SECRET-abcdef0123456789"
KINDS = {
    # backend: (class, server url attribute, key variable, model, server counter of batches created)
    "openai-batch": (OpenAIBatchBackend, "openai_url", "OPENAI_API_KEY", "gpt-4o-mini", "openai_batches_created"),
    "anthropic-batch": (AnthropicBatchBackend, "anthropic_url", "ANTHROPIC_API_KEY", "claude-test",
                        "anthropic_batches_created"),
}
BOTH = pytest.mark.parametrize("kind", list(KINDS))


@pytest.fixture
def server():
    with BatchServer(api_key=SECRET) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)


def spec_for(kind: str, url: str, state_dir: Path | str, **options) -> ModelSpec:
    opts = {"state_dir": str(state_dir), "poll_interval_s": 0.02, **options}
    return ModelSpec(backend=kind, model=KINDS[kind][3], base_url=url, options=opts)


def make(kind: str, srv: BatchServer, state_dir: Path, **options):
    cls, attr = KINDS[kind][:2]
    return cls(spec_for(kind, getattr(srv, attr), state_dir, **options))


def build_requests(model: str, n: int, markers: dict[int, str] | None = None) -> list[Request]:
    """The paper's critique request shape, one distinct question per row (markers force faults)."""
    markers = markers or {}
    return [
        Request.make(model, [
            {"role": "system", "content": "You are a science expert. Conclude with 'Conclusion: right/wrong [END]'."},
            {"role": "user", "content": f"Question: what is {i} + {i}?\n\nSolution: {2 * i}{markers.get(i, '')}"},
        ], {"temperature": 0.3, "top_p": 0.95, "max_tokens": 3200})
        for i in range(n)
    ]


class Collector:
    """An on_result callback that remembers every delivery."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, Result]] = []

    def __call__(self, i: int, r: Result) -> None:
        self.calls.append((i, r))

    def by_index(self) -> dict[int, Result]:
        return dict(self.calls)

    def assert_once_each(self, n: int) -> None:
        idx = [i for i, _ in self.calls]
        assert sorted(idx) == list(range(n)), f"deliveries: {sorted(idx)}"


def expected_text(r: Request) -> str:
    return "echo: " + r.messages[-1][1]


def created(srv: BatchServer, kind: str) -> int:
    return srv.counts[KINDS[kind][4]]


def state_files(state_dir: Path) -> list[Path]:
    return sorted(Path(state_dir).rglob("*.json"))


def assert_no_secret(state_dir: Path) -> None:
    files = state_files(state_dir)
    assert files
    for f in files:
        assert SECRET not in f.read_text()


# -- life cycle ---------------------------------------------------------------------------------


@BOTH
def test_full_life_cycle(kind, server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="cftdata.batch")
    backend = make(kind, server, tmp_path, max_batch_requests=3)
    seen: list[BatchStatus] = []
    backend.status_callback = seen.append
    reqs = build_requests(KINDS[kind][3], 7)
    got = Collector()
    backend.generate(reqs, got)

    got.assert_once_each(7)
    for i, r in got.by_index().items():
        assert r.ok and r.text == expected_text(reqs[i]) and r.finish_reason == "stop"
        assert r.input_tokens > 0 and r.output_tokens > 0
    assert created(server, kind) == 3  # 7 requests, at most 3 per batch
    assert server.counts["items_submitted"] == 7 and server.counts["duplicate_items"] == 0
    statuses = [s.status for s in seen]
    if kind == "openai-batch":
        assert {"validating", "in_progress", "finalizing", "completed"} <= set(statuses)
        assert any(s.counts.get("total") == 3 and s.counts.get("completed") == 3 for s in seen)
    else:
        assert {"in_progress", "ended"} <= set(statuses)
        assert any(s.counts.get("succeeded") == 3 for s in seen)
    assert all(s.backend == kind and s.size in (1, 3) and s.round == 1 for s in seen)
    assert "completed" in caplog.text or "ended" in caplog.text
    # The finished state is kept as an audit trail (batch ids), without any secret.
    (done,) = state_files(tmp_path)
    assert done.parent.name == "finished"
    data = json.loads(done.read_text())
    assert data["finished"] and len(data["batches"]) == 3
    assert {it["state"] for it in data["items"].values()} == {"ok"}
    assert_no_secret(tmp_path)
    s = backend.stats()
    assert s["batches_created"] == 3 and s["items_submitted"] == 7 and s["failed"] == 0


def test_openai_batch_wire_format(server, tmp_path):
    backend = make("openai-batch", server, tmp_path, max_tokens_field="max_completion_tokens")
    reqs = build_requests("gpt-4o-mini", 2)
    got = Collector()
    backend.generate([*reqs, reqs[0]], got)  # the same request twice is sent once, delivered twice
    got.assert_once_each(3)
    assert got.by_index()[2].text == got.by_index()[0].text == expected_text(reqs[0])
    (fid,) = [f for f, v in server.files.items() if v["purpose"] == "batch"]
    lines = [json.loads(x) for x in server.files[fid]["data"].decode().splitlines()]
    assert [set(x) for x in lines] == [{"custom_id", "method", "url", "body"}] * 2
    assert all(x["method"] == "POST" and x["url"] == "/v1/chat/completions" for x in lines)
    body = lines[0]["body"]
    assert body["model"] == "gpt-4o-mini" and body["messages"][0]["role"] == "system"
    assert body["max_completion_tokens"] == 3200 and "max_tokens" not in body and body["temperature"] == 0.3
    (batch,) = server.openai_batches.values()
    assert batch["completion_window"] == "24h" and batch["endpoint"] == "/v1/chat/completions"


def test_openai_batch_one_model_per_batch(server, tmp_path):
    reqs = build_requests("gpt-4o-mini", 2) + build_requests("gpt-4o-2024-11-20", 2)
    got = Collector()
    make("openai-batch", server, tmp_path).generate(reqs, got)
    got.assert_once_each(4)
    assert all(r.ok for r in got.by_index().values())
    assert created(server, "openai-batch") == 2  # the server fails batches that mix models


def test_anthropic_batch_params_are_messages_api_bodies(server, tmp_path):
    backend = make("anthropic-batch", server, tmp_path)
    got = Collector()
    backend.generate(build_requests("claude-test", 2), got)
    assert all(r.ok for r in got.by_index().values())
    (batch,) = server.anthropic_batches.values()
    params = batch["_items"][0][0]["params"]
    assert params["system"].startswith("You are a science expert.")
    assert [m["role"] for m in params["messages"]] == ["user"]
    assert params["max_tokens"] == 3200 and params["temperature"] == 0.3 and params["top_p"] == 0.95


@BOTH
def test_split_by_bytes_and_limits(kind, server, tmp_path):
    reqs = build_requests(KINDS[kind][3], 6)
    one = len(json.dumps(make(kind, server, tmp_path)._encode("x" * 64, reqs[0])))
    backend = make(kind, server, tmp_path, max_batch_bytes=one * 2 + 10)
    got = Collector()
    backend.generate(reqs, got)
    got.assert_once_each(6)
    assert created(server, kind) == 3  # two requests fit per batch
    huge = make(kind, server, tmp_path, max_batch_requests=10**9, max_batch_bytes=10**12)
    assert huge.max_batch_requests == KINDS[kind][0].max_requests_limit
    assert huge.max_batch_bytes == KINDS[kind][0].max_bytes_limit
    tiny = make(kind, server, tmp_path / "tiny", max_batch_bytes=100)
    got = Collector()
    tiny.generate(reqs[:1], got)
    assert got.by_index()[0].error == "request_too_large"


# -- resubmission -------------------------------------------------------------------------------


@BOTH
def test_resubmits_expired_canceled_and_failed_items(kind, server, tmp_path):
    markers = {1: " [[expire*1]]", 2: " [[500*1]]", 3: " [[cancel*1]]", 4: " [[400]]"}
    reqs = build_requests(KINDS[kind][3], 6, markers)
    backend = make(kind, server, tmp_path)
    got = Collector()
    backend.generate(reqs, got)
    got.assert_once_each(6)
    res = got.by_index()
    for i in (0, 1, 2, 3, 5):
        assert res[i].ok and res[i].text == expected_text(reqs[i])
    assert res[4].error == "http_400" and res[4].text is None and res[4].error_detail
    assert created(server, kind) == 2  # the first batch, then one for the three resubmitted items
    assert server.counts["items_submitted"] == 9 and server.counts["duplicate_items"] == 0
    s = backend.stats()
    assert s["items_resubmitted"] == 3 and s["failed"] == 1


@BOTH
def test_gives_up_after_max_rounds(kind, server, tmp_path):
    reqs = build_requests(KINDS[kind][3], 2, {0: " [[expire]]"})
    got = Collector()
    make(kind, server, tmp_path, max_rounds=2).generate(reqs, got)
    got.assert_once_each(2)
    res = got.by_index()
    assert res[1].ok
    assert res[0].error == "batch_expired" and "2 batch submissions" in res[0].error_detail
    assert created(server, kind) == 2


def test_openai_batch_that_fails_validation_is_resubmitted(server, tmp_path):
    reqs = build_requests("gpt-4o-mini", 3, {0: " [[batchfail*1]]"})
    got = Collector()
    backend = make("openai-batch", server, tmp_path)
    seen: list[BatchStatus] = []
    backend.status_callback = seen.append
    backend.generate(reqs, got)
    got.assert_once_each(3)
    assert all(r.ok for r in got.by_index().values())
    assert "failed" in [s.status for s in seen] and created(server, "openai-batch") == 2


@BOTH
def test_transient_poll_errors_are_survived(kind, server, tmp_path):
    backend = make(kind, server, tmp_path)
    backend.spec.max_retries = 0  # let the engine, not the SDK, see the 500s
    server.fail_next_polls = 3
    got = Collector()
    backend.generate(build_requests(KINDS[kind][3], 2), got)
    got.assert_once_each(2)
    assert backend.stats()["poll_errors"] == 3 and server.counts["polls_failed"] == 3


# -- kill and resume ----------------------------------------------------------------------------


class Interrupt:
    """A status callback that raises KeyboardInterrupt (Ctrl-C) at the first status matching ``when``."""

    def __init__(self, when) -> None:
        self.when = when

    def __call__(self, s: BatchStatus) -> None:
        if self.when(s):
            raise KeyboardInterrupt


@BOTH
def test_ctrl_c_while_polling_then_rerun_resumes(kind, server, tmp_path):
    reqs = build_requests(KINDS[kind][3], 5)
    first = make(kind, server, tmp_path, max_batch_requests=2)
    first.status_callback = Interrupt(lambda s: s.status == "in_progress")
    got = Collector()
    with pytest.raises(KeyboardInterrupt):
        first.generate(reqs, got)
    assert got.calls == []
    (state,) = state_files(tmp_path)
    data = json.loads(state.read_text())
    assert len(data["batches"]) == 3 and all(it["state"] == "submitted" for it in data["items"].values())
    assert_no_secret(tmp_path)
    n_created = created(server, kind)

    second = make(kind, server, tmp_path, max_batch_requests=2)
    second.generate(reqs, got)
    got.assert_once_each(5)
    assert all(r.ok and r.text == expected_text(reqs[i]) for i, r in got.by_index().items())
    assert created(server, kind) == n_created == 3  # nothing resubmitted
    assert server.counts["duplicate_items"] == 0 and server.counts["items_submitted"] == 5
    assert second.stats()["batches_resumed"] == 3 and second.stats()["batches_created"] == 0
    assert [p.parent.name for p in state_files(tmp_path)] == ["finished"]


@BOTH
def test_rerun_of_the_undelivered_subset_adopts_pending_batches(kind, server, tmp_path):
    """The usual resume: the cache holds what the first run delivered; the rest is still in a batch."""
    reqs = build_requests(KINDS[kind][3], 4)
    cache = RequestCache(tmp_path / "cache" / "requests.sqlite")
    first = make(kind, server, tmp_path / "state", max_batch_requests=2)
    batch_ids: list[str] = []

    def stop_at_second_batch_end(s: BatchStatus) -> bool:
        if s.batch_id not in batch_ids:
            batch_ids.append(s.batch_id)
        return s.ended and s.batch_id == batch_ids[-1] and len(batch_ids) == 2

    first.status_callback = Interrupt(stop_at_second_batch_end)
    with pytest.raises(KeyboardInterrupt):
        ModelCaller(first, cache).call(reqs)
    assert len(cache) == 2  # the first batch was delivered and cached, the second ended unread
    n_created = created(server, kind)

    second = make(kind, server, tmp_path / "state", max_batch_requests=2)
    caller = ModelCaller(second, cache)
    results = caller.call(reqs)
    assert [r.text for r in results] == [expected_text(r) for r in reqs]
    assert caller.stats.cache_hits == 2 and caller.stats.calls == 2
    assert created(server, kind) == n_created == 2 and server.counts["duplicate_items"] == 0
    assert server.counts["items_submitted"] == 4
    # Both the adopting job and the one it adopted from are finished now.
    assert {p.parent.name for p in state_files(tmp_path / "state")} == {"finished"}
    assert_no_secret(tmp_path / "state")


def test_rerun_without_a_cache_downloads_delivered_batches_again_for_free(server, tmp_path):
    kind = "anthropic-batch"
    reqs = build_requests(KINDS[kind][3], 4)
    first = make(kind, server, tmp_path, max_batch_requests=2)
    ended: list[str] = []

    def second_end(s: BatchStatus) -> bool:
        if s.ended:
            ended.append(s.batch_id)
        return len(ended) == 2

    first.status_callback = Interrupt(second_end)
    got = Collector()
    with pytest.raises(KeyboardInterrupt):
        first.generate(reqs, got)
    assert len(got.calls) == 2  # one batch delivered (and lost: no cache), the other ended unread

    again = Collector()
    second = make(kind, server, tmp_path, max_batch_requests=2)
    second.generate(reqs, again)
    again.assert_once_each(4)
    assert all(r.ok and r.text == expected_text(reqs[i]) for i, r in again.by_index().items())
    assert created(server, kind) == 2 and server.counts["duplicate_items"] == 0
    assert second.stats()["items_redelivered"] == 2


_CHILD = """
import sys
from cftdata.backends.cache import RequestCache
from cftdata.backends.caller import ModelCaller
from cftdata.backends.openai_batch import OpenAIBatchBackend
from tests.test_batch_backends import build_requests, spec_for

url, state_dir, cache_path = sys.argv[1:4]
backend = OpenAIBatchBackend(spec_for("openai-batch", url, state_dir, max_batch_requests=3))
ModelCaller(backend, RequestCache.open(cache_path)).call(build_requests("gpt-4o-mini", 7))
print("finished")
"""


def test_kill_9_while_polling_then_rerun_resumes(server, tmp_path):
    """A real ``kill -9`` of a process that is polling: the rerun pays for nothing twice."""
    server.hold = True  # batches stay in_progress until released
    state_dir, cache_dir = tmp_path / "state", tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, server.openai_url, str(state_dir), str(cache_dir)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while server.counts["polls"] < 6 or server.counts["openai_batches_created"] < 3:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the child never started polling"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    (state,) = state_files(state_dir)
    assert len(json.loads(state.read_text())["batches"]) == 3
    assert_no_secret(state_dir)
    server.hold = False

    backend = OpenAIBatchBackend(spec_for("openai-batch", server.openai_url, state_dir, max_batch_requests=3))
    reqs = build_requests("gpt-4o-mini", 7)
    delivered: list[int] = []
    caller = ModelCaller(backend, RequestCache.open(cache_dir))
    caller.backend.generate = _counting(caller.backend.generate, delivered)
    results = caller.call(reqs)
    assert [r.text for r in results] == [expected_text(r) for r in reqs]
    assert sorted(delivered) == list(range(7))  # every result delivered once
    assert server.counts["openai_batches_created"] == 3 and server.counts["duplicate_items"] == 0
    assert server.counts["items_submitted"] == 7 and server.counts["files_uploaded"] == 3


def _counting(generate, delivered: list[int]):
    def wrapped(requests, on_result):
        def counted(i, r):
            delivered.append(i)
            on_result(i, r)

        generate(requests, counted)

    return wrapped


@BOTH
def test_kill_between_create_and_state_write_finds_the_batch(kind, server, tmp_path, monkeypatch):
    """The batch was created but the process died before writing its id: the rerun finds it."""
    reqs = build_requests(KINDS[kind][3], 3)
    first = make(kind, server, tmp_path)
    real_create = first._create

    def create_then_die(*a, **kw):
        real_create(*a, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(first, "_create", create_then_die)
    with pytest.raises(KeyboardInterrupt):
        first.generate(reqs, Collector())
    (state,) = state_files(tmp_path)
    assert json.loads(state.read_text())["pending"] and created(server, kind) == 1

    got = Collector()
    make(kind, server, tmp_path).generate(reqs, got)
    got.assert_once_each(3)
    assert all(r.ok for r in got.by_index().values())
    assert created(server, kind) == 1 and server.counts["duplicate_items"] == 0


@BOTH
def test_changed_key_stops_with_a_clear_error_and_keeps_state(kind, server, tmp_path):
    reqs = build_requests(KINDS[kind][3], 2)
    backend = make(kind, server, tmp_path)

    def revoke(s: BatchStatus) -> None:
        server.api_key = "sk-another-key"  # the key was rotated while the batch ran

    backend.status_callback = revoke
    with pytest.raises(BackendConfigError) as e:
        backend.generate(reqs, Collector())
    msg = str(e.value)
    assert "HTTP 401" in msg and "rerun to resume" in msg and SECRET not in msg
    server.api_key = SECRET
    got = Collector()
    make(kind, server, tmp_path).generate(reqs, got)
    got.assert_once_each(2)
    assert created(server, kind) == 1 and server.counts["duplicate_items"] == 0


# -- configuration ------------------------------------------------------------------------------


def test_cache_namespaces_match_the_online_backends(monkeypatch):
    for url in (None, "http://127.0.0.1:1/v1/"):
        o = OpenAIChatBackend(ModelSpec(backend="openai", base_url=url))
        b = OpenAIBatchBackend(ModelSpec(backend="openai-batch", base_url=url))
        assert o.cache_namespace == b.cache_namespace
    assert OpenAIBatchBackend(ModelSpec(backend="openai-batch")).cache_namespace == "openai:https://api.openai.com/v1"
    for url in (None, "http://127.0.0.1:1"):
        o = AnthropicMessagesBackend(ModelSpec(backend="anthropic", model="claude-test", base_url=url))
        b = AnthropicBatchBackend(ModelSpec(backend="anthropic-batch", model="claude-test", base_url=url))
        assert o.cache_namespace == b.cache_namespace
    assert OpenAIBatchBackend.discount == AnthropicBatchBackend.discount == 0.5


def test_defaults_and_missing_key(monkeypatch, tmp_path):
    monkeypatch.setenv("CFTDATA_CACHE_DIR", str(tmp_path))
    b = OpenAIBatchBackend(ModelSpec(backend="openai-batch"))
    assert b.state_dir == default_state_dir() == tmp_path / "batches"
    assert b.poll_interval_s == 30 and b.max_rounds == 3 and b.max_batch_requests == 50_000
    assert AnthropicBatchBackend(ModelSpec(backend="anthropic-batch", model="c")).max_batch_requests == 100_000
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(BackendConfigError, match="OPENAI_API_KEY"):
        OpenAIBatchBackend(ModelSpec(backend="openai-batch"))
    with pytest.raises(BackendConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicBatchBackend(ModelSpec(backend="anthropic-batch", model="c"))


# -- the pipeline: every shard submitted before any shard waits -----------------------------------


def batch_recipe(tmp_path: Path, kind: str, url: str, rows: int, generate: bool) -> Path:
    """A build whose critique (and, with ``generate``, respond) stage is the batch backend ``kind``."""
    import yaml

    src = tmp_path / "source.jsonl"
    with src.open("w") as f:
        for i in range(rows):
            f.write(json.dumps({"question": f"What is {i} + {i}?", "response": f"{2 * i}"}) + "\n")
    model = KINDS[kind][3]
    opts = {"state_dir": str(tmp_path / "state"), "poll_interval_s": 0.02}
    recipe = {
        "version": 1, "name": "batch-build", "source": {"path": str(src), "question": "question",
                                                          "response": "response"},
        "teacher": {"backend": kind, "model": model, "base_url": url, "options": opts},
        "output": {"dir": str(tmp_path / "out"), "format": "alpaca"},
        "run": {"shard_size": 4},
    }
    if generate:
        recipe["respond"] = {"mode": "generate", "backend": kind, "model": model, "base_url": url, "n": 2,
                             "params": {"seed": 7}, "options": opts}  # seed + k: distinct sample bodies
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@BOTH
def test_build_submits_every_shard_before_waiting(kind, server, tmp_path):
    from cftdata.pipeline import build
    from cftdata.recipe import load_recipe

    url = getattr(server, KINDS[kind][1])
    result = build(load_recipe(batch_recipe(tmp_path, kind, url, rows=12, generate=True)))
    assert result.rows == 24 and result.rejected == 0  # 12 questions x 2 sampled responses, each critiqued
    # respond: 3 shards of 4 questions = 3 batches, all created before the first result download. Then
    # critique: 3 shards of 8 responses = 3 batches, each created as soon as its shard's responses are
    # in, all of them before the first critique result is downloaded (half the downloads come after).
    kinds = [e for e, _ in server.events]
    assert kinds[:3] == ["create"] * 3, server.events
    last_create = len(kinds) - 1 - kinds[::-1].index("create")
    downloads = kinds.count("download")
    assert downloads >= 6 and kinds[last_create:].count("download") == downloads // 2, server.events
    # Each distinct request once: 24 samples; the server echoes, so both samples of a question get the
    # same answer and the same critique request: 12 distinct critiques.
    assert created(server, kind) == 6 and server.counts["items_submitted"] == 24 + 12
    counts = result.manifest["counts"]
    assert counts["respond"] == {**counts["respond"], "in": 24, "out": 24, "rejected": 0}
    assert counts["critique"]["in"] == 24 and counts["critique"]["out"] == 24
    assert not (tmp_path / "out" / ".staging").exists()


def test_build_killed_while_waiting_resumes_without_resubmitting(server, tmp_path, monkeypatch):
    import cftdata.backends.batch as batch_mod
    from cftdata.pipeline import build
    from cftdata.recipe import load_recipe

    kind = "openai-batch"
    recipe = batch_recipe(tmp_path, kind, server.openai_url, rows=12, generate=False)
    server.hold = True  # batches never end: the build waits...

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt  # ... and is stopped during its first wait

    monkeypatch.setattr(batch_mod.time, "sleep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(load_recipe(recipe))
    assert created(server, kind) == 3  # every shard was submitted before the wait
    monkeypatch.undo()
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.hold = False
    result = build(load_recipe(recipe))
    assert result.rows == 12 and result.rejected == 0
    assert created(server, kind) == 3 and server.counts["duplicate_items"] == 0  # resumed, nothing paid twice
