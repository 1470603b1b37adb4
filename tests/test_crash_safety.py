"""Crash and concurrency safety through the real CLI (issue 12): one build per output folder, kill -9 at every
phase, native crashes reported as messages, and every known failure ending in a message, not a traceback.

Builds are real ``cftdata build`` processes of ``recipes/quickstart.yaml`` with overrides: a local source of
responses, critiqued by the scripted teacher on the loopback fault server (which counts every request, and
every answer delivered twice). Kills happen at phase markers (``CFTDATA_TEST_KILL_AT``, see
:mod:`cftdata.killpoints`), never after sleeps; native crashes are real SIGSEGVs (``CFTDATA_TEST_CRASH_IN``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from cftdata.backends.cache import count_answers
from cftdata.buildlock import LOCK_NAME, is_locked
from tests.conftest import ROOT, run_cli
from tests.servers.fault_server import serve

KEY_ENV = "CFTDATA_CRASH_TEST_KEY"
PLUGIN = "tests.servers.scripted_critic:register"
CEILING = 4  #: requests in flight at most (teacher.concurrency): what a kill may cost
ENTRIES = {"README.md", "data", "manifest.json", "rejects.parquet", "dataset_info.json"}


def write_source(path: Path, n: int) -> Path:
    """``n`` rows: question i with a response whose boxed answer is right for even i; the last is unreadable."""
    lines = [json.dumps({"question": f"Question {i}: compute {i} + {i}.",
                         "response": f"so {i} + {i} = \\boxed{{{2 * i + i % 2}}}", "answer": str(2 * i)})
             for i in range(n - 1)]
    lines.append("{not json")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build_args(out: Path, source: Path, base_url: str, cache: Path, *extra: str) -> list[str]:
    return ["build", "recipes/quickstart.yaml", "-q", "--set", f"output.dir={out}", "--set", f"source.path={source}",
            "--set", "source.question=question", "--set", "source.response=response", "--set", "source.answer=answer",
            "--set", "respond.mode=existing", "--set", "teacher.backend=openai", "--set", "teacher.model=gpt-4o-mini",
            "--set", f"teacher.base_url={base_url}", "--set", f"teacher.api_key_env={KEY_ENV}",
            "--set", f"cache.dir={cache}", "--set", "run.shard_size=4", "--set", f"teacher.concurrency={CEILING}",
            *extra]


def env(**more: str) -> dict[str, str]:
    return {KEY_ENV: "sk-test-crash-safety", **more}


def start(args: list[str], **more: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cftdata.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env(**more)})


def cached(cache: Path) -> int:
    """Answers stored (in SQLite or still in a writer's journal)."""
    return sum(count_answers(cache).values())


def wait_until_cached(proc: subprocess.Popen, cache: Path, answers: int, timeout: float = 120) -> None:
    """Wait (phase marker: answers stored, never a sleep) until the cache holds ``answers`` or ``proc`` ended."""
    deadline = time.monotonic() + timeout
    while cached(cache) < answers and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def published(out: Path) -> dict | None:
    """The complete build the folder holds (its manifest), checked whole: None when there is none."""
    if not (out / "manifest.json").exists():
        return None
    m = json.loads((out / "manifest.json").read_text())
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} <= ENTRIES
    assert sorted("data/" + p.name for p in (out / "data").glob("*.parquet")) == sorted(
        f for f in m["files"] if f.startswith("data/"))
    ids = pl.read_parquet(out / "data" / "*.parquet")["id"].to_list()
    rej = pl.read_parquet(out / "rejects.parquet")["id"].to_list()
    assert len(ids) == m["rows_out"] and len(rej) == m["rejected"]
    assert len(set(ids)) == len(ids) and not set(ids) & set(rej)
    assert len(ids) + len(rej) == m["counts"]["source"]["in"]
    return m


def one_paragraph(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), err[-2000:]
    return lines[-1]


# -- one build per output folder --------------------------------------------------------------------------


