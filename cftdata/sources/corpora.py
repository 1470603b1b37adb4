"""Corpus adapters: which field of a corpus holds the question, the noisy response, the reference.

One registry entry per corpus (schemas in ../shared/reference/corpora.md). A recipe picks one with
``source.corpus`` and may still override any field name (``source.question: problem``...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cftdata.registry import Registry


@dataclass(frozen=True)
class Corpus:
    """Field mapping and answer rule of one corpus."""

    name: str
    hub: str | None = None
    hub_config: str | None = None
    question: str = "question"
    response: str | None = None
    reference_solution: str | None = None
    answer: str | None = None
    #: How to extract the reference answer from the reference solution when there is no answer column
    #: (a rule name of :mod:`cftdata.verify.extract`).
    answer_rule: str | None = None
    #: Answer values that mean "no checkable answer" (NuminaMath-1.5's proof/notfound).
    no_answer_values: tuple[str, ...] = ()
    meta: tuple[str, ...] = ()
    license: str | None = None
    #: A record transform run before the field mapping (e.g. split a published CFT input back).
    parse: Callable[[dict[str, Any]], dict[str, Any]] | None = None


CORPORA: Registry[Corpus] = Registry("corpus")

_CFT_SPLIT = re.compile(r"\n+Solution:\n")


def parse_cft_row(record: dict[str, Any]) -> dict[str, Any]:
    """A published WebInstruct-CFT Alpaca row back into question, response and critique."""
    text = record.get("input")
    out = dict(record)
    if isinstance(text, str):
        body = text.removeprefix("Question:\n")
        parts = _CFT_SPLIT.split(body, maxsplit=1)
        out["question"] = parts[0]
        out["response"] = parts[1] if len(parts) == 2 else None
    critique = record.get("output")
    if isinstance(critique, str):
        critique = critique.removeprefix("Critique:\n")
    out["critique"] = critique
    return out


for _c in (
    Corpus("generic"),
    Corpus("webinstruct", hub="TIGER-Lab/WebInstructSub", question="question", response="answer",
           meta=("source", "index"), license="apache-2.0"),
    Corpus("webinstruct-cft", hub="TIGER-Lab/WebInstruct-CFT", hub_config="WebInstruct-CFT-600K",
           question="question", response="response", meta=(), license="apache-2.0", parse=parse_cft_row),
    Corpus("metamath", hub="meta-math/MetaMathQA", question="query", response="response",
           reference_solution="response", answer_rule="answer_is", meta=("type", "original_question"),
           license="mit"),
    Corpus("numinamath", hub="AI-MO/NuminaMath-CoT", question="problem", response="solution",
           reference_solution="solution", answer_rule="boxed", meta=("source",), license="apache-2.0"),
    Corpus("numinamath15", hub="AI-MO/NuminaMath-1.5", question="problem", response="solution",
           reference_solution="solution", answer="answer", no_answer_values=("proof", "notfound"),
           meta=("source", "problem_type", "question_type", "problem_is_valid", "solution_is_valid",
                 "synthetic"), license="apache-2.0"),
    Corpus("gsm8k", hub="openai/gsm8k", hub_config="main", question="question", reference_solution="answer",
           answer_rule="gsm8k", license="mit"),
    Corpus("math500", hub="HuggingFaceH4/MATH-500", question="problem", reference_solution="solution",
           answer="answer", meta=("subject", "level", "unique_id"), license="mit"),
):
    CORPORA.add(_c.name, _c)
