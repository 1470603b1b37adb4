"""Answer verification: extract final answers from solutions and compare them with gold answers.

Two parts:

* :func:`extract_answer` (``cftdata.verify.extract``): named, registered extraction rules
  (``boxed``, ``answer_is``, ``gsm8k``, ``a_colon``, ``last_number``, ``auto``) that return the raw
  final-answer string of a solution or reference.
* :class:`Verifier` / :func:`verify_answers` (``cftdata.verify.pool``): math-verify comparison of
  ``(gold, predicted)`` answer pairs in worker processes with a hard per-item time limit, giving one
  :class:`VerifyResult` per pair (``correct``, ``incorrect``, ``unverifiable``, ``timeout``,
  ``error``).

Example::

    from cftdata.verify import Verifier, extract_answer

    gold = extract_answer(reference_text, "gsm8k")
    pred = extract_answer(model_solution, "auto")
    with Verifier(workers=2, timeout_s=5.0) as verifier:
        [result] = verifier.verify_many([(gold, pred)])

Importing this package is cheap: math-verify and sympy are imported only inside the workers.
"""

from __future__ import annotations

from cftdata.verify.extract import ANSWER_RULES, extract_answer, last_boxed
from cftdata.verify.pool import (
    CORRECT,
    ERROR,
    INCORRECT,
    STATUSES,
    TIMEOUT,
    UNVERIFIABLE,
    Verifier,
    VerifyResult,
    WorkerStartupError,
    check_pair,
    verify_answers,
)

__all__ = [
    "ANSWER_RULES",
    "CORRECT",
    "ERROR",
    "INCORRECT",
    "STATUSES",
    "TIMEOUT",
    "UNVERIFIABLE",
    "Verifier",
    "VerifyResult",
    "WorkerStartupError",
    "check_pair",
    "extract_answer",
    "last_boxed",
    "verify_answers",
]
