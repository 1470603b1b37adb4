"""Verdict rules: a critique's final judgement (right / wrong / unknown), by name (``verdict.rule``).

``cftdata`` (default)
    Take the text after the LAST "Conclusion" (case-insensitive), lower-case it; if it contains "wrong"
    or "incorrect" the verdict is ``wrong`` (tested first: "incorrect" contains "correct"), else if it
    contains "right" or "correct" it is ``right``, else ``unknown``. No "Conclusion" at all: ``unknown``.
``authors``
    The CFT authors' code (Wyyyb/CriticCoT ``process_webinstruct_0119.py``, ``parse_single_critic``): split
    on "Conclusion" case-SENSITIVELY and keep the last piece (no "Conclusion" at all: the whole text),
    lower-case it, then "wrong"/"incorrect" -> ``wrong``, else "right"/"correct" -> ``right``, else
    ``wrong``: there is no ``unknown`` class.

This module imports nothing but the registry, so the recipe can validate ``verdict.rule`` cheaply.
"""

from __future__ import annotations

from collections.abc import Callable

from cftdata.registry import Registry

__all__ = ["VERDICT_RULES", "parse_verdict", "parse_verdict_authors"]

#: Rule name -> ``(critique) -> "right" | "wrong" | "unknown"``.
VERDICT_RULES: Registry[Callable[[str | None], str]] = Registry("verdict rule")


def _judge(tail: str, otherwise: str) -> str:
    if "wrong" in tail or "incorrect" in tail:
        return "wrong"
    if "right" in tail or "correct" in tail:
        return "right"
    return otherwise


@VERDICT_RULES.register("cftdata")
def parse_verdict(critique: str | None) -> str:
    """right / wrong / unknown after the last "Conclusion" (case-insensitive); ``unknown`` without one."""
    if not critique:
        return "unknown"
    low = critique.lower()
    pos = low.rfind("conclusion")
    if pos < 0:
        return "unknown"
    return _judge(low[pos + len("conclusion"):], "unknown")


@VERDICT_RULES.register("authors")
def parse_verdict_authors(critique: str | None) -> str:
    """The authors' rule: case-sensitive split on "Conclusion", anything unrecognised is ``wrong``."""
    return _judge((critique or "").split("Conclusion")[-1].lower(), "wrong")
