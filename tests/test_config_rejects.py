"""A recipe mistake that would reject every row is an error before any model call (exit 2, the key to set), while
per-row problems stay per-row rejects. Through the real CLI, with the fault server as the (paid) teacher so that
"no call was made" is counted by a real server."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import run_cli
from tests.servers.fault_server import serve


def _source(tmp_path: Path, n: int = 20, response_every: int = 0, answer_every: int = 1) -> Path:
    """n problems with answers (every ``answer_every``-th row) and responses (every ``response_every``-th)."""
    path = tmp_path / "problems.jsonl"
    with path.open("w") as f:
        for i in range(n):
            rec = {"problem": f"What is {i} + {i}?"}
            if answer_every and i % answer_every == 0:
                rec["answer"] = str(2 * i)
            if response_every and i % response_every == 0:
                rec["solution"] = f"{i} + {i} = {2 * i}. The answer is \\boxed{{{2 * i}}}."
            f.write(json.dumps(rec) + "\n")
    return path


def _recipe(tmp_path: Path, source: dict, teacher: dict, respond: dict | None = None) -> Path:
    import yaml

    recipe = {"version": 1, "name": "cfg", "source": source, "teacher": teacher,
              "respond": respond or {"mode": "existing"}, "output": {"dir": str(tmp_path / "out")}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _error_paragraph(stderr: str) -> str:
    """The one-paragraph error (a single ``error:`` line)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]


@pytest.fixture
def teacher_server():
    with serve() as (base_url, stats):
        yield {"backend": "openai", "model": "teacher", "base_url": base_url,
               "params": {"max_tokens": 200}}, stats


def test_existing_responses_without_a_response_field_stop_before_any_call(tmp_path, teacher_server):
    teacher, stats = teacher_server
    src = _source(tmp_path, response_every=1)  # the rows HAVE responses ("solution"), but the recipe maps none
    recipe = _recipe(tmp_path, {"path": str(src), "question": "problem", "answer": "answer"}, teacher)
    for extra in ([], ["--dry-run"]):
        res = run_cli("build", str(recipe), *extra)
        assert res.returncode == 2, res.stderr[-2000:]
        assert "Traceback" not in res.stderr
        err = _error_paragraph(res.stderr)
        assert "respond.mode is 'existing'" in err and "Set source.response" in err
    assert stats().total == 0
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_every_row_rejected_for_one_config_reason_stops_the_build(tmp_path, teacher_server):
    """source.response names a field the rows do not have: known only once rows are read. The guard stops the
    build at the first 16 rows, before the teacher is asked anything."""
    teacher, stats = teacher_server
    src = _source(tmp_path, n=40, response_every=1)
    recipe = _recipe(tmp_path, {"path": str(src), "question": "problem", "response": "answer_text"}, teacher)
    res = run_cli("build", str(recipe), "--set", "run.shard_size=8")
    assert res.returncode == 2, res.stderr[-2000:]
    err = res.stderr
    assert "'respond' rejected every one of the first 16 rows as 'no_response'" in err
    assert "'answer_text' (source.response)" in err and "Traceback" not in err
    assert stats().total == 0
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_rows_missing_a_response_stay_per_row_rejects(tmp_path, teacher_server):
    teacher, stats = teacher_server
    src = _source(tmp_path, n=20, response_every=2)  # half the rows have a response
    recipe = _recipe(tmp_path, {"path": str(src), "question": "problem", "response": "solution"}, teacher)
    res = run_cli("build", str(recipe))
    assert res.returncode == 0, res.stderr[-2000:]
    rejects = pl.read_parquet(tmp_path / "out" / "rejects.parquet")
    assert rejects["reason"].to_list() == ["no_response"] * 10
    assert pl.read_parquet(tmp_path / "out" / "data" / "*.parquet").height == 10
    assert stats().total == 10


def test_reference_prompt_without_a_reference_field_is_an_error(tmp_path, teacher_server):
    teacher, stats = teacher_server
    src = _source(tmp_path, response_every=1)
    recipe = _recipe(tmp_path, {"path": str(src), "question": "problem", "response": "solution"},
                     {**teacher, "prompt": "cft-reference"})
    res = run_cli("build", str(recipe))
    assert res.returncode == 2, res.stderr[-2000:]
    assert "teacher.prompt 'cft-reference'" in res.stderr and "source.answer" in res.stderr
    assert stats().total == 0


def test_reference_prompt_shows_the_reference_and_rejects_rows_without_one(tmp_path, teacher_server):
    teacher, stats = teacher_server
    src = _source(tmp_path, n=20, response_every=1, answer_every=4)  # 5 of 20 rows carry an answer
    recipe = _recipe(tmp_path, {"path": str(src), "question": "problem", "response": "solution", "answer": "answer"},
                     {**teacher, "prompt": "cft-reference"})
    res = run_cli("build", str(recipe))
    assert res.returncode == 0, res.stderr[-2000:]
    out = tmp_path / "out"
    rejects = pl.read_parquet(out / "rejects.parquet")
    assert sorted(set(rejects["reason"].to_list())) == ["no_reference"] and rejects.height == 15
    assert stats().total == 5
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["prompts"]["teacher"]["name"] == "cft-reference"
    assert "Reference answer: {{ reference_answer }}" in manifest["prompts"]["teacher"]["user"]
    card = (out / "README.md").read_text()
    assert "Teacher prompt (`cft-reference`)" in card


def test_all_rows_without_a_reference_stop_the_build(tmp_path, teacher_server):
    teacher, stats = teacher_server
    src = _source(tmp_path, n=20, response_every=1, answer_every=0)  # the answer field is mapped, never present
    recipe = _recipe(tmp_path, {"path": str(src), "question": "problem", "response": "solution", "answer": "answer"},
                     {**teacher, "prompt": "cft-reference"})
    res = run_cli("build", str(recipe))
    assert res.returncode == 2, res.stderr[-2000:]
    assert "'critique' rejected every one of the first 20 rows as 'no_reference'" in res.stderr
    assert stats().total == 0


def test_existing_critiques_missing_everywhere_stop_the_build(tmp_path):
    src = _source(tmp_path, n=20, response_every=1)
    recipe = _recipe(tmp_path, {"path": str(src), "question": "problem", "response": "solution"},
                     {"backend": "existing", "model": "unknown"})
    res = run_cli("build", str(recipe))
    assert res.returncode == 2, res.stderr[-2000:]
    assert "as 'no_critique'" in res.stderr and "teacher.backend" in res.stderr
