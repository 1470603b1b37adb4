"""agreement: cross the teacher's verdict (right/wrong) with the verifier's status (correct/incorrect).

Runs whenever ``verify`` is on. The 2x2 table (plus the rows where either side is undecided) goes to
the manifest and the card. With ``agreement.drop_contradictions: true`` a critique that calls a
verified-correct answer wrong, or a verified-incorrect answer right, is rejected (off by default: the
paper kept every critique). About 20% of GPT-4o critiques were found wrong by hand in the paper.
"""

from __future__ import annotations

from collections import Counter

from cftdata.rows import Reject, Row, StageOutput
from cftdata.stages.base import STAGES, BuildContext, Stage

CONTRADICTIONS = {("right", "incorrect"), ("wrong", "correct")}


@STAGES.register("agreement")
class AgreementStage(Stage):
    name = "agreement"

    @classmethod
    def enabled(cls, recipe) -> bool:
        return recipe.verify is not None and recipe.critiques

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx)
        spec = ctx.recipe.agreement
        self.drop = bool(spec and spec.drop_contradictions)
        self.table: Counter = Counter()

    def process(self, rows: list[Row]) -> StageOutput:
        out, rejects = [], []
        for row in rows:
            pair = (row.get("verdict", "unknown"), row.get("verify_status", "unverifiable"))
            self.table[pair] += 1
            if self.drop and pair in CONTRADICTIONS:
                rejects.append(Reject(row["id"], self.name, "verdict_contradicts_verifier",
                                      f"teacher says {pair[0]}, verifier says {pair[1]}", row))
            else:
                out.append(row)
        return StageOutput(out, rejects)

    def summary(self) -> dict:
        t = self.table
        decided = {(v, s): t[(v, s)] for v in ("right", "wrong") for s in ("correct", "incorrect")}
        n = sum(decided.values())
        agree = decided[("right", "correct")] + decided[("wrong", "incorrect")]
        return {
            "table": {f"{v}/{s}": c for (v, s), c in decided.items()},
            "decided": n,
            "agreement": round(agree / n, 4) if n else None,
            "undecided": sum(t.values()) - n,
            "all": {f"{v}/{s}": c for (v, s), c in sorted(t.items())},
            "drop_contradictions": self.drop,
        }
