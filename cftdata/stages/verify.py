"""verify: check each response's final answer against the reference answer with math-verify.

The response's answer is extracted with ``verify.answer_rule``; the reference answer comes from the
source (an answer column, or extracted from the reference solution by the corpus's rule). Results per
row: ``correct`` / ``incorrect`` / ``unverifiable`` (no reference or no extractable answer) / ``timeout``
/ ``error``, with the parsed forms kept. Checks run in worker processes with a hard per-item time limit,
so a pathological expression becomes ``timeout`` and the build goes on. Runs before the teacher, so
rows dropped here (``verify.drop``) cost no critique.

The checks are a task of the run's executor (:class:`VerifyWorker`: one math-verify pool per worker), so
they run in this process or as Ray Data jobs without this stage knowing which. In a dry run, a response that
was not generated (:func:`~cftdata.backends.estimate.is_estimate`) gets the status ``estimate`` and goes on:
whether it would be dropped is unknown until it exists.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from cftdata.backends.estimate import is_estimate
from cftdata.executors.base import Task
from cftdata.rows import Reject, Row, StageOutput
from cftdata.stages.base import STAGES, BuildContext, Stage
from cftdata.verify import Verifier, VerifyResult, extract_answer


class VerifyWorker:
    """An executor worker: one :class:`~cftdata.verify.pool.Verifier` (its own processes, hard per-item time
    limit) that checks lists of (gold, pred) pairs, so every executor gives the local verifier's statuses."""

    def __init__(self, workers: int, timeout_s: float, max_chars: int) -> None:
        self.verifier = Verifier(workers=workers, timeout_s=timeout_s, max_chars=max_chars).__enter__()

    def __call__(self, pairs: list[tuple[str, str]]) -> list[VerifyResult]:
        return self.verifier.verify_many(pairs)

    def close(self) -> None:
        self.verifier.close()


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
        self.task = Task(VerifyWorker, {"workers": self.spec.workers, "timeout_s": self.spec.timeout_s,
                                        "max_chars": self.spec.max_chars}, cpus=self.spec.workers)

    def process(self, rows: list[Row]) -> StageOutput:
        preds = [extract_answer(r.get("response"), self.spec.answer_rule) for r in rows]
        pairs = [(r.get("reference_answer"), p) for r, p in zip(rows, preds, strict=True)]
        todo = [i for i, (g, p) in enumerate(pairs) if g and p]
        checked = self.ctx.executor.map(self.task, [pairs[i] for i in todo])
        results = {todo[j]: res for j, res in checked}
        out, rejects = [], []
        for i, row in enumerate(rows):
            res = results.get(i)
            if is_estimate(row.get("response")):
                new = {**row, "verify_status": "estimate", "verify_pred": None, "verify_gold": pairs[i][0],
                       "verify_detail": "dry run: the response was not generated"}
            elif res is None:
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
