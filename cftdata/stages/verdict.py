"""verdict: the critique's final judgement (right / wrong / unknown) by a named rule (``verdict.rule``).

Rules (:data:`VERDICT_RULES`):

``cftdata`` (default)
    Take the text after the LAST "Conclusion" (case-insensitive), lower-case it; if it contains "wrong"
    or "incorrect" the verdict is ``wrong`` (tested first: "incorrect" contains "correct"), else if it
    contains "right" or "correct" it is ``right``, else ``unknown``. No "Conclusion" at all: ``unknown``.
``authors``
    The CFT authors' code (Wyyyb/CriticCoT ``process_webinstruct_0119.py``, ``parse_single_critic``): split
    on "Conclusion" case-SENSITIVELY and keep the last piece (no "Conclusion" at all: the whole text),
    lower-case it, then "wrong"/"incorrect" -> ``wrong``, else "right"/"correct" -> ``right``, else
    ``wrong``: there is no ``unknown`` class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pyarrow as pa

from cftdata.registry import Registry
from cftdata.rows import Reject, Row, StageOutput
from cftdata.stages.base import STAGES, Stage

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


@STAGES.register("verdict")
class VerdictStage(Stage):
    name = "verdict"
    columns = {"verdict": pa.string()}

    @classmethod
    def enabled(cls, recipe) -> bool:
        return recipe.teacher.backend != "none"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.counts: Counter = Counter()
        keep = ctx.recipe.verdict.keep
        self.keep = set(keep) if keep is not None else None
        self.rule = VERDICT_RULES.get(ctx.recipe.verdict.rule)

    def process(self, rows: list[Row]) -> StageOutput:
        out, rejects = [], []
        drop_unknown = self.ctx.recipe.verdict.drop_unknown
        for row in rows:
            v = self.rule(row.get("critique"))
            self.counts[v] += 1
            new = {**row, "verdict": v}
            if v == "unknown" and drop_unknown:
                rejects.append(Reject(row["id"], self.name, "unknown_verdict",
                                      "no right/wrong after the last 'Conclusion'", new))
            elif self.keep is not None and v not in self.keep:
                rejects.append(Reject(row["id"], self.name, "verdict_filtered",
                                      f"verdict {v!r} not in verdict.keep {sorted(self.keep)}", new))
            else:
                out.append(new)
        self.ctx.reporter.advance(self.name, len(rows))
        return StageOutput(out, rejects)

    def summary(self) -> dict:
        total = sum(self.counts.values())
        return {"rule": self.ctx.recipe.verdict.rule, "verdicts": dict(self.counts),
                "right_ratio": round(self.counts["right"] / total, 4) if total else None}
