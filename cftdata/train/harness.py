"""Evaluation harnesses: how each benchmark is asked, where generation stops, how the answer is read.

A harness gives, per benchmark, a :class:`Protocol`: the system prompt, the user turn, the stop strings, the
reference answer and the extraction of the predicted answer; and it names a default grader
(:data:`cftdata.verify.graders.GRADERS`) for free-form answers. Multiple-choice answers are letters, compared
exactly under every grader.

``cftdata`` (default)
    The ``qwen25-math-cot`` prompt for every benchmark, stop at ``<|im_end|>``, ``<|endoftext|>``, ``[END]``;
    the answer is the last brace-balanced ``\\boxed{}`` (``--answer-rule``); references as
    :data:`cftdata.benchmarks.BENCHMARKS` reads them; grader ``math-verify``.
``paper``
    The CFT authors' harness (TIGER-AI-Lab/CritiqueFineTuning ``tools/evaluate_math``, a fork of
    QwenLM/Qwen2.5-Math's): the same prompt, their seven stop strings, their question text (a " (True or
    False)" suffix for true/false answers), their extraction order and normalisation and their reference
    answers (:mod:`cftdata.verify.paper`); grader ``paper``. GPQA-diamond and MMLU-Pro follow the authors'
    ``tools/evaluate_gpqa`` (system "You are a helpful assistant.", the letter after "The answer is") and
    ``tools/evaluate_mmlu-pro`` (its system prompt, "answer is (X)", then "Answer: X", then the last letter,
    else its seeded random guess).
``qwen25-math``
    The upstream Qwen2.5-Math harness: as ``paper`` with its three stop strings and grader ``qwen25-math``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cftdata.benchmarks import BENCHMARKS, Problem
from cftdata.registry import Registry
from cftdata.verify import paper

__all__ = ["DEFAULT_STOP", "HARNESSES", "MATH_COT_SYSTEM", "PAPER_STOP", "Harness", "Protocol"]

#: The system prompt of the paper's evaluation ("qwen25-math-cot").
MATH_COT_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
#: cftdata's stop strings.
DEFAULT_STOP = ("<|im_end|>", "<|endoftext|>", "[END]")
#: The authors' stop strings (math_eval.py of their fork); ``\\[END\\]`` is the literal ``\[END\]``.
PAPER_STOP = ("</s>", "<|im_end|>", "<|endoftext|>", "(END)", "\\[END\\]", "**END**", "[END]")
#: The upstream Qwen2.5-Math harness's stop strings.
QWEN25_STOP = ("</s>", "<|im_end|>", "<|endoftext|>")
#: tools/evaluate_gpqa run_open.py (plus the end-of-turn tokens vLLM stops at as the model's EOS).
GPQA_STOP = ("USER:", "ASSISTANT:", "### Instruction:", "Response:", "\n\nProblem", "\nProblem", "Problem:",
             "<|eot_id|>", "####", "<|im_end|>", "<|endoftext|>")
GPQA_SYSTEM = "You are a helpful assistant."
#: tools/evaluate_mmlu-pro cot_prompt_lib/initial_prompt_1.txt and its stop strings.
MMLU_PRO_SYSTEM = ('Please reason step by step, and put your answer with "the answer is (X)" where X is the correct '
                   "letter choice.")
MMLU_PRO_STOP = ("</s>", "<|im_end|>", "<|endoftext|>", "Question:")

Extract = Callable[[str, Problem, str], str | None]


@dataclass(frozen=True)
class Protocol:
    """How one benchmark is asked and read.

    Attributes:
        system: System prompt of the ``qwen25-math-cot``-style ChatML prompt.
        stop: Stop strings for generation (and the cut applied to the output afterwards).
        question: The user turn of a problem.
        gold: The reference answer of a problem.
        extract: ``(output, problem, answer_rule) -> predicted answer`` (``None``: nothing found).
        letter: The answer is a choice letter, compared exactly (no grader).
    """

    system: str
    stop: tuple[str, ...]
    question: Callable[[Problem], str] = field(default=lambda p: p.problem)
    gold: Callable[[Problem], str | None] = field(default=lambda p: p.gold)
    extract: Extract = field(default=lambda out, p, rule: None)
    letter: bool = False


@dataclass(frozen=True)
class Harness:
    """A named evaluation protocol: one :class:`Protocol` per benchmark kind (or per benchmark name)."""

    name: str
    description: str
    default_grader: str
    protocols: dict[str, Protocol]

    def protocol(self, benchmark: str) -> Protocol:
        """The protocol of a benchmark: by its name if the harness has one, else by its kind."""
        if benchmark in self.protocols:
            return self.protocols[benchmark]
        return self.protocols[BENCHMARKS.get(benchmark).kind]


# -- cftdata ----------------------------------------------------------------------------------------------------

_LETTER_IN_BOX = re.compile(r"\b([A-P])\b")
_ANSWER_IS_LETTER = re.compile(r"answer is:?\s*\(?([A-P])\)?", re.IGNORECASE)
_LAST_LETTER = re.compile(r"\b([A-P])\b(?!.*\b[A-P]\b)", re.DOTALL)


def _cftdata_math(output: str, problem: Problem, rule: str) -> str | None:
    from cftdata.verify.extract import extract_answer

    return extract_answer(output, rule)


def _cftdata_choice(output: str, problem: Problem, rule: str) -> str | None:
    """The letter in the last ``\\boxed{}``, else after "answer is", else the last standalone capital letter."""
    from cftdata.verify.extract import last_boxed

    boxed = last_boxed(output)
    if boxed:
        m = _LETTER_IN_BOX.search(boxed.replace("\\text", " "))
        if m:
            return m.group(1)
    for pattern in (_ANSWER_IS_LETTER, _LAST_LETTER):
        found = pattern.findall(output)
        if found:
            return found[-1].upper()
    return None


# -- the authors' harnesses ---------------------------------------------------------------------------------------


def _paper_question(problem: Problem) -> str:
    """The harness's ``parse_question``: the first of question/problem/Question/input, stripped, with a
    " (True or False)" / " (Yes or No)" suffix when the reference answer is one of those."""
    row = problem.row
    text = next((row[k] for k in ("question", "problem", "Question", "input") if k in row), problem.problem)
    text = str(text)
    gold = paper.reference_answer(problem.benchmark, row).lower()
    if gold in ("true", "false"):
        text += " (True or False)"
    if gold in ("yes", "no"):
        text += " (Yes or No)"
    return text.strip()


def _paper_gold(problem: Problem) -> str:
    return paper.reference_answer(problem.benchmark, problem.row)


def _paper_math(stop: tuple[str, ...]) -> Extract:
    def extract(output: str, problem: Problem, rule: str) -> str | None:
        cleaned = paper.clean_output(output, stop)
        pred = paper.extract_answer(cleaned, problem.benchmark)
        return paper.fix_choice_prediction(pred, _paper_gold(problem), cleaned)

    return extract


_GPQA_TRIGGERS = ("The answer is:", "The answer is", "the answer is")


def _gpqa_letter(output: str, problem: Problem, rule: str) -> str | None:
    """tools/evaluate_gpqa ``answer_clean``: the first A-D after the last "The answer is", else the last A-D."""
    pred = output.strip("\n")
    if any(pred.count(t) > 1 for t in _GPQA_TRIGGERS):
        pred = pred.split("\n\n")[0]
    parts = re.split("|".join(_GPQA_TRIGGERS), pred)
    flagged = len(parts) > 1
    if flagged:
        pred = parts[-1]
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ")
    letters = re.findall(r"\b(A|B|C|D)\b", pred.upper()) or [pred.strip().strip(".")]
    answer = (letters[0] if flagged else letters[-1]).rstrip(".").rstrip("/")
    return answer or None


_MMLU_FIRST = re.compile(r"answer is \(?([A-J])\)?")
_MMLU_SECOND = re.compile(r".*[aA]nswer:\s*([A-J])")
_MMLU_LAST = re.compile(r"\b[A-J]\b(?!.*\b[A-J]\b)", re.DOTALL)


def _mmlu_pro_letter(output: str, problem: Problem, rule: str) -> str | None:
    """tools/evaluate_mmlu-pro: "answer is (X)", else "Answer: X", else the last A-J; nothing found: the
    harness's random guess (``random.seed(12345)`` then ``randint`` over the options)."""
    for pattern in (_MMLU_FIRST, _MMLU_SECOND):
        m = pattern.search(output)
        if m:
            return m.group(1)
    m = _MMLU_LAST.search(output)
    if m:
        return m.group(0)
    n = len([o for o in problem.row.get("options") or [] if o != "N/A"])
    return "ABCDEFGHIJ"[random.Random(12345).randint(0, n - 1)] if n else None


