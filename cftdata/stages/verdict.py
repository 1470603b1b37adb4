"""verdict: the critique's final judgement, by the paper's rule.

Take the text after the LAST "Conclusion" (case-insensitive), lower-case it; if it contains "wrong"
or "incorrect" the verdict is ``wrong`` (tested first: "incorrect" contains "correct"), else if it
contains "right" or "correct" it is ``right``, else ``unknown``. No "Conclusion" at all: ``unknown``.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from cftdata.rows import Reject, Row, StageOutput
from cftdata.stages.base import STAGES, Stage


def parse_verdict(critique: str | None) -> str:
    """right / wrong / unknown, by the CFT paper's rule."""
    if not critique:
        return "unknown"
    low = critique.lower()
    pos = low.rfind("conclusion")
    if pos < 0:
        return "unknown"
    tail = low[pos + len("conclusion"):]
    if "wrong" in tail or "incorrect" in tail:
        return "wrong"
    if "right" in tail or "correct" in tail:
        return "right"
    return "unknown"


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

    def process(self, rows: list[Row]) -> StageOutput:
        out, rejects = [], []
        drop_unknown = self.ctx.recipe.verdict.drop_unknown
        for row in rows:
            v = parse_verdict(row.get("critique"))
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
        return {"verdicts": dict(self.counts),
                "right_ratio": round(self.counts["right"] / total, 4) if total else None}
