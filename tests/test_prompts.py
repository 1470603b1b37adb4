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


SCRIPT_SYSTEM = ("You are a science expert. A student is trying to solve a question, please explain briefly "
                 "whether his solution is correct or not. Finally, conclude your judgement with "
                 "'Conclusion: right/wrong [END]'.")
BATCH_SYSTEM = ("You are a science expert. A student is trying to solve the a question, please explain briefly "
                "whether his answer is correct or not. Finally, conclude your judgement with "
                "'Conclusion: right/wrong [END]'.")


@pytest.mark.parametrize("name, system, user", [
    # TIGER-AI-Lab/CritiqueFineTuning generate_critique_by_api.py: f"""\nQuestion: ...\n\nSolution: ...\n"""
    ("cft-script", SCRIPT_SYSTEM, "\nQuestion: What is 2+2?\n\nSolution: 2+2=5\n"),
    # Wyyyb/CriticCoT generate_metamath_80k_batch_data.py: an indented triple-quoted f-string
    ("cft-batch", BATCH_SYSTEM, "\n    Question: What is 2+2?\n\n    Answer: 2+2=5\n    "),
    # generate_wi_mini_80k_batch_data.py: the training-format input as the user message
    ("cft-batch-alpaca", BATCH_SYSTEM, "Question:\nWhat is 2+2?\n\nSolution:\n2+2=5"),
])
def test_authors_prompt_variants_exact(name, system, user):
    msgs = CRITIQUE_PROMPTS.get(name).render(question="What is 2+2?", response="2+2=5")
    assert msgs == [{"role": "system", "content": system}, {"role": "user", "content": user}]


def test_multiline_question_and_response_pass_through_unchanged():
    q, r = "Line one.\n\nLine {two} with $x^2$.\n", "Step 1\n\nStep 2 {{ not jinja }}"
    user = CRITIQUE_PROMPTS.get("cft-batch").render(question=q, response=r)[1]["content"]
    assert user == f"\n    Question: {q}\n\n    Answer: {r}\n    "


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


def test_reference_prompt_shows_the_reference_answer():
    t = CRITIQUE_PROMPTS.get("cft-reference")
    assert t.variables == {"question", "response", "reference_answer"}
    assert CRITIQUE_PROMPTS.get("cft-paper").variables == {"question", "response"}
    msgs = t.render(question="What is 2+2?", response="2+2=5", reference_answer="4", reference_solution="")
    assert msgs[0]["content"].startswith(PAPER_SYSTEM.split(" Finally")[0])
    assert msgs[0]["content"].endswith("Compare the student's final answer with the reference answer: if they differ, "
                                       "the student is wrong. Finally, conclude your judgement with "
                                       "'Conclusion: right/wrong [END]'.")
    assert msgs[1] == {"role": "user", "content": "Question: What is 2+2?\n\nSolution: 2+2=5\n\nReference answer: 4"}
