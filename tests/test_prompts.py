"""The paper's critique prompts render exactly; custom template files work and fail clearly."""

import pytest

from cftdata.errors import RecipeError
from cftdata.prompts import CRITIQUE_PROMPTS, SOLVE_PROMPTS, load_template_file, resolve_prompt

PAPER_SYSTEM = ("You are a science expert. A student is trying to solve a question, please explain briefly "
                "whether his answer is correct or not. Finally, conclude your judgement with "
                "'Conclusion: right/wrong [END]'.")


def test_paper_prompt_exact():
    msgs = CRITIQUE_PROMPTS.get("cft-paper").render(question="What is 2+2?", response="2+2=5")
    assert msgs == [{"role": "system", "content": PAPER_SYSTEM},
                    {"role": "user", "content": "Question: What is 2+2?\n\nSolution: 2+2=5"}]


def test_script_and_batch_variants():
    script = CRITIQUE_PROMPTS.get("cft-script").render(question="q", response="r")
    assert "whether his solution is correct" in script[0]["content"]
    batch = CRITIQUE_PROMPTS.get("cft-batch").render(question="q", response="r")
    assert batch[1]["content"] == "Question: q\n\nAnswer: r"
    assert batch[0]["content"] == PAPER_SYSTEM


def test_solve_prompt_has_no_system_when_empty():
    msgs = SOLVE_PROMPTS.get("raw").render(question="1+1?")
    assert msgs == [{"role": "user", "content": "1+1?"}]


def test_custom_template_file(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("system: Be terse.\nuser: 'Q={{ question }} A={{ response }}'\n")
    t = resolve_prompt(str(p), CRITIQUE_PROMPTS)
    assert t.render(question="x", response="y")[1]["content"] == "Q=x A=y"


@pytest.mark.parametrize("body, msg", [
    ("system: hi\n", "'user' string"),
    ("user: '{{ question '\n", "Jinja syntax error"),
    ("user: hi\nother: 1\n", "unknown keys"),
])
def test_bad_template_files(tmp_path, body, msg):
    p = tmp_path / "t.yaml"
    p.write_text(body)
    with pytest.raises(RecipeError, match=msg):
        load_template_file(p)


def test_unknown_prompt_name():
    with pytest.raises(RecipeError, match="cft-paper"):
        resolve_prompt("cft-papr", CRITIQUE_PROMPTS)
