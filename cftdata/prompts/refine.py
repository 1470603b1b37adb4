"""Refine prompts: the teacher, having critiqued a response, writes a refined response (critique-guided
distillation, arXiv 2505.11628: the student trains on (prompt, response, critique) -> refined answer).

A refine template receives ``question``, ``response``, ``critique``, ``verdict``, ``reference_answer`` and
``reference_solution`` (empty when the source has none). ``refine.prompt`` names one of :data:`REFINE_PROMPTS`
or a YAML template file, like the critique prompts.
"""

from __future__ import annotations

from cftdata.prompts import PromptTemplate
from cftdata.registry import Registry

REFINE_PROMPTS: Registry[PromptTemplate] = Registry("refine prompt")

#: The instruction of the ``critique-refine`` training rows (what the student sees before the refined answer).
REFINE_INSTRUCTION = ("Below are a question, a student's solution and a critique of it. Using the critique, write "
                      "a complete and correct solution.")

for _t in (
    PromptTemplate(
        "refine",
        "You are a science expert. A student tried to solve a question and a reviewer critiqued the attempt. "
        "Write a complete, correct solution to the question: keep the student's correct steps, fix the errors the "
        "critique points out, reason step by step, and put the final answer within \\boxed{}.",
        "Question:\n{{ question }}\n\nStudent's solution:\n{{ response }}\n\nCritique:\n{{ critique }}",
    ),
):
    REFINE_PROMPTS.add(_t.name, _t)
