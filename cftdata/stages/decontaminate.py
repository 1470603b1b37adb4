"""decontaminate: drop questions that share a word n-gram (default 8, as open-r1) with a benchmark problem.

Benchmarks load from the Hub ids of :data:`cftdata.quality.BENCHMARKS`, or from local
``<data_dir>/<benchmark>/test.jsonl`` files. Each reject names the benchmark and the matching n-gram.
"""

from __future__ import annotations

from collections import Counter

from cftdata.quality import Decontaminator
from cftdata.rows import Reject, Row, StageOutput
from cftdata.stages.base import STAGES, BuildContext, Stage


@STAGES.register("decontaminate")
class DecontaminateStage(Stage):
    name = "decontaminate"

    @classmethod
    def enabled(cls, recipe) -> bool:
        return recipe.decontaminate is not None

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx)
        s = ctx.recipe.decontaminate
        data_dir = ctx.recipe.resolve_path(s.data_dir) if s.data_dir else None
        self.decon = Decontaminator.from_benchmarks(names=s.benchmarks, data_dir=data_dir, ngram=s.ngram)
        self.by_benchmark: Counter = Counter()

    def process(self, rows: list[Row]) -> StageOutput:
        hits = self.decon.check([r["id"] for r in rows], [r["question"] for r in rows])
        out, rejects = [], []
        for row, hit in zip(rows, hits, strict=True):
            if hit is None:
                out.append(row)
            else:
                self.by_benchmark[hit[0]] += 1
                rejects.append(Reject(row["id"], self.name, "contaminated", f"{hit[0]}: '{hit[1]}'", row))
        self.ctx.reporter.advance(self.name, len(rows))
        return StageOutput(out, rejects)

    def summary(self) -> dict:
        return {**self.decon.stats(), "removed_by_benchmark": dict(self.by_benchmark)}
