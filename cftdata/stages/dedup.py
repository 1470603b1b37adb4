"""dedup: drop repeated questions, exact (normalized text) and near (MinHash LSH), before any model call.

Rule: the FIRST occurrence in source order is kept; each later copy is a reject whose detail names the
kept row's id. The index lives across shards (per kept row: an 8-byte digest, LSH band keys and the
question's 32-bit shingle hashes, not text); its size is reported in the manifest. docs/dedup.md.
"""

from __future__ import annotations

from cftdata.quality import Deduplicator
from cftdata.rows import Reject, Row, StageOutput
from cftdata.stages.base import STAGES, BuildContext, Stage


@STAGES.register("dedup")
class DedupStage(Stage):
    name = "dedup"

    @classmethod
    def enabled(cls, recipe) -> bool:
        return recipe.dedup is not None

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx)
        s = ctx.recipe.dedup
        try:
            self.dedup = Deduplicator(exact=s.exact, near=s.near, num_perm=s.num_perm, shingle=s.shingle,
                                      threshold=s.threshold, seed=ctx.recipe.run.seed + 1)
        except ValueError as e:
            from cftdata.errors import RecipeError

            raise RecipeError(f"dedup: {e}.") from None

    def process(self, rows: list[Row]) -> StageOutput:
        dup_of = self.dedup.check([r["id"] for r in rows], [r["question"] for r in rows])
        out, rejects = [], []
        for row, orig in zip(rows, dup_of, strict=True):
            if orig is None:
                out.append(row)
            else:
                rejects.append(Reject(row["id"], self.name, "duplicate", f"duplicate of {orig}", row))
        self.ctx.reporter.advance(self.name, len(rows))
        return StageOutput(out, rejects)

    def summary(self) -> dict:
        return self.dedup.stats()

    def close(self) -> None:
        self.dedup.close()