def test_second_build_on_the_same_folder_stops_at_once(tmp_path):
    src = write_source(tmp_path / "src.jsonl", 41)
    out = tmp_path / "out"
    with serve(latency_s=0.25, plugins=[PLUGIN]) as (url, stats), serve(plugins=[PLUGIN]) as (url2, stats2):
        first = start(build_args(out, src, url, tmp_path / "cache", "--set", "teacher.concurrency=2"))
        deadline = time.monotonic() + 120
        while stats().total < 2 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()[1][-2000:]
        # Same folder, another recipe value and another server: it must stop before any request.
        t0 = time.monotonic()
        second = run_cli(*build_args(out, src, url2, tmp_path / "cache2", "--set", "teacher.model=other"),
                         env=env())
        took = time.monotonic() - t0
        assert second.returncode == 2, second.stderr[-2000:]
        msg = one_paragraph(second.stderr)
        assert f"pid {first.pid}" in msg and "recipes/quickstart.yaml" in msg and "started" in msg
        assert "--set output.dir=" in msg
        assert stats2().total == 0
        status = run_cli("status", str(out))
        assert status.returncode == 0 and "holds the folder's build lock" in status.stdout, status.stdout
        assert first.poll() is None  # the running build was not disturbed ...
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err[-2000:]
    m = published(out)  # ... and finished whole
    assert m["counts"]["source"]["in"] == 41 and stats().duplicates == 0
    assert not (out / LOCK_NAME).exists()
    print(f"second build refused in {took:.2f} s (process start included)")


def test_lock_api_refuses_a_second_holder_and_leaves_no_file(tmp_path):
    from cftdata.buildlock import BuildLock, BuildLockedError

    with BuildLock(tmp_path / "out", "recipes/a.yaml") as first:
        assert first.previous is None and is_locked(tmp_path / "out")["recipe"] == "recipes/a.yaml"
        with pytest.raises(BuildLockedError) as e:
            BuildLock(tmp_path / "out", "recipes/b.yaml").acquire()
        assert f"pid {os.getpid()}" in str(e.value) and "recipes/a.yaml" in str(e.value)
    assert not (tmp_path / "out" / LOCK_NAME).exists() and is_locked(tmp_path / "out") is None


def test_lock_of_a_killed_build_is_taken_over(tmp_path):
    src = write_source(tmp_path / "src.jsonl", 41)
    out, cache = tmp_path / "out", tmp_path / "cache"
    with serve(latency_s=0.1, plugins=[PLUGIN]) as (url, stats):
        first = start(build_args(out, src, url, cache))
        wait_until_cached(first, cache, 6)
        first.send_signal(signal.SIGKILL)  # the `cftdata` process: its build child dies with it
        first.communicate(timeout=30)
        deadline = time.monotonic() + 30
        while is_locked(out) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert is_locked(out) is None
        stale = json.loads((out / LOCK_NAME).read_text())  # the dead build's details are still there
        assert stale["pid"] == first.pid
        status = run_cli("status", str(out))
        assert "the build that held the folder's lock is gone" in status.stdout, status.stdout
        before = cached(cache)
        again = run_cli(*build_args(out, src, url, cache), env=env())
        assert again.returncode == 0, again.stderr[-2000:]
        assert "resumed an interrupted build" in again.stdout
        assert stats().duplicates <= CEILING  # at most what was in flight at the kill
    m = published(out)
    assert m["resume"]["resumed"] and m["resume"]["answers_from_cache"] == before
    assert m["resume"]["resent"] <= CEILING
    assert m["counts"]["source"]["in"] == 41 and not (out / LOCK_NAME).exists()


# -- kill -9 at every phase ---------------------------------------------------------------------------------

