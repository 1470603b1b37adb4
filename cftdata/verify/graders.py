"""Graders: how an extracted answer is compared with the reference (``cftdata eval --grader``).

=================  ===========================================================================  =========
name               comparison                                                                   timeout
=================  ===========================================================================  =========
``math-verify``    :func:`cftdata.verify.pool.check_pair` (math-verify; cftdata's default)       5 s
``paper``          the CFT authors' ``math_equal`` (:mod:`cftdata.verify.paper`, lenient fork)   3 s
``qwen25-math``    the upstream Qwen2.5-Math ``math_equal`` (no lenient additions)               3 s
=================  ===========================================================================  =========

Each runs in :class:`cftdata.verify.pool.Verifier` workers with a hard per-item timeout (a timeout counts as
not correct, as in the authors' harness, whose pebble pool gave each item 3 s).
"""

from __future__ import annotations

from dataclasses import dataclass

from cftdata.registry import Registry
from cftdata.verify.paper import check_paper, check_qwen25
from cftdata.verify.pool import CheckFn

__all__ = ["GRADERS", "Grader"]


@dataclass(frozen=True)
class Grader:
    """A comparison run in the verifier pool: ``check`` (None = math-verify's :func:`check_pair`)."""

    name: str
    description: str
    check: CheckFn | None = None
    timeout_s: float = 5.0
    max_chars: int = 1000


#: Grader name -> :class:`Grader`.
GRADERS: Registry[Grader] = Registry("grader")
for _g in (
    Grader("math-verify", "math-verify in worker processes, per-item timeout", None, 5.0),
    Grader("paper", "the CFT authors' math_equal (Qwen2.5-Math grader + their lenient checks), per-item timeout",
           check_paper, 3.0, 10_000),
    Grader("qwen25-math", "the Qwen2.5-Math evaluation harness's math_equal, per-item timeout", check_qwen25, 3.0,
           10_000),
):
    GRADERS.add(_g.name, _g)
