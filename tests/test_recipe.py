"""Recipes: YAML validation, --set overrides, extends, and clear exit-2 errors through the CLI."""

from __future__ import annotations

import textwrap

import pytest

from cftdata.errors import RecipeError
from cftdata.recipe import load_recipe
from tests.conftest import ROOT, run_cli


def write(tmp_path, text, name="r.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


BASE = """
version: 1
name: t
source: {path: data.jsonl, question: problem}
teacher: {backend: openai, model: gpt-4o-mini, params: {temperature: 0.3, max_tokens: 100}}
"""


def test_quickstart_recipe_validates():
    r = load_recipe(ROOT / "recipes" / "quickstart.yaml")
    assert r.teacher.prompt == "cft-reference" and r.teacher.verdict_constraint == "auto"
    assert r.verify is not None and r.agreement is not None  # the teacher-vs-verifier table is on
    assert r.respond.mode == "generate" and r.respond.params.temperature > 0
    assert r.output_dir.as_posix() == "outputs/quickstart"


def test_set_overrides_documented_key_paths(tmp_path):
    p = write(tmp_path, BASE)
    r = load_recipe(p, [
        "source.path=other.jsonl", "source.limit=5", "teacher.backend=local", "teacher.model=smollm2-135m",
        "teacher.base_url=http://127.0.0.1:9/v1", "teacher.params.max_tokens=512", "respond.mode=generate",
        "output.dir=/tmp/x",
    ])
    assert r.source.path == "other.jsonl" and r.source.limit == 5
    assert (r.teacher.backend, r.teacher.model, r.teacher.base_url) == ("local", "smollm2-135m", "http://127.0.0.1:9/v1")
    assert r.teacher.params.max_tokens == 512 and r.teacher.params.temperature == 0.3
    assert r.respond.mode == "generate" and str(r.output_dir) == "/tmp/x"


def test_extends_merges_and_overrides(tmp_path):
    write(tmp_path, BASE, "base.yaml")
    child = write(tmp_path, """
        extends: base.yaml
        name: child
        teacher: {model: gpt-4o-2024-11-20}
    """, "child.yaml")
    r = load_recipe(child)
    assert r.name == "child" and r.teacher.model == "gpt-4o-2024-11-20"
    assert r.teacher.params.max_tokens == 100 and r.source.question == "problem"


def test_extends_loop_is_an_error(tmp_path):
    write(tmp_path, "extends: b.yaml\nname: a\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\nname: b\n", "b.yaml")
    with pytest.raises(RecipeError, match="loop"):
        load_recipe(tmp_path / "a.yaml")


@pytest.mark.parametrize("text, expected", [
    (BASE + "teacher_x: 1\n", "unknown key 'teacher_x'"),
    (BASE.replace("model: gpt-4o-mini", "modle: gpt-4o-mini"), "unknown key 'teacher.modle'. Allowed keys here:"),
    (BASE.replace("max_tokens: 100", "max_tokens: lots"), "key 'teacher.params.max_tokens'"),
    (BASE.replace("name: t\n", ""), "key 'name' is required"),
    ("version: 2\n" + BASE.replace("version: 1\n", ""), "key 'version'"),
    (BASE.replace("source: {path: data.jsonl, question: problem}", "source: {question: problem}"),
     "exactly one of source.path"),
    ("name: [unclosed\n", "not valid YAML at line"),
])
def test_bad_recipes_exit_2_with_clear_message(tmp_path, text, expected):
    p = write(tmp_path, text)
    res = run_cli("build", str(p))
    assert res.returncode == 2, res.stderr
    assert expected in res.stderr
    assert str(p) in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_recipe_file_exit_2(tmp_path):
    res = run_cli("build", str(tmp_path / "nope.yaml"))
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr


def test_missing_source_file_exit_2(tmp_path):
    p = write(tmp_path, BASE.replace("data.jsonl", "missing.jsonl"))
    res = run_cli("build", str(p), "--set", "teacher.backend=local")
    assert res.returncode == 2, res.stderr
    assert "missing.jsonl" in res.stderr and "does not exist" in res.stderr and "Traceback" not in res.stderr


def test_bad_set_syntax_exit_2(tmp_path):
    p = write(tmp_path, BASE)
    res = run_cli("build", str(p), "--set", "teacher.model")
    assert res.returncode == 2 and "KEY.PATH=VALUE" in res.stderr


def test_missing_api_key_is_clear_before_any_work(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"problem": "1+1?"}\n')
    p = write(tmp_path, BASE)
    res = run_cli("build", str(p), "--set", "respond.mode=existing", "--set", "source.response=problem",
                  env={"OPENAI_API_KEY": ""})
    assert res.returncode == 2
    assert "OPENAI_API_KEY" in res.stderr and "Traceback" not in res.stderr


def test_extends_null_removes_a_base_key(tmp_path):
    write(tmp_path, BASE + "select: {strategy: longest_critique, n: 5, params: {pool: 8}}\n", "base.yaml")
    child = write(tmp_path, "extends: base.yaml\nname: c\nselect: {strategy: random, params: null}\n", "c.yaml")
    r = load_recipe(child)
    assert r.select.strategy == "random" and r.select.params == {} and r.select.n == 5
