"""The bad-input matrix: what a new user gets wrong, through the real CLI, against real loopback servers.

A broken endpoint (wrong key, model typo, nothing listening, a proxy's HTML page, JSON without choices)
stops the build, with or without the preflight: exit 1 within seconds, a handful of calls, one paragraph
naming the cause, no traceback, nothing rejected; a rerun against a working endpoint into the same
folder builds every row once. Recipe mistakes (``base_url`` not a URL, ``output.dir`` a file) are exit 2
before any call. Per-row bad input (a malformed line, a non-UTF-8 line, a row without a question) stays
per-row rejects. ``cftdata check`` and the dry run show the preflight, one line per endpoint.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from cftdata.backends import Request, make_backend
from cftdata.backends.cache import RequestCache
from cftdata.backends.caller import ModelLayer
from cftdata.errors import EndpointError
from cftdata.recipe import ModelSpec
from tests.conftest import ROOT, free_port, run_cli
from tests.servers.fault_server import serve

KEY_ENV = "CFTDATA_MATRIX_KEY"
GOOD_KEY = "sk-matrix-good-0123456789abcdef"
BAD_KEY = "sk-matrix-typo-fedcba9876543210"
ROWS = 200
#: The acceptance bounds of issue 19.
MAX_SECONDS = 20
MAX_CALLS = 16


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, GOOD_KEY)
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
def server():
    with serve(latency_s=0.01, models=["fault-model"], api_key=GOOD_KEY) as (url, stats):
        yield url, stats


def write_source(path: Path, n: int = ROWS) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"question": f"What is {i} + {i}?", "response": f"It is {2 * i}."}) + "\n")
    return path


def write_recipe(tmp_path: Path, url: str, source: Path, **teacher: object) -> Path:
    recipe = {
        "version": 1, "name": "matrix",
        "source": {"path": str(source), "question": "question", "response": "response"},
        "teacher": {"backend": "openai", "model": "fault-model", "base_url": url, "api_key_env": KEY_ENV,
                    "params": {"max_tokens": 64}, **teacher},
        "output": {"dir": str(tmp_path / "out")},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def build(recipe: Path, *args: str, env: dict | None = None):
    t0 = time.monotonic()
    proc = run_cli("build", str(recipe), "-q", *args, env=env, timeout=120)
    return proc, time.monotonic() - t0


def built_ids(out: Path) -> list[str]:
    return [i for f in sorted((out / "data").glob("*.parquet")) for i in pq.read_table(f, columns=["id"])["id"].to_pylist()]


def assert_stopped(proc, seconds: float, calls: int, code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert seconds < MAX_SECONDS, seconds
    assert calls <= MAX_CALLS, calls
    message = proc.stderr
    assert message.startswith("error: ") and message.count("\n") <= 2, message  # one paragraph
    for needle in needles:
        assert needle in message, (needle, message)
    assert BAD_KEY not in message and GOOD_KEY not in message


# -- systemic endpoint failures: stop the build, reject nothing, a rerun builds every row once ------------

#: case -> (server settings while broken, recipe teacher keys while broken, env while broken, words the message
#: must hold)
ENDPOINT_CASES = {
    "wrong_key": ({}, {}, {KEY_ENV: BAD_KEY}, ["HTTP 401", "API key", KEY_ENV, "fault-model"]),
    "model_typo": ({}, {"model": "fault-modle"}, {}, ["HTTP 404", "fault-modle", "teacher.model"]),
    "endpoint_down": ({}, {"base_url": "down"}, {}, ["connection", "teacher.base_url"]),
    "html_page": ({"html_rate": 1.0}, {}, {}, ["text/html", "not the model API", "teacher.base_url"]),
    "no_choices": ({"nochoices_rate": 1.0}, {}, {}, ["bad response", "not the model API"]),
}


@pytest.mark.parametrize("preflight", [True, False], ids=["preflight", "breaker"])
@pytest.mark.parametrize("case", list(ENDPOINT_CASES))
def test_broken_endpoint_stops_the_build_and_a_rerun_builds_every_row(tmp_path, server, case, preflight):
    url, stats = server
    faults, teacher, env, needles = ENDPOINT_CASES[case]
    source = write_source(tmp_path / "rows.jsonl")
    if teacher.get("base_url") == "down":
        port = free_port()
        teacher = {"base_url": f"http://127.0.0.1:{port}/v1"}
        needles = [*needles, f"127.0.0.1:{port}"]
    stats.configure(**faults)
    flags = () if preflight else ("--no-preflight",)
    proc, seconds = build(write_recipe(tmp_path, url, source, **teacher), *flags, env=env)
    calls = stats().total
    assert_stopped(proc, seconds, calls, 1, *needles)
    if preflight:
        assert "preflight" in proc.stderr and calls <= 1
    out = tmp_path / "out"
    assert not (out / "manifest.json").exists() and not (out / "rejects.parquet").exists()  # nothing rejected

    # Fixed: the same command against a working endpoint, into the same folder, builds every row once.
    stats.configure(html_rate=0.0, nochoices_rate=0.0)
    stats.reset()
    proc = run_cli("build", str(write_recipe(tmp_path, url, source)), "-q", *flags, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ids = built_ids(out)
    assert len(ids) == ROWS == len(set(ids))
    s = stats()
    assert s.duplicates == 0 and s.by_route.get("POST /v1/chat/completions") == ROWS  # the preflight is a row
    assert json.loads((out / "manifest.json").read_text())["rejected"] == 0


# -- recipe mistakes: exit 2 before any call ---------------------------------------------------------------


def test_base_url_not_a_url_is_a_recipe_error(tmp_path, server):
    url, stats = server
    proc, seconds = build(write_recipe(tmp_path, "not-a-url", write_source(tmp_path / "rows.jsonl")))
    assert_stopped(proc, seconds, stats().total, 2, "teacher.base_url", "http", "not-a-url")
    assert stats().total == 0


def test_output_dir_that_is_a_file_is_a_recipe_error(tmp_path, server):
    url, stats = server
    recipe = write_recipe(tmp_path, url, write_source(tmp_path / "rows.jsonl"))
    (tmp_path / "out").write_text("I am a file")
    for command in (("build",), ("build", "--dry-run"), ("check",)):
        t0 = time.monotonic()
        proc = run_cli(*command, str(recipe), timeout=120)
        assert_stopped(proc, time.monotonic() - t0, stats().total, 2, "output.dir", "is an existing file")
    assert stats().total == 0
    (tmp_path / "blocker").write_text("a file where a folder should be")
    data = yaml.safe_load(recipe.read_text())
    data["output"]["dir"] = str(tmp_path / "blocker" / "out")
    recipe.write_text(yaml.safe_dump(data))
    proc = run_cli("build", str(recipe), timeout=120)
    assert proc.returncode == 2 and "output.dir" in proc.stderr and "cannot be created" in proc.stderr


# -- per-row bad input stays per row ----------------------------------------------------------------------


def test_bad_rows_are_rejected_one_by_one(tmp_path, server):
    url, stats = server
    source = write_source(tmp_path / "rows.jsonl", ROWS - 3)
    lines = source.read_bytes().splitlines(keepends=True)
    lines.insert(50, b'{"question": "broken json", \n')
    lines.insert(100, b'{"question": "caf\xe9 au lait?", "response": "latin-1 bytes"}\n')
    lines.insert(150, json.dumps({"prompt": "no question key", "response": "x"}).encode() + b"\n")
    source.write_bytes(b"".join(lines))
    proc = run_cli("build", str(write_recipe(tmp_path, url, source)), "-q", timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    assert len(built_ids(out)) == ROWS - 3
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    assert len(rejects) == 3 and all(r["stage"] == "source" and r["reason"] for r in rejects), rejects
    assert len({r["reason"] for r in rejects}) == 3


def test_per_row_failures_never_trip_the_breaker(tmp_path, server):
    """20 rows that each get a 400 (the row's own fault, no healthy answer among them) are 20 rejects."""
    url, stats = server
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps({"question": f"Q{i} [[400]]", "response": "r"}) + "\n" for i in range(20)))
    proc = run_cli("build", str(write_recipe(tmp_path, url, source)), "-q", timeout=300)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["rows_out"] == 0 and manifest["rejects_by_reason"] == {"critique:http_400": 20}