def _authors(name: str, description: str, grader: str, stop: tuple[str, ...]) -> Harness:
    return Harness(name, description, grader, {
        "math": Protocol(MATH_COT_SYSTEM, stop, _paper_question, _paper_gold, _paper_math(stop)),
        "gpqa_diamond": Protocol(GPQA_SYSTEM, GPQA_STOP, extract=_gpqa_letter, letter=True),
        "mmlu_pro": Protocol(MMLU_PRO_SYSTEM, MMLU_PRO_STOP, extract=_mmlu_pro_letter, letter=True),
        "choice": Protocol(MATH_COT_SYSTEM, stop, extract=_cftdata_choice, letter=True),
    })


#: Harness name -> :class:`Harness`.
HARNESSES: Registry[Harness] = Registry("harness")
for _h in (
    Harness("cftdata", "qwen25-math-cot prompt, last \\boxed{}, math-verify", "math-verify", {
        "math": Protocol(MATH_COT_SYSTEM, DEFAULT_STOP, extract=_cftdata_math),
        "choice": Protocol(MATH_COT_SYSTEM, DEFAULT_STOP, extract=_cftdata_choice, letter=True),
    }),
    _authors("paper", "the CFT authors' harness (TIGER-AI-Lab/CritiqueFineTuning tools/evaluate_math, "
             "evaluate_gpqa, evaluate_mmlu-pro)", "paper", PAPER_STOP),
    _authors("qwen25-math", "the QwenLM/Qwen2.5-Math evaluation harness", "qwen25-math", QWEN25_STOP),
):
    HARNESSES.add(_h.name, _h)


def describe(harness: str) -> dict[str, Any]:
    """A harness as recorded in results: name, description, default grader."""
    h = HARNESSES.get(harness)
    return {"name": h.name, "description": h.description, "default_grader": h.default_grader}
