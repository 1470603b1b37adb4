"""verdict: the critique's final judgement (right / wrong / unknown) by the recipe's ``verdict.rule``
(:data:`cftdata.verdicts.VERDICT_RULES`: ``cftdata`` or ``authors``), then ``drop_unknown`` and ``keep``.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from cftdata.rows import Reject, Row, StageOutput
from cftdata.stages.base import STAGES, Stage
from cftdata.verdicts import VERDICT_RULES, parse_verdict, parse_verdict_authors

__all__ = ["VERDICT_RULES", "VerdictStage", "parse_verdict", "parse_verdict_authors"]


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
        parseable = self.counts["right"] + self.counts["wrong"]
        return {"rule": self.ctx.recipe.verdict.rule, "verdicts": dict(self.counts),
                "right_ratio": round(self.counts["right"] / total, 4) if total else None,
                "parseable": parseable, "parseable_ratio": round(parseable / total, 4) if total else None}