#: Where the build is killed: every phase; the swap between renames (1-5 move the old build out, 6-10 move the
#: new one in). The ones without the slow mark run everywhere, the rest in CI (each kill is two builds).
POINTS = ["answer:5", "select", "swap:3", "swap:9",
          *(pytest.param(p, marks=pytest.mark.slow)
            for p in ("source:2", "verify:2", "critique:2", "write", "card", "publish", "swap:1", "swap:6"))]


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_any_phase_then_rerun(tmp_path, point):
    """An old complete build (20 rows), then a new one (29 rows) killed at ``point``: right after the kill the
    folder holds the old or the new build whole (once a reader completed an interrupted swap); the rerun
    publishes the new build with every row once, and sends none of the requests answered before the kill."""
    src = write_source(tmp_path / "src.jsonl", 30)
    out, cache = tmp_path / "out", tmp_path / "cache"
    quality = ("--set", "verify={answer_rule: boxed, workers: 1}", "--set", "select={n: 1000}")
    with serve(latency_s=0.02, plugins=[PLUGIN]) as (url, stats):
        old = run_cli(*build_args(out, src, url, cache, "--limit", "20", *quality), env=env())
        assert old.returncode == 0, old.stderr[-2000:]
        assert published(out)["counts"]["source"]["in"] == 20
        cached_old = cached(cache)
        stats.reset()
        killed = run_cli(*build_args(out, src, url, cache, *quality), env=env(CFTDATA_TEST_KILL_AT=point))
        assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
        time.sleep(0.2)  # the kernel releases the lock of the killed child
        before_repair = published(out)  # a folder with a manifest is always whole ...
        if before_repair is None:
            assert (out / ".publish").is_dir()  # ... and one without is a swap a reader completes
        status = run_cli("status", str(out))
        assert status.returncode == 0, status.stderr[-2000:]
        m = published(out)
        assert m is not None and m["counts"]["source"]["in"] in (20, 30)
        committed = point.startswith(("publish", "swap"))  # killed after the commit: the new build won
        assert m["counts"]["source"]["in"] == (30 if committed else 20)
        before = cached(cache)
        sent_before = stats().total
        in_flight = sent_before - (before - cached_old)  # reached the server, answer never stored
        again = run_cli(*build_args(out, src, url, cache, *quality), env=env())
        assert again.returncode == 0, again.stderr[-2000:]
        s = stats()
    m = published(out)
    assert m["counts"]["source"]["in"] == 30 and m["rows_out"] > 0
    assert {p.name for p in out.iterdir()} <= ENTRIES  # no lock, staging or swap folders left
    r = m["resume"]
    assert r["answers_from_cache"] == before  # every answer cached before the kill was used ...
    assert s.duplicates <= in_flight <= r["resent"] <= CEILING  # ... only those in flight at the kill were sent again
    assert r["sent"] == s.total - sent_before
    if not point.startswith(("source", "answer", "verify", "critique")):
        assert r["sent"] == 0 and s.duplicates == 0


# -- native crashes -----------------------------------------------------------------------------------------


def test_native_crash_in_llama_backend_is_a_message(tmp_path):
    pytest.importorskip("llama_cpp", reason="the local extra (llama-cpp-python) is not installed")
    out = tmp_path / "out"
    res = run_cli("build", "recipes/quickstart.yaml", "--limit", "2", "--set", f"output.dir={out}",
                  env={"CFTDATA_TEST_CRASH_IN": "llama"}, timeout=300)
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    msg = one_paragraph(res.stderr)
    assert "SIGSEGV" in msg and "llama.cpp" in msg and "smollm2-135m" in msg
    assert "CFTDATA_LLAMA_EXTRA_BUFFERS=off" in msg and "rerun the same command to resume" in msg
    from cftdata.backends.llama_runtime import cpu_info

    assert cpu_info().model in msg
    assert not (out / "manifest.json").exists() and is_locked(out) is None


def test_native_crash_in_verify_workers_is_a_message(tmp_path):
    """Every math-verify worker really segfaults on its first pair: after three crashes the build stops with the
    message (exit 1); the critiques already answered stay cached, and a rerun without the fault finishes."""
    src = write_source(tmp_path / "src.jsonl", 9)
    out, cache = tmp_path / "out", tmp_path / "cache"
    verify = ("--set", "verify={answer_rule: boxed, workers: 1}")
    with serve(plugins=[PLUGIN]) as (url, stats):
        res = run_cli(*build_args(out, src, url, cache, *verify), env=env(CFTDATA_TEST_CRASH_IN="verify"))
        assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
        msg = one_paragraph(res.stderr)
        assert "math-verify" in msg and "SIGSEGV" in msg and "rerun the same command to resume" in msg
        assert not (out / "manifest.json").exists() and is_locked(out) is None
        again = run_cli(*build_args(out, src, url, cache, *verify), env=env())
        assert again.returncode == 0, again.stderr[-2000:]
    assert published(out)["counts"]["verify"]["in"] == 8


