"""End to end through the real CLI with the real bundled model (SmolLM2-135M via llama.cpp).

Slow (a real model on CPU), run in CI. Proves: the quickstart builds the paper's format; the output
loads with `datasets` and polars; a rerun makes zero model calls; a build killed half way (SIGKILL)
and rerun yields every row exactly once and only makes the calls that had not finished.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from cftdata.prompts import CFT_INSTRUCTION
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "quickstart"
    cache = tmp_path_factory.mktemp("qs-cache")
    env = {"CFTDATA_CACHE_DIR": str(cache)}
    t0 = time.monotonic()
    first = run_cli("build", "recipes/quickstart.yaml", "--set", f"output.dir={out}", env=env)
    seconds = time.monotonic() - t0
    assert first.returncode == 0, first.stderr[-3000:]
    return {"out": out, "env": env, "first": first, "seconds": seconds}


def test_quickstart_output_is_the_papers_alpaca_format(quickstart):
    out = quickstart["out"]
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "data", "dataset_info.json", "manifest.json",
                                                     "rejects.parquet"]
    df = pl.read_parquet(out / "data" / "*.parquet")
    rejects = pl.read_parquet(out / "rejects.parquet")
    manifest = json.loads((out / "manifest.json").read_text())
    # Every source row is accounted for: data + rejects = 20.
    assert df.height + rejects.height == 20 == manifest["counts"]["source"]["in"]
    assert df.height > 0
    for name, c in manifest["counts"].items():
        assert c["in"] == c["out"] + c["rejected"], name
    row = df.row(0, named=True)
    assert row["instruction"] == CFT_INSTRUCTION
    assert row["input"].startswith("Question:\n") and "\n\nSolution:\n" in row["input"]
    assert row["output"].strip()
    assert row["verdict"] in {"right", "wrong", "unknown"}
    assert row["teacher"] == "local:smollm2-135m" and row["response_source"] == "local:smollm2-135m"
    assert manifest["usage"]["critique"]["calls_made"] == df.height
    assert manifest["recipe"]["teacher"]["prompt"] == "cft-reference"
    assert "llama-cpp-python" in manifest["versions"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "Conclusion: right/wrong [END]" in card and "load_dataset" in card


def test_quickstart_loads_with_datasets(quickstart):
    import datasets

    ds = datasets.load_dataset("parquet", data_dir=str(quickstart["out"] / "data"), split="train")
    assert {"instruction", "input", "output"} <= set(ds.column_names) and len(ds) > 0


def test_rerun_makes_zero_model_calls(quickstart):
    out = quickstart["out"]
    before = pl.read_parquet(out / "data" / "*.parquet")
    again = run_cli("build", "recipes/quickstart.yaml", "--set", f"output.dir={out}", env=quickstart["env"])
    assert again.returncode == 0, again.stderr[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["usage"]["respond"]["calls_made"] == 0 and m["usage"]["critique"]["calls_made"] == 0
    assert m["usage"]["respond"]["cache_hits"] == 20
    after = pl.read_parquet(out / "data" / "*.parquet")
    assert after.equals(before)


def test_messages_and_prompt_completion_formats(quickstart, tmp_path):
    for fmt, cols in (("messages", {"messages"}), ("prompt-completion", {"prompt", "completion"})):
        out = tmp_path / fmt
        res = run_cli("build", "recipes/quickstart.yaml", "--limit", "3", "--set", f"output.dir={out}",
                      "--set", f"output.format={fmt}", "--set", "output.provenance=false", env=quickstart["env"])
        assert res.returncode == 0, res.stderr[-2000:]
        df = pl.read_parquet(out / "data" / "*.parquet")
        assert set(df.columns) == cols
        if fmt == "prompt-completion":
            r = df.row(0, named=True)
            assert r["prompt"][0]["role"] == "user" and r["prompt"][0]["content"].startswith(CFT_INSTRUCTION + "\n")
            assert r["completion"][0]["role"] == "assistant"


def _cached(cache: Path) -> int:
    """Answers stored (in SQLite or still in a writer's journal)."""
    from cftdata.backends.cache import count_answers

    return sum(count_answers(cache).values())


def _start_build(out: Path, cache: Path, n: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "cftdata.cli", "build", "recipes/quickstart.yaml", "--limit", str(n),
            "--set", f"output.dir={out}", "--set", "respond.params.max_tokens=64",
            "--set", "teacher.params.max_tokens=48", "--set", "run.shard_size=4",
            "--set", "respond.params.temperature=0", "--set", "teacher.params.temperature=0"]
    import os

    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, "CFTDATA_CACHE_DIR": str(cache)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_build_resumes_each_row_once(tmp_path, sig):
    out, cache, n = tmp_path / "out", tmp_path / "cache", 8
    proc = _start_build(out, cache, n)
    deadline = time.monotonic() + 300
    while _cached(cache) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "build finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "rerun the same command to resume" in err
        assert "Traceback" not in err
    done_before = _cached(cache)
    assert 5 <= done_before < 2 * n
    assert not (out / "manifest.json").exists()  # nothing half-published

    proc = _start_build(out, cache, n)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    calls = m["usage"]["respond"]["calls_made"] + m["usage"]["critique"]["calls_made"]
    hits = m["usage"]["respond"]["cache_hits"] + m["usage"]["critique"]["cache_hits"]
    assert hits == done_before  # every answer received before the kill was reused ...
    assert calls + hits == m["usage"]["respond"]["requests"] + m["usage"]["critique"]["requests"]  # ... and only the rest sent
    ids = pl.read_parquet(out / "data" / "*.parquet")["id"].to_list()
    rej = pl.read_parquet(out / "rejects.parquet")["id"].to_list()
    assert len(ids) == len(set(ids)) and not set(ids) & set(rej)
    assert len(ids) + len(rej) == n
