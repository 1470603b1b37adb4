"""The `openai` backend against a real OpenAI-compatible server: llama_cpp.server with the bundled model
on 127.0.0.1 (no mocks of the client). Also a whole build with that server as teacher and generator."""

from __future__ import annotations

import json

import polars as pl
import pytest

from cftdata.backends import Request, make_backend
from cftdata.backends.cache import RequestCache
from cftdata.backends.caller import ModelCaller
from cftdata.recipe import TeacherSpec
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_chat_completion_with_usage_and_cache(llama_server, tmp_path):
    spec = TeacherSpec(backend="openai", model="smollm2-135m", base_url=llama_server,
                       params={"temperature": 0, "max_tokens": 16})
    caller = ModelCaller(make_backend(spec), RequestCache.open(tmp_path))
    reqs = [Request.make("smollm2-135m", [{"role": "user", "content": f"Say the number {i}."}],
                         spec.params.as_request_params()) for i in range(3)]
    results = caller.call(reqs)
    assert all(r.ok and r.text for r in results), results
    assert all(r.input_tokens > 0 and r.output_tokens > 0 for r in results)
    assert results[0].finish_reason in {"stop", "length"}
    assert caller.stats.calls == 3
    again = ModelCaller(make_backend(spec), RequestCache.open(tmp_path))
    assert [r.text for r in again.call(reqs)] == [r.text for r in results]
    assert again.stats.calls == 0 and again.stats.cache_hits == 3


def test_truncated_output_is_reported_as_length(llama_server):
    spec = TeacherSpec(backend="openai", model="smollm2-135m", base_url=llama_server,
                       params={"temperature": 0, "max_tokens": 2})
    caller = ModelCaller(make_backend(spec), None)
    [res] = caller.call([Request.make("smollm2-135m", [{"role": "user", "content": "Write a long poem."}],
                                      spec.params.as_request_params())])
    assert res.ok and res.finish_reason == "length"


def test_build_with_openai_compatible_server(llama_server, tmp_path):
    out = tmp_path / "out"
    res = run_cli("build", "recipes/quickstart.yaml", "--limit", "4",
                  "--set", "respond.backend=openai", f"--set=respond.base_url={llama_server}",
                  "--set", "teacher.backend=openai", f"--set=teacher.base_url={llama_server}",
                  "--set", "respond.params.max_tokens=48", "--set", "teacher.params.max_tokens=400",
                  "--set", f"output.dir={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["usage"]["critique"]["calls_made"] == m["counts"]["critique"]["in"]
    df = pl.read_parquet(out / "data" / "*.parquet")
    rejects = pl.read_parquet(out / "rejects.parquet")
    assert df.height + rejects.height == 4
    # generation at max_tokens=48 truncates some responses: they are rejects with a reason, not data
    assert set(rejects["reason"].to_list()) <= {"truncated", "empty_output"}
    assert all(r == "openai:smollm2-135m" for r in df["teacher"].to_list())
