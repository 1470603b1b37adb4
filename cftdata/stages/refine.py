"""refine: after the critique, the teacher (``refine``: any model spec) writes a refined response to each question,
guided by the response and its critique (critique-guided distillation, arXiv 2505.11628).

Runs after the verdict, agreement and panel stages, so only the critiques kept are refined. Adds ``refined``
(and its finish reason and token usage); errors, truncated and empty outputs are rejects, like the other model
stages, and every answer is cached (a rerun or a resumed build makes no call twice). The ``critique-refine``
output format writes (question, response, critique) -> refined rows for a trainer.
"""

from __future__ import annotations

import pyarrow as pa

from cftdata.backends.base import Request
from cftdata.prompts import resolve_prompt
from cftdata.prompts.refine import REFINE_PROMPTS
from cftdata.rows import Reject, Row, StageOutput
from cftdata.stages.base import STAGES, BuildContext, Stage
from cftdata.stages.model_calls import caller_summary, open_caller, result_problem


@STAGES.register("refine")
class RefineStage(Stage):
    name = "refine"
    columns = {
        "refined": pa.string(),
        "refiner": pa.string(),
        "refine_finish_reason": pa.string(),
        "refine_input_tokens": pa.int64(),
        "refine_output_tokens": pa.int64(),
    }

    calls_models = True

    @classmethod
    def enabled(cls, recipe) -> bool:
        return recipe.refine is not None

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx)
        self.spec = ctx.recipe.refine
        self.template = resolve_prompt(self.spec.prompt, REFINE_PROMPTS, ctx.recipe.resolve_path)
        self.caller = open_caller(self.spec, ctx, self.name, "refine")

    @property
    def min_shard_rows(self) -> int | None:
        return self.caller.backend.min_shard_rows

    @property
    def submits_ahead(self) -> bool:
        return self.caller.backend.submits_ahead

    def requests(self, rows: list[Row]) -> list[Request]:
        params = self.spec.params.as_request_params()
        return [Request.make(self.spec.model, self.template.render(
            question=row["question"], response=row["response"], critique=row.get("critique") or "",
            verdict=row.get("verdict") or "", reference_answer=row.get("reference_answer") or "",
            reference_solution=row.get("reference_solution") or ""), params) for row in rows]

    def submit(self, rows: list[Row]) -> None:
        self.caller.submit(self.requests(rows))

    def process(self, rows: list[Row]) -> StageOutput:
        results = self.caller.call(self.requests(rows))
        out, rejects = [], []
        refiner = f"{self.spec.backend}:{self.spec.model}"
        for row, res in zip(rows, results, strict=True):
            new = {**row, "refined": res.text, "refiner": refiner, "refine_finish_reason": res.finish_reason,
                   "refine_input_tokens": res.input_tokens, "refine_output_tokens": res.output_tokens}
            problem = result_problem(res)
            if problem:
                rejects.append(Reject(row["id"], self.name, problem[0], problem[1], new))
            else:
                out.append(new)
        return StageOutput(out, rejects)

    def summary(self) -> dict:
        return {"prompt": self.spec.prompt, **caller_summary(self.caller, self.spec)}

    def close(self) -> None:
        self.caller.close()
