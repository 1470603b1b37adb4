"""The authors' evaluation harness, re-implemented: extraction order, normalisation, stop strings, comparison
semantics, reference answers on real benchmark rows, grading through the verifier pool with a hard timeout,
the paper's table layout and the side-by-side comparison (CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cftdata.benchmarks import BENCHMARKS, load_problems
from cftdata.errors import CftdataError
from cftdata.train.harness import HARNESSES, PAPER_STOP
from cftdata.verify import paper
from tests.conftest import ROOT, run_cli

FIXTURES = ROOT / "tests" / "fixtures" / "benchmarks"


# -- extraction ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output, expected", [
    # 1. minerva's sentence wins over a box
    ("so \\boxed{3}. Final Answer: The final answer is $4.5$. I hope it is correct.", "4.5"),
    # 2. the last brace-balanced box, nested braces kept, \dfrac normalised
    ("first \\boxed{1}, then $\\boxed{\\dfrac{\\sqrt{3}}{2}}$.", "\\frac{\\sqrt{3}}{2}"),
    ("\\boxed 7$ and more", "7"),
    # 3. "he answer is" (any case of T), 4. "final answer is"
    ("Adding gives 12. The answer is 12 apples.", "12"),
    ("...hence the answer is: 3/4.", "\\frac{3}{4}"),
    ("My final answer is 0.50", "0.50"),
    # 5. the last number, commas removed
    ("We get 1,234 then 5,678 widgets", "5678"),
    ("no number at all", ""),
])
def test_extraction_order(output, expected):
    assert paper.extract_answer(output, "math") == expected


def test_minerva_keeps_units_and_others_drop_them():
    assert paper.extract_answer("\\boxed{5 \\text{ cm}}", "math") == "5"
    assert paper.extract_answer("\\boxed{5 cm}", "minerva_math") == "5cm"
    assert paper.extract_answer("\\boxed{5 cm}", "math") == "5"


@pytest.mark.parametrize("raw, expected", [
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("x = \\dfrac12", "\\frac{1}{2}"),
    ("10\\%", "10"),
    ("90^\\circ", "90"),
    ("\\$18.00", "18"),
    ("twenty one", "21"),
    ("025", "25"),
    ("\\text{(C)}", "(C)"),
    ("\\begin{bmatrix} 1 \\\\ 2 \\end{bmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("\\sqrt2", "\\sqrt{2}"),
])
def test_normalisation(raw, expected):
    assert paper.normalize(raw) == expected


def test_stop_strings_and_output_cleaning():
    assert PAPER_STOP == ("</s>", "<|im_end|>", "<|endoftext|>", "(END)", "\\[END\\]", "**END**", "[END]")
    assert HARNESSES.get("qwen25-math").protocol("math").stop == ("</s>", "<|im_end|>", "<|endoftext|>")
    text = "  So \\boxed{2}. **END** trailing\n"
    assert paper.clean_output(text, PAPER_STOP) == "So \\boxed{2}."
    assert paper.clean_output("a \\[END\\] b", PAPER_STOP) == "a"


# -- comparison ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pred, ref, paper_ok, qwen_ok", [
    ("0.5", "\\frac{1}{2}", True, True),
    ("50", "0.5", True, True),            # percent variant: reference * 100
    ("0.005", "0.5", True, True),         # percent variant: reference / 100
    ("1.00005", "1", True, True),         # relative tolerance 1e-4
    ("1.001", "1", True, False),          # the fork's one-decimal rounding only
    ("3.14", "3.1", True, False),
    ("12", "13", False, False),
    ("(1,\\frac{9}{2})", "(1,4.5)", True, True),        # tuples element-wise
    ("[0,\\frac{1}{2})", "[0,0.5)", True, True),         # intervals element-wise
    ("(0,1)", "[0,1)", True, True),                      # the harness ignores bracket kinds element-wise
    ("\\begin{pmatrix}1\\\\0.5\\end{pmatrix}", "\\begin{pmatrix}1\\\\\\frac{1}{2}\\end{pmatrix}", True, True),
    ("y=2x+1", "2x-y+1=0", True, True),                  # equations as lhs - rhs
    ("x=5", "5", True, True),
    ("2x+3", "3+2x", True, True),                        # sympy
    ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", True, True),
    ("x^2+2x+1", "(x+1)^2", True, True),
    ("x^2+1", "(x+1)^2", False, False),
    ("5.89\\times10^{-7}", "5.89e-7", True, True),
    ("A", "(A)", True, True),
])
def test_math_equal(pred, ref, paper_ok, qwen_ok):
    assert paper.math_equal(pred, ref, lenient=True) is paper_ok
    assert paper.math_equal(pred, ref, lenient=False) is qwen_ok


def test_parse_expr_never_sees_python():
    assert paper.math_equal("__import__('os').getcwd()", "1") is False
    assert paper._sympy_parse("__import__('os')") == "__import__('os')"


# -- reference answers on the real benchmark rows (../shared/data) --------------------------------------------


def test_reference_answers_on_real_rows(shared_data):
    expected_first = {"math500": "(3,\\frac{\\pi}{2})", "gsm8k": "18", "minerva_math": "1.6", "olympiadbench": "2",
                      "aime24": "204", "amc23": "27", "theoremqa": "11760"}
    h = HARNESSES.get("paper")
    for name, gold in expected_first.items():
        problems, _ = load_problems(name, shared_data, limit=2)
        assert h.protocol(name).gold(problems[0]) == gold, name
    aime = [h.protocol("aime24").gold(p) for p in load_problems("aime24", shared_data)[0]]
    assert "25" in aime and "025" not in aime  # the harness's word2number reading drops leading zeros


def test_true_false_questions_get_the_harness_suffix(shared_data):
    h = HARNESSES.get("paper").protocol("theoremqa")
    problems = load_problems("theoremqa", shared_data)[0]
    flagged = [p for p in problems if h.gold(p).lower() in ("true", "false")]
    assert flagged and all(h.question(p).endswith(" (True or False)") for p in flagged)
    assert not any(h.question(p).endswith(")") and "True or False" in h.question(p)
                   for p in problems if p not in flagged)


def test_reference_solutions_grade_correct_under_the_paper_harness(shared_data):
    """MATH-500's own solutions, graded against their references through the real pool: the harness must call
    (nearly) all of them correct; a solution against another problem's reference must be wrong."""
    from cftdata.train.evaluate import grade

    problems = load_problems("math500", shared_data, limit=40)[0]
    outputs = [p.row["solution"] for p in problems]
    recs = grade(problems, outputs, harness="paper", workers=2)
    assert sum(r["status"] == "correct" for r in recs) >= 39, [r for r in recs if r["status"] != "correct"]
    shifted = grade(problems, outputs[1:] + outputs[:1], harness="paper", workers=2)
    assert sum(r["status"] == "correct" for r in shifted) <= 2


