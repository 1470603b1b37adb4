"""``teacher.verdict_constraint``: the critique is decoded so that it ends in "Conclusion: right/wrong [END]".

* llama.cpp grammar (``gbnf``) with the real bundled model, in process and through the real llama.cpp
  OpenAI-compatible server (``llama_server`` fixture);
* the vLLM / SGLang request fields (``vllm``, ``vllm-guided``, ``sglang``) on the wire, against the fault server
  standing in for a guided-decoding server (it answers with a text matching the regex it was sent, and refuses
  requests without one): what is proved is the request the ``openai`` backend sends;
* recipe validation: unknown names and backends that cannot send the constraint are errors (exit 2).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from cftdata.recipe import TeacherSpec
from cftdata.verdict_constraints import (
    VERDICT_CONSTRAINTS,
    body_chars,
    verdict_gbnf,
    verdict_regex,
    verdict_tail,
)
from cftdata.verdicts import parse_verdict
from tests.conftest import run_cli
from tests.servers.fault_server import FaultServer, Response, serve
from tests.servers.fault_server import Request as ServerRequest

VERDICT_LINE = re.compile(r"\nConclusion: (right|wrong) \[END\]\Z")


def test_regex_and_grammar_have_the_verdict_line_and_the_body_cap():
    rx = re.compile(verdict_regex(40))
    assert rx.fullmatch("The student added wrongly.\nConclusion: wrong [END]")
    assert rx.fullmatch("Fine.\n\nConclusion: right [END]")
    assert not rx.fullmatch("Fine.\nConclusion: maybe [END]")
    assert not rx.fullmatch("x" * 41 + "\nConclusion: right [END]")  # body capped
    g = verdict_gbnf(40)
    assert 'root ::= body "\\nConclusion: " verdict " [END]"' in g and "{1,40}" in g and '"right" | "wrong"' in g
    assert body_chars(256) == 2 * (256 - 16) and body_chars(None) == 4000


def test_each_dialect_names_its_request_field():
    fields = {name: VERDICT_CONSTRAINTS.get(name).request_params(100, "openai") for name in VERDICT_CONSTRAINTS}
    rx = verdict_regex(body_chars(100))
    assert fields == {"gbnf": {"grammar": verdict_gbnf(body_chars(100))},
                      "vllm": {"structured_outputs": {"regex": rx}},
                      "vllm-guided": {"guided_regex": rx},
                      "sglang": {"regex": rx}}
    # in process, llama.cpp decodes the body freely and only the verdict line under the grammar
    assert VERDICT_CONSTRAINTS.get("gbnf").request_params(100, "local") == {"grammar_tail": verdict_tail()}
    assert verdict_tail()["grammar"] == 'root ::= ("right" | "wrong") " [END]"\n'


def test_auto_is_a_grammar_on_local_and_nothing_elsewhere():
    local = TeacherSpec(backend="local", model="smollm2-135m", verdict_constraint="auto", params={"max_tokens": 64})
    assert local.resolved_verdict_constraint() == "gbnf" and "grammar_tail" in local.verdict_constraint_params()
    for backend in ("openai", "anthropic", "existing", "none"):
        spec = TeacherSpec(backend=backend, verdict_constraint="auto")
        assert spec.resolved_verdict_constraint() is None and spec.verdict_constraint_params() == {}


@pytest.mark.parametrize(("sets", "message"), [
    (["teacher.verdict_constraint=outlines"], "verdict_constraint: unknown 'outlines'"),
    (["teacher.backend=anthropic", "teacher.model=claude-sonnet-4-5", "teacher.verdict_constraint=gbnf"],
     "teacher.backend 'anthropic' cannot send it"),
    (["teacher.verdict_constraint=vllm"], "teacher.backend 'local' cannot send it"),
])
def test_bad_constraints_are_recipe_errors(sets, message, tmp_path):
    args = [a for s in sets for a in ("--set", s)]
    res = run_cli("build", "recipes/quickstart.yaml", "--dry-run", *args, "--set", f"output.dir={tmp_path / 'o'}")
    assert res.returncode == 2, res.stderr[-2000:]
    assert message in res.stderr and "Traceback" not in res.stderr


# -- the OpenAI-compatible dialects on the wire ----------------------------------------------------------------

SEEN: list[dict] = []


def _regex_of(body: dict) -> str | None:
    return ((body.get("structured_outputs") or {}).get("regex") or body.get("guided_regex") or body.get("regex"))


async def _guided_chat(server: FaultServer, req: ServerRequest) -> Response:
    """A guided-decoding server in miniature: the answer follows the regex the request carries."""
    body = req.json()
    SEEN.append(body)
    regex = _regex_of(body)
    if regex is None:
        return Response.json(400, {"error": {"message": "no regex", "type": "invalid_request_error"}})
    text = "The student's final answer differs from the reference.\nConclusion: wrong [END]"
    assert re.fullmatch(regex, text)
    return Response.json(200, {"id": "x", "object": "chat.completion", "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": text}}],
                               "usage": {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22}})


def register_guided(server: FaultServer) -> None:
    server.add_route("POST", "/v1/chat/completions", _guided_chat)


@pytest.mark.parametrize(("dialect", "field"), [("vllm", "structured_outputs"), ("vllm-guided", "guided_regex"),
                                                ("sglang", "regex")])
def test_openai_backend_sends_the_dialects_field(dialect, field, tmp_path):
    SEEN.clear()
    with serve(plugins=[f"{__name__}:register_guided"]) as (base_url, _stats):
        out = tmp_path / "out"
        res = run_cli("build", "recipes/quickstart.yaml", "--limit", "3", "--set", "respond.mode=existing",
                      "--set", "source.response=answer", "--set", "teacher.backend=openai",
                      f"--set=teacher.base_url={base_url}", "--set", "teacher.model=judge",
                      "--set", f"teacher.verdict_constraint={dialect}", "--set", "teacher.params.max_tokens=300",
                      "--set", f"output.dir={out}")
        assert res.returncode == 0, res.stderr[-2000:]
    # the CLI ran in another process: the server thread in this one saw the requests
    assert len(SEEN) == 3 and all(field in b for b in SEEN)
    assert all(_regex_of(b) == verdict_regex(body_chars(300)) for b in SEEN)
    df = pl.read_parquet(out / "data" / "*.parquet")
    assert df["verdict"].to_list() == ["wrong"] * 3
    m = json.loads((out / "manifest.json").read_text())
    assert m["stages"]["critique"]["verdict_constraint"] == dialect
    assert "parseable verdicts: 3 of 3 (100.0%)" in res.stdout
    assert f"| verdict constraint | `{dialect}`" in (out / "README.md").read_text()


# -- llama.cpp grammar with the real bundled model -----------------------------------------------------------------


def _assert_constrained(out: Path, n: int) -> pl.DataFrame:
    df = pl.read_parquet(out / "data" / "*.parquet")
    rejects = pl.read_parquet(out / "rejects.parquet")
    assert df.height + rejects.height == n
    assert "critique" not in set(rejects["stage"].to_list())  # no critique truncated: the line always fits
    for critique in df["output"].to_list():
        assert VERDICT_LINE.search(critique), critique
        assert parse_verdict(critique) in {"right", "wrong"}
    return df


@pytest.mark.slow
def test_local_grammar_makes_every_critique_end_in_a_verdict(bundled_gguf, tmp_path):
    out = tmp_path / "out"
    res = run_cli("build", "recipes/quickstart.yaml", "--limit", "4", "--set", "teacher.verdict_constraint=gbnf",
                  "--set", "teacher.prompt=cft-paper", "--set", "teacher.params.max_tokens=96",
                  "--set", "respond.params.max_tokens=160", "--set", f"output.dir={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    _assert_constrained(out, 4)
    m = json.loads((out / "manifest.json").read_text())
    assert m["stages"]["critique"]["verdict_constraint"] == "gbnf"
    assert m["stages"]["verdict"]["parseable_ratio"] == 1.0


@pytest.mark.slow
def test_llama_cpp_server_grammar_through_the_openai_backend(llama_server, tmp_path):
    out = tmp_path / "out"
    res = run_cli("build", "recipes/quickstart.yaml", "--limit", "4", "--set", "respond.mode=existing",
                  "--set", "source.response=answer", "--set", "teacher.backend=openai",
                  f"--set=teacher.base_url={llama_server}", "--set", "teacher.verdict_constraint=gbnf",
                  "--set", "teacher.params.max_tokens=96", "--set", f"output.dir={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    _assert_constrained(out, 4)