@pytest.mark.slow
def test_native_crash_in_a_ray_actor_is_a_message(tmp_path):
    """``run.executor: ray``: the verify task's Ray actor really segfaults on every batch; Ray Data restarts it a
    bounded number of times (its default is forever), then the build stops with the message, exit 1."""
    pytest.importorskip("ray", reason="the ray extra (ray[data]) is not installed")
    src = write_source(tmp_path / "src.jsonl", 9)
    out = tmp_path / "out"
    res = run_cli("build", "recipes/quickstart.yaml", "-q", "--set", f"output.dir={out}", "--set",
                  f"source.path={src}", "--set", "source.question=question", "--set", "source.response=response",
                  "--set", "source.answer=answer", "--set", "respond.mode=existing", "--set", "teacher.backend=existing",
                  "--set", "teacher.model=published", "--set", "verify={answer_rule: boxed, workers: 1}",
                  "--set", "run.executor=ray", "--set", "run.ray_concurrency=1",
                  env={"CFTDATA_TEST_CRASH_IN": "ray", "RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"},
                  timeout=400)
    assert res.returncode == 1, (res.returncode, res.stderr[-3000:])
    msg = one_paragraph(res.stderr)
    assert "Ray actor" in msg and "VerifyWorker" in msg and "rerun the same command to resume" in msg
    assert is_locked(out) is None and not (out / "manifest.json").exists()


def test_ctrl_c_still_exits_130_with_the_resume_hint(tmp_path):
    src = write_source(tmp_path / "src.jsonl", 41)
    out, cache = tmp_path / "out", tmp_path / "cache"
    with serve(latency_s=0.2, plugins=[PLUGIN]) as (url, stats):
        proc = start(build_args(out, src, url, cache))
        wait_until_cached(proc, cache, 3)
        proc.send_signal(signal.SIGINT)  # to the `cftdata` process only: it forwards it to the build
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "rerun the same command to resume" in err and "Traceback" not in err


def test_sigterm_to_the_cftdata_process_stops_the_build_with_a_message(tmp_path):
    src = write_source(tmp_path / "src.jsonl", 41)
    out, cache = tmp_path / "out", tmp_path / "cache"
    with serve(latency_s=0.2, plugins=[PLUGIN]) as (url, stats):
        proc = start(build_args(out, src, url, cache))
        wait_until_cached(proc, cache, 3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM
        assert "SIGTERM" in one_paragraph(err) and is_locked(out) is None
        again = run_cli(*build_args(out, src, url, cache), env=env())
    assert again.returncode == 0 and "resumed an interrupted build" in again.stdout


# -- every known failure ends in a message ------------------------------------------------------------------


def test_corrupt_cache_database_is_a_message(tmp_path):
    src = write_source(tmp_path / "src.jsonl", 6)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "requests.sqlite").write_bytes(b"this is not a database" * 100)
    with serve(plugins=[PLUGIN]) as (url, stats):
        res = run_cli(*build_args(tmp_path / "out", src, url, cache), env=env())
        assert stats().total == 0
    assert res.returncode == 1
    msg = one_paragraph(res.stderr)
    assert str(cache / "requests.sqlite") in msg and "Move it aside" in msg


def test_deleted_cache_before_rerun_rebuilds_whole(tmp_path):
    src = write_source(tmp_path / "src.jsonl", 9)
    out, cache = tmp_path / "out", tmp_path / "cache"
    with serve(plugins=[PLUGIN]) as (url, stats):
        assert run_cli(*build_args(out, src, url, cache), env=env()).returncode == 0
        for p in cache.iterdir():
            p.unlink()
        res = run_cli(*build_args(out, src, url, cache), env=env())
    assert res.returncode == 0, res.stderr[-2000:]
    assert published(out)["counts"]["source"]["in"] == 9


def test_cache_deleted_mid_build_still_finishes(tmp_path):
    src = write_source(tmp_path / "src.jsonl", 21)
    out, cache = tmp_path / "out", tmp_path / "cache"
    with serve(latency_s=0.1, plugins=[PLUGIN]) as (url, stats):
        proc = start(build_args(out, src, url, cache))
        wait_until_cached(proc, cache, 3)
        for p in cache.iterdir():
            p.unlink()
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert published(out)["counts"]["source"]["in"] == 21