def test_a_pathological_comparison_times_out_and_the_rest_go_on():
    from cftdata.verify.graders import GRADERS
    from cftdata.verify.pool import Verifier

    g = GRADERS.get("paper")
    with Verifier(workers=1, timeout_s=1.0, max_chars=g.max_chars, check=g.check) as v:
        # sympy expands both 40th powers in simplify(a - b): tens of seconds without the limit
        res = v.verify_many([("(x+y+z+2)^{40}", "(x+y+z+1)^{40}"), ("\\frac{1}{2}", "0.5")])
    assert res[0].status == "timeout" and res[1].status == "correct"


# -- multiple choice ----------------------------------------------------------------------------------------------


def test_choice_benchmarks_from_fixtures():
    gpqa, source = load_problems("gpqa_diamond", FIXTURES)
    assert source.startswith("file:") and len(gpqa) == 3
    p = gpqa[0]
    assert p.problem.startswith("Which gas makes up most of Earth's atmosphere by volume?\nAnswer Choices: (A) ")
    letters = "ABCD"
    shown = p.problem.split("Answer Choices: ")[1]
    assert f"({p.gold}) Nitrogen" in shown and p.gold in letters
    assert load_problems("gpqa_diamond", FIXTURES)[0][0].problem == p.problem  # the shuffle is seeded
    assert gpqa[1].problem.count("\nAnswer Choices:") == 1  # a question ending in \n gets no second newline
    mmlu = load_problems("mmlu_pro", FIXTURES)[0]
    assert mmlu[0].problem == ("Question:\nWhat is the derivative of x^3?\nOptions:\nA. x^2\nB. 3x^2\nC. 3x\n"
                               "D. x^3/3\nAnswer: Let's think step by step.\n")  # "N/A" options dropped
    assert [q.gold for q in mmlu] == ["B", "D", "C"]


