"""critique: the teacher's critique of each (question, response), with the paper's prompt by default.

Keeps the raw text, the finish reason and token usage. Errors, truncated (finish_reason length)
and empty critiques are rejects. Rows that already carry a critique (a published CFT dataset read
back) are passed through without a call when ``teacher.backend`` is ``existing``.
"""

from __future__ import annotations

import pyarrow as pa

from cftdata.backends.base import Request
from cftdata.prompts import CRITIQUE_PROMPTS, resolve_prompt
from cftdata.rows import Reject, Row, StageOutput
from cftdata.stages.base import STAGES, BuildContext, Stage
from cftdata.stages.model_calls import caller_summary, open_caller, result_problem


@STAGES.register("critique")
class CritiqueStage(Stage):
    name = "critique"
    calls_models = True
    columns = {
        "critique": pa.string(),
        "teacher": pa.string(),
        "critique_finish_reason": pa.string(),
        "critique_input_tokens": pa.int64(),
        "critique_output_tokens": pa.int64(),
    }

    @classmethod
    def enabled(cls, recipe) -> bool:
        return recipe.teacher.backend != "none"

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx)
        self.spec = ctx.recipe.teacher
        self.reuse = self.spec.backend == "existing"
        self.template = resolve_prompt(self.spec.prompt, CRITIQUE_PROMPTS, ctx.recipe.resolve_path)
        self.caller = None if self.reuse else open_caller(self.spec, ctx, self.name, "teacher")

    def render(self, row: Row) -> list[dict[str, str]]:
        return self.template.render(question=row["question"], response=row["response"])

    @property
    def min_shard_rows(self) -> int | None:
        return self.caller.backend.min_shard_rows if self.caller else None

    @property
    def submits_ahead(self) -> bool:
        return self.caller is not None and self.caller.backend.submits_ahead

    def requests(self, rows: list[Row]) -> list[Request]:
        params = self.spec.params.as_request_params()
        return [Request.make(self.spec.model, self.render(row), params) for row in rows]

    def submit(self, rows: list[Row]) -> None:
        if self.caller is not None:
            self.caller.submit(self.requests(rows))

    def process(self, rows: list[Row]) -> StageOutput:
        if self.reuse:
            return self._reuse(rows)
        results = self.caller.call(self.requests(rows))
        out, rejects = [], []
        teacher = f"{self.spec.backend}:{self.spec.model}"
        for row, res in zip(rows, results, strict=True):
            new = {**row, "critique": res.text, "teacher": teacher, "critique_finish_reason": res.finish_reason,
                   "critique_input_tokens": res.input_tokens, "critique_output_tokens": res.output_tokens}
            problem = result_problem(res)
            if problem:
                rejects.append(Reject(row["id"], self.name, problem[0], problem[1], new))
            else:
                out.append(new)
        return StageOutput(out, rejects)

    def _reuse(self, rows: list[Row]) -> StageOutput:
        out, rejects = [], []
        for row in rows:
            if (row.get("critique") or "").strip():
                out.append({**row, "teacher": f"existing:{self.spec.model}"})
            else:
                rejects.append(Reject(row["id"], self.name, "no_critique",
                                      "teacher.backend is 'existing' but the row carries no critique", row))
        self.ctx.reporter.advance(self.name, len(rows))
        return StageOutput(out, rejects)

    def summary(self) -> dict:
        if self.caller is None:
            return {"backend": "existing", "model": self.spec.model}
        return {"prompt": self.spec.prompt, **caller_summary(self.caller, self.spec)}

    def close(self) -> None:
        if self.caller:
            self.caller.close()
