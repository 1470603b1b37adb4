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
        return recipe.critiques

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.counts: Counter = Counter()
        keep = ctx.recipe.verdict.keep
        self.keep = set(keep) if keep is not None else None
        self.rule = VERDICT_RULES.get(ctx.recipe.verdict.rule)
        # (generator, teacher) -> counts of verdicts and critique tokens, for a build with several of either.
        self.pairs: dict[tuple[str, str], Counter] = {} if ctx.recipe.fan_out else None

    def process(self, rows: list[Row]) -> StageOutput:
        out, rejects = [], []
        drop_unknown = self.ctx.recipe.verdict.drop_unknown
        for row in rows:
            v = self.rule(row.get("critique"))
            self.counts[v] += 1
            if self.pairs is not None:
                pair = self.pairs.setdefault((row.get("response_source") or "?", row.get("teacher") or "?"), Counter())
                pair[v] += 1
                pair["critique_input_tokens"] += row.get("critique_input_tokens") or 0
                pair["critique_output_tokens"] += row.get("critique_output_tokens") or 0
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
        out = {"rule": self.ctx.recipe.verdict.rule, "verdicts": dict(self.counts),
               "right_ratio": round(self.counts["right"] / total, 4) if total else None,
               "parseable": parseable, "parseable_ratio": round(parseable / total, 4) if total else None}
        if self.pairs is not None:
            out["by_pair"] = self._pair_table()
        return out

    def _pair_table(self) -> list[dict]:
        """Rows, verdicts, critique tokens and critique cost per generator x teacher (the critiques that reached
        this stage: rows rejected before it are in the rejects, by reason)."""
        from cftdata.backends.pricing import cost_usd
        from cftdata.recipe import model_label

        specs = {model_label(t): t for t in self.ctx.recipe.teachers}
        table = []
        for (gen, teacher), c in sorted(self.pairs.items()):
            rows = c["right"] + c["wrong"] + c["unknown"]
            spec = specs.get(teacher)
            cost = cost_usd(spec, c["critique_input_tokens"], c["critique_output_tokens"]) if spec else None
            table.append({"generator": gen, "teacher": teacher, "rows": rows, "right": c["right"],
                          "wrong": c["wrong"], "unknown": c["unknown"],
                          "right_ratio": round(c["right"] / rows, 4) if rows else None,
                          "critique_input_tokens": c["critique_input_tokens"],
                          "critique_output_tokens": c["critique_output_tokens"],
                          "critique_usd": round(cost, 6) if cost is not None else None})
        return table