# -- the breaker through the API: a key revoked mid-build ---------------------------------------------------


def _requests(n: int, tag: str) -> list[Request]:
    return [Request.make("fault-model", [{"role": "user", "content": f"{tag} {i}"}], {"max_tokens": 8})
            for i in range(n)]


def test_key_revoked_mid_build_stops_after_a_few_calls(tmp_path, server):
    url, stats = server
    spec = ModelSpec(backend="openai", model="fault-model", base_url=url, api_key_env=KEY_ENV, concurrency=16)
    cache = RequestCache(tmp_path / "requests.sqlite")
    caller = ModelLayer(cache).caller(spec, label="critique", section="teacher")
    try:
        assert all(r.ok for r in caller.call(_requests(50, "before")))
        stats.configure(api_key="sk-rotated-key-000000000000")
        stats.reset()
        with pytest.raises(EndpointError) as e:
            caller.call(_requests(ROWS, "after"))
    finally:
        caller.close()
        cache.close()
    message = str(e.value)
    assert "mid-build" in message and "HTTP 401" in message and KEY_ENV in message and GOOD_KEY not in message
    assert stats().status(401) <= 2 * 16, stats().by_status  # the in-flight window, not one per row


def test_failures_without_the_breaker_are_per_row(tmp_path, server):
    """``fail_fast_after: 0`` turns the breaker off: every row is a reject (the old behaviour, by choice)."""
    url, stats = server
    stats.configure(api_key="sk-something-else-0000000000")
    spec = ModelSpec(backend="openai", model="fault-model", base_url=url, api_key_env=KEY_ENV, fail_fast_after=0)
    caller = ModelLayer(None).caller(spec)
    try:
        assert [r.error for r in caller.call(_requests(20, "q"))] == ["http_401"] * 20
    finally:
        caller.close()