def test_bad_source_record_mid_stream_is_a_reject_not_a_crash(tmp_path):
    src = write_source(tmp_path / "src.jsonl", 12)  # its last line is not JSON
    out = tmp_path / "out"
    with serve(plugins=[PLUGIN]) as (url, stats):
        res = run_cli(*build_args(out, src, url, tmp_path / "cache"), env=env())
    assert res.returncode == 0, res.stderr[-2000:]
    assert published(out)["counts"]["source"]["rejected"] >= 1


def test_damaged_source_file_mid_stream_is_a_message(tmp_path):
    """A folder source whose second parquet file has damaged pages: one paragraph naming that file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "src"
    folder.mkdir()
    rows = [{"question": f"Question {i}: compute {i} + {i}.", "response": f"\\boxed{{{2 * i}}}", "answer": str(2 * i)}
            for i in range(30)]
    for name in ("a.parquet", "b.parquet"):
        pq.write_table(pa.Table.from_pylist(rows), folder / name)
    data = (folder / "b.parquet").read_bytes()
    (folder / "b.parquet").write_bytes(data[: len(data) // 2] + b"\0" * 100 + data[len(data) // 2 + 100:])
    with serve(plugins=[PLUGIN]) as (url, stats):
        res = run_cli(*build_args(tmp_path / "out", folder, url, tmp_path / "cache"), env=env())
    assert res.returncode in (1, 2), res.stderr[-2000:]
    assert "b.parquet" in one_paragraph(res.stderr)
    assert not (tmp_path / "out" / "manifest.json").exists()


def _tmpfs(path: Path, options: str) -> bool:
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def test_read_only_output_folder_is_a_message(tmp_path):
    src = write_source(tmp_path / "src.jsonl", 6)
    disk = tmp_path / "ro"
    if os.geteuid() == 0:  # root writes into folders without write permission: use a read-only file system
        if not _tmpfs(disk, "ro,size=64k"):
            pytest.skip("cannot mount a read-only tmpfs here")
    else:
        disk.mkdir()
        disk.chmod(0o555)
    try:
        with serve(plugins=[PLUGIN]) as (url, stats):
            res = run_cli(*build_args(disk / "out", src, url, tmp_path / "cache"), env=env())
            assert stats().total == 0
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
        disk.chmod(0o755)
    assert res.returncode == 1, res.stderr[-2000:]
    assert str(disk / "out") in one_paragraph(res.stderr)


def test_full_disk_is_a_message(tmp_path):
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "size=128k"):
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    try:
        src = tmp_path / "src.jsonl"
        src.write_text("".join(json.dumps({"question": f"Question {i}: " + os.urandom(1500).hex(),
                                           "response": "\\boxed{1}", "answer": "1"}) + "\n" for i in range(120)))
        with serve(plugins=[PLUGIN]) as (url, stats):
            res = run_cli(*build_args(disk / "out", src, url, tmp_path / "cache", "--set", "run.shard_size=40"),
                          env=env())
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
    assert res.returncode == 1, res.stderr[-2000:]
    msg = one_paragraph(res.stderr)
    assert "No space left on device" in msg and "rerun the same command" in msg


def test_native_crash_in_eval_llama_path_is_a_message(tmp_path, shared_data):
    """`cftdata eval` on a GGUF goes through the same llama.cpp backend: a real SIGSEGV there is the same
    one-paragraph message, exit 1, not a bare exit 139."""
    pytest.importorskip("llama_cpp", reason="the local extra (llama-cpp-python) is not installed")
    res = run_cli("eval", "smollm2-135m", "--benchmarks", "gsm8k", "--limit", "1", "--data-dir", str(shared_data),
                  "--max-new-tokens", "16", "--output", str(tmp_path / "smol.json"),
                  env={"CFTDATA_TEST_CRASH_IN": "llama"}, timeout=300)
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    msg = one_paragraph(res.stderr)
    assert "SIGSEGV" in msg and "llama.cpp" in msg and "smollm2-135m" in msg
    assert "CFTDATA_LLAMA_EXTRA_BUFFERS=off" in msg
    assert not (tmp_path / "smol.json").exists()