def test_choice_extraction_and_grading():
    from cftdata.train.evaluate import grade

    gpqa = load_problems("gpqa_diamond", FIXTURES)[0]
    mmlu = load_problems("mmlu_pro", FIXTURES)[0]
    g = gpqa[0].gold
    other = next(c for c in "ABCD" if c != g)
    wrong = next(c for c in "ABCD" if c != gpqa[1].gold)
    outs = [f"Thinking about {other}... The answer is ({g}).", f"I pick {wrong}.", "no letter here at all"]
    recs = grade(gpqa, outs, harness="paper")
    assert [r["status"] for r in recs] == ["correct", "incorrect", "incorrect"]
    recs = grade(mmlu, ["so the answer is (B)", "Answer: D", "hmm"], harness="paper")
    assert [r["pred"] for r in recs[:2]] == ["B", "D"] and recs[2]["pred"] in "ABCD"  # the harness's random guess
    recs = grade(mmlu, ["\\boxed{B}", "The answer is D", "\\boxed{A}"], harness="cftdata")
    assert [r["status"] for r in recs] == ["correct", "correct", "incorrect"]


# -- tables and comparison (CLI) ------------------------------------------------------------------------------------


def _result(model: str, accs: dict[str, float], **extra) -> dict:
    per = {b: {"title": BENCHMARKS.get(b).title, "n": 100, "correct": int(a), "accuracy": a} for b, a in accs.items()}
    return {"model": model, "harness": "paper", "grader": "paper", "benchmarks": per,
            "average": round(sum(accs.values()) / len(accs), 2), **extra}


PAPER_CFT = {"math": 80.2, "minerva_math": 42.3, "gsm8k": 90.9, "olympiadbench": 41.6, "aime24": 20.0, "amc23": 67.5}


def test_paper_table_layout():
    from cftdata.train.evaluate import _paper_average, format_table

    r = _result("cft", PAPER_CFT)
    r["paper_average"] = _paper_average(r["benchmarks"])
    assert r["paper_average"] == 57.08
    text = format_table(r)
    lines = text.splitlines()
    assert lines[0] == "model: cft; harness: paper; grader: paper"
    assert lines[1].split() == ["MATH", "Minerva", "GSM8K", "OlympiadBench", "AIME24", "AMC23", "AVG"]
    assert lines[2].split() == ["accuracy", "%", "80.2", "42.3", "90.9", "41.6", "20.0", "67.5", "57.1"]
    assert "mean of the six benchmarks" in text
    md = format_table(r, markdown=True)
    assert "| accuracy % | 80.2 | 42.3 | 90.9 | 41.6 | 20.0 | 67.5 | 57.1 |" in md


def test_eval_compare_cli(tmp_path: Path):
    sft = {"math": 70.0, "minerva_math": 40.0, "gsm8k": 88.0, "olympiadbench": 35.0, "aime24": 10.0, "amc23": 50.0}
    a, b = tmp_path / "cft.json", tmp_path / "sft.json"
    a.write_text(json.dumps(_result("runs/cft", {**PAPER_CFT, "gpqa_diamond": 30.0})))
    b.write_text(json.dumps(_result("runs/sft", sft, limit=None)))
    res = run_cli("eval-compare", str(a), str(b), "--labels", "CFT,SFT", "--output", str(tmp_path / "cmp.md"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[1].split() == ["MATH", "Minerva", "GSM8K", "OlympiadBench", "AIME24", "AMC23", "AVG"]
    assert lines[2].split()[0] == "CFT" and lines[2].split()[-1] == "57.1"
    assert lines[3].split()[0] == "SFT" and lines[3].split()[-1] == "48.8"
    assert lines[4].split() == ["CFT", "-", "SFT", "+10.2", "+2.3", "+2.9", "+6.6", "+10.0", "+17.5", "+8.2"]
    assert "| CFT - SFT | +10.2 |" in (tmp_path / "cmp.md").read_text()
    c = tmp_path / "other.json"
    c.write_text(json.dumps({**_result("runs/x", sft), "grader": "math-verify"}))
    res = run_cli("eval-compare", str(a), str(c))
    assert res.returncode == 0 and "note: the runs differ in grader: 'paper' vs 'math-verify'" in res.stdout
    res = run_cli("eval-compare", str(a), str(tmp_path / "missing.json"))
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr


def test_unknown_harness_or_grader_is_a_clear_error():
    from cftdata.train.evaluate import EvalSettings

    with pytest.raises(CftdataError, match="Unknown harness 'papr'"):
        EvalSettings(benchmarks=["math500"], harness="papr")
    with pytest.raises(CftdataError, match="Known graders: math-verify, paper, qwen25-math"):
        EvalSettings(benchmarks=["math500"], grader="sympy")
    assert EvalSettings(benchmarks=["math500"], harness="paper").grader == "paper"
    assert EvalSettings(benchmarks=["math500"], harness="paper", grader="math-verify").grader == "math-verify"