# -- preflight: cftdata check and the dry run --------------------------------------------------------------


def test_check_prints_one_line_per_endpoint(tmp_path, server):
    url, stats = server
    recipe = write_recipe(tmp_path, url, write_source(tmp_path / "rows.jsonl", 5))
    proc = run_cli("check", str(recipe), timeout=120)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.startswith("critique") and url in line and "OK" in line
    assert stats().by_route == {"POST /v1/chat/completions": 1}

    proc = run_cli("check", str(recipe), env={KEY_ENV: BAD_KEY}, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stdout.splitlines()
    assert "FAILED" in line and "HTTP 401" in line and KEY_ENV in line and BAD_KEY not in line


def test_check_on_the_quickstart(bundled_gguf):
    proc = run_cli("check", str(ROOT / "recipes" / "quickstart.yaml"), timeout=300)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()  # respond and teacher share one endpoint: one line
    assert line.startswith("respond+critique local") and "OK" in line and "loads" in line


def test_dry_run_shows_the_preflight_without_spending(tmp_path, server):
    url, stats = server
    recipe = write_recipe(tmp_path, url, write_source(tmp_path / "rows.jsonl", 5))
    proc = run_cli("build", str(recipe), "--dry-run", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "preflight critique" in proc.stdout and "model listed" in proc.stdout
    proc = run_cli("build", str(recipe), "--dry-run", "--set", "teacher.model=fault-modle", timeout=120)
    assert proc.returncode == 0 and "FAILED" in proc.stdout and "fault-modle" in proc.stdout
    # With a base_url the key is optional: the dry run asks without one, as the build would, and is refused.
    proc = run_cli("build", str(recipe), "--dry-run", env={KEY_ENV: ""}, timeout=120)
    assert proc.returncode == 0 and "FAILED" in proc.stdout and "HTTP 401" in proc.stdout
    assert stats().by_route == {"GET /v1/models": 3}  # nothing spent
    # api.openai.com without its key: not checked (and nothing is sent anywhere).
    proc = run_cli("build", str(recipe), "--dry-run", "--set", "teacher.base_url=null", env={KEY_ENV: ""},
                   timeout=120)
    assert proc.returncode == 0 and f"not checked ({KEY_ENV} is not set)" in proc.stdout


# -- in-process engines: one clear error, not a reject per row -------------------------------------------


def test_a_gguf_that_fails_to_load_is_one_error(tmp_path, bundled_gguf):
    source = write_source(tmp_path / "rows.jsonl", 20)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    recipe = {"version": 1, "name": "broken", "source": {"path": str(source)},
              "respond": {"mode": "generate", "backend": "local", "model": str(broken)},
              "teacher": {"backend": "none"}, "output": {"dir": str(tmp_path / "out")}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    for flags in ((), ("--no-preflight",)):
        proc = run_cli("build", str(path), "-q", *flags, timeout=120)
        assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, proc.stderr
        assert "could not load" in proc.stderr and str(broken) in proc.stderr
        assert not (tmp_path / "out" / "rejects.parquet").exists()


def test_vllm_that_cannot_start_is_one_error(tmp_path):
    from cftdata.backends.vllm_offline import VLLMBackend

    class NoGPU(VLLMBackend):
        @staticmethod
        def llm_cls(**kw):
            raise RuntimeError("No CUDA GPUs are available")

        sampling_cls = dict

    backend = NoGPU(ModelSpec(backend="vllm", model="Qwen/Qwen2.5-0.5B-Instruct"))
    with pytest.raises(EndpointError, match="could not start.*No CUDA GPUs"):
        backend.generate(_requests(3, "q"), lambda i, r: None)


def test_vllm_not_installed_is_one_error(tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here: the import-failure path cannot run")
    source = write_source(tmp_path / "rows.jsonl", 20)
    recipe = {"version": 1, "name": "vllm", "source": {"path": str(source)},
              "respond": {"mode": "generate", "backend": "vllm", "model": "Qwen/Qwen2.5-0.5B-Instruct"},
              "teacher": {"backend": "none"}, "output": {"dir": str(tmp_path / "out")}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    for flags in ((), ("--no-preflight",)):
        proc = run_cli("build", str(path), "-q", *flags, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "needs vLLM" in proc.stderr and not (tmp_path / "out" / "rejects.parquet").exists()


# -- batch backends: the key checked through a batch list (free) --------------------------------------------


@pytest.mark.parametrize("kind", ["openai-batch", "anthropic-batch"])
def test_batch_backends_are_checked_through_a_batch_list(tmp_path, kind, monkeypatch):
    pytest.importorskip("openai" if kind == "openai-batch" else "anthropic")
    from cftdata.endpoints import probe_backend
    from tests.servers.batch_server import BatchServer

    env = "OPENAI_API_KEY" if kind == "openai-batch" else "ANTHROPIC_API_KEY"
    with BatchServer(api_key=GOOD_KEY) as srv:
        url = srv.openai_url if kind == "openai-batch" else srv.anthropic_url
        spec = ModelSpec(backend=kind, model="m", base_url=url, options={"state_dir": str(tmp_path)})
        monkeypatch.setenv(env, GOOD_KEY)
        ok, detail = probe_backend(make_backend(spec), spend=True, section="teacher")
        assert ok and "batch list" in detail
        monkeypatch.setenv(env, BAD_KEY)
        ok, detail = probe_backend(make_backend(spec), spend=True, section="teacher")
        assert not ok and "refused the API key" in detail and BAD_KEY not in detail


# -- the breaker's rules, on its own ---------------------------------------------------------------------


def _breaker(**kw):
    from cftdata.backends.breaker import CircuitBreaker, Endpoint

    return CircuitBreaker(Endpoint("openai", "m", "http://127.0.0.1:9/v1", KEY_ENV, "teacher"), **kw)


def test_breaker_waits_out_a_blip_after_good_answers():
    b = _breaker(grace_s=0.3)
    b.record(None)
    for _ in range(20):  # connection errors right after a good answer: a blip, retried row by row
        b.record("connection", "connect to 127.0.0.1:9 failed")
    assert not b.tripped
    time.sleep(0.35)
    b.record("connection", "connect to 127.0.0.1:9 failed")  # still failing after the grace: the server is gone
    assert b.tripped and "mid-build" in str(b.error) and "teacher.base_url" in str(b.error)


def test_breaker_rules():
    b = _breaker()
    for _ in range(7):
        b.record("auth", "HTTP 401: bad key")
        b.record("rate_limited")  # neutral: neither resets nor counts
    assert not b.tripped
    b.record("auth", "HTTP 401: bad key")
    assert b.tripped and "first 8 calls" in str(b.error) and KEY_ENV in str(b.error)

    b = _breaker()
    for _ in range(50):
        b.record("bad_request", "HTTP 400: too long")  # a row's own fault is a healthy answer
        b.record("not_found", "HTTP 404")
    assert not b.tripped and b.healthy == 50

    b = _breaker(preflight=True)
    assert b.may_start() and not b.may_start()  # the first request goes alone
    b.finished("not_found", "HTTP 404: no such model")
    assert b.tripped and "first request" in str(b.error) and "teacher.model" in str(b.error)

    b = _breaker(threshold=0)
    for _ in range(100):
        b.record("auth", "HTTP 401")
    assert not b.tripped and all(b.may_start() for _ in range(100))


def test_the_preflight_goes_alone_for_at_most_a_moment():
    """An attempt still unanswered after ``alone_s`` was not refused (a refusal comes back at once): the others
    start; a systemic failure of that first attempt still trips at once with the preflight's message."""
    b = _breaker(preflight=True, alone_s=0.2)
    assert b.may_start() and not b.may_start()
    time.sleep(0.25)
    assert all(b.may_start() for _ in range(50))  # not refused within the moment: being generated
    b.finished("auth", "HTTP 401: key revoked")
    assert b.tripped and "first request" in str(b.error) and "after more than 0.2 s" in str(b.error)

    b = _breaker(preflight=True, alone_s=0.2)
    assert b.may_start()
    time.sleep(0.25)
    assert b.may_start()
    b.finished("server_error", "HTTP 500")  # said nothing: probation, a few in flight until a healthy answer
    assert sum(b.may_start() for _ in range(20)) == b.threshold - 1
    b.finished(None)
    assert all(b.may_start() for _ in range(50))


def test_a_slow_healthy_endpoint_waits_a_moment_not_a_whole_answer(tmp_path):
    """Against a teacher that takes 3 s an answer, the second request goes out about a second after the
    preflight's, not when its answer comes back (issue 11: the limit is used from the start)."""
    with serve(latency_s=3.0, models=["fault-model"], api_key=GOOD_KEY) as (url, stats):
        proc, seconds = build(write_recipe(tmp_path, url, write_source(tmp_path / "rows.jsonl", 30)))
        s = stats()
    assert proc.returncode == 0, proc.stderr
    first, second = sorted(s.arrivals)[:2]
    assert 0.9 <= second - first < 2.5, s.arrivals[:5]
    assert s.total == 30 and s.duplicates == 0


def test_messages_mask_credentials_in_the_base_url():
    from cftdata.backends.breaker import public_address

    assert public_address("https://user:pw@proxy.example/v1?key=abc") == "https://***@proxy.example/v1?***"
    assert public_address("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert public_address("/models/x.gguf") == "/models/x.gguf"


# -- recipe and source mistakes that were already handled: still exit 2, one paragraph, no call ------------

RECIPE_CASES = {
    "broken_yaml": ("name: [unclosed\n", (), ["not valid YAML"]),
    "missing_recipe": (None, (), ["does not exist"]),
    "unknown_backend": (None, ("--set", "teacher.backend=openia"), ["openia"]),
    "bad_set": (None, ("--set", "=3"), ["--set"]),
    "unknown_local_model": (None, ("--set", "teacher.backend=local", "--set", "teacher.model=no-such-model"),
                            ["no-such-model"]),
}


@pytest.mark.parametrize("case", list(RECIPE_CASES))
def test_recipe_mistakes_are_exit_2_before_any_call(tmp_path, server, case):
    url, stats = server
    text, flags, needles = RECIPE_CASES[case]
    recipe = write_recipe(tmp_path, url, write_source(tmp_path / "rows.jsonl"))
    if text is not None:
        recipe.write_text(text)
    if case == "missing_recipe":
        recipe = tmp_path / "nope.yaml"
    proc, seconds = build(recipe, *flags)
    assert_stopped(proc, seconds, stats().total, 2, *needles)
    assert stats().total == 0


def test_a_wrong_path_is_not_found_and_a_missing_models_list_is_not_checked(server):
    from cftdata.endpoints import probe_backend

    url, stats = server
    wrong = url.removesuffix("/v1") + "/api"  # a server that answers, at a path it does not serve
    backend = make_backend(ModelSpec(backend="openai", model="fault-model", base_url=wrong, api_key_env=KEY_ENV))
    ok, detail = probe_backend(backend, spend=False, section="teacher")
    assert ok is None and "no models list" in detail  # the free check cannot tell
    ok, detail = probe_backend(backend, spend=True, section="teacher")
    assert ok is False and "HTTP 404" in detail and "teacher.base_url" in detail and "/v1" in detail
