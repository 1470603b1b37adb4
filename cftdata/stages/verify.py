"""verify: check each response's final answer against the reference answer with math-verify.

The response's answer is extracted with ``verify.answer_rule``; the reference answer comes from the
source (an answer column, or extracted from the reference solution by the corpus's rule). Results per
row: ``correct`` / ``incorrect`` / ``unverifiable`` (no reference or no extractable answer) / ``timeout``
/ ``error``, with the parsed forms kept. Checks run in worker processes with a hard per-item time limit,
so a pathological expression becomes ``timeout`` and the build goes on. Runs before the teacher, so
rows dropped here (``verify.drop``) cost no critique.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from cftdata.rows import Reject, Row, StageOutput
from cftdata.stages.base import STAGES, BuildContext, Stage
from cftdata.verify import Verifier, extract_answer


@STAGES.register("verify")
class VerifyStage(Stage):
    name = "verify"
    columns = {"verify_status": pa.string(), "verify_pred": pa.string(), "verify_gold": pa.string(),
               "verify_detail": pa.string()}

    @classmethod
    def enabled(cls, recipe) -> bool:
        return recipe.verify is not None

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx)
        self.spec = ctx.recipe.verify
        extract_answer("", self.spec.answer_rule)  # an unknown rule fails before any work
        self.drop = set(self.spec.drop)
        self.counts: Counter = Counter()
        self._verifier: Verifier | None = None
        self._ray = None  # a RaySession with run.executor: ray

    def _get(self) -> Verifier:
        if self._verifier is None:
            self._verifier = Verifier(workers=self.spec.workers, timeout_s=self.spec.timeout_s,
                                      max_chars=self.spec.max_chars).__enter__()
        return self._verifier

    def _check(self, pairs: list[tuple[str, str]]) -> list:
        """The local process pool, or a Ray Data job with ``run.executor: ray``."""
        run = self.ctx.recipe.run
        if run.executor != "ray":
            return self._get().verify_many(pairs)
        from cftdata.executors.ray_data import RaySession, verify_pairs

        if self._ray is None:
            self._ray = RaySession(run)
        return verify_pairs(pairs, self.spec, run)

    def process(self, rows: list[Row]) -> StageOutput:
        preds = [extract_answer(r.get("response"), self.spec.answer_rule) for r in rows]
        pairs = [(r.get("reference_answer"), p) for r, p in zip(rows, preds, strict=True)]
        todo = [i for i, (g, p) in enumerate(pairs) if g and p]
        results = dict(zip(todo, self._check([pairs[i] for i in todo]), strict=True)) if todo else {}
        out, rejects = [], []
        for i, row in enumerate(rows):
            res = results.get(i)
            if res is None:
                why = "no reference answer" if not pairs[i][0] else "no final answer in the response"
                new = {**row, "verify_status": "unverifiable", "verify_pred": preds[i],
                       "verify_gold": pairs[i][0], "verify_detail": why}
            else:
                new = {**row, "verify_status": res.status, "verify_pred": res.pred_parsed or preds[i],
                       "verify_gold": res.gold_parsed or pairs[i][0], "verify_detail": res.detail}
            self.counts[new["verify_status"]] += 1
            if new["verify_status"] in self.drop:
                rejects.append(Reject(row["id"], self.name, f"verify_{new['verify_status']}",
                                      new["verify_detail"] or "", new))
            else:
                out.append(new)
        self.ctx.reporter.advance(self.name, len(rows))
        return StageOutput(out, rejects)

    def summary(self) -> dict:
        return {"answer_rule": self.spec.answer_rule, "statuses": dict(self.counts)}

    def close(self) -> None:
        if self._verifier is not None:
            self._verifier.__exit__(None, None, None)
            self._verifier = None
        if self._ray is not None:
            self._ray.close()
            self._ray = None
