"""critique: the teacher's critique of each (question, response), with the paper's prompt by default.

Keeps the raw text, the finish reason and token usage. Errors, truncated (finish_reason length)
and empty critiques are rejects. Rows that already carry a critique (a published CFT dataset read
back) are passed through without a call when ``teacher.backend`` is ``existing``.
"""

from __future__ import annotations

import pyarrow as pa

from cftdata.backends.base import Request
from cftdata.errors import RecipeError
from cftdata.prompts import CRITIQUE_PROMPTS, resolve_prompt
from cftdata.rows import Reject, Row, StageOutput
from cftdata.sources import SourceMapper
from cftdata.stages.base import STAGES, BuildContext, Stage
from cftdata.stages.model_calls import caller_summary, open_caller, result_problem

#: Reference fields a critique prompt may show -> the recipe key that maps them.
REFERENCE_FIELDS = {"reference_answer": "source.answer", "reference_solution": "source.reference_solution"}


@STAGES.register("critique")
class CritiqueStage(Stage):
    name = "critique"
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
        #: The reference fields the prompt shows (``reference_answer``, ``reference_solution``): rows need them.
        self.needs = sorted(set() if self.reuse else self.template.variables & set(REFERENCE_FIELDS))
        mapper = SourceMapper(ctx.recipe)
        mapped = {"reference_answer": mapper.f_answer or (mapper.f_solution and mapper.corpus.answer_rule),
                  "reference_solution": mapper.f_solution}
        unmapped = [REFERENCE_FIELDS[k] for k in self.needs if not mapped[k]]
        if unmapped:
            raise RecipeError(
                f"Recipe {ctx.recipe.name!r}: teacher.prompt {self.spec.prompt!r} shows the teacher the "
                f"{' and '.join(self.needs)}, but no source field holds it: corpus {ctx.recipe.source.corpus!r} maps "
                f"none and {' / '.join(unmapped)} is not set. Set it, or use a prompt without a reference (cft-paper).")
        self.params = {**self.spec.params.as_request_params(), **self.spec.verdict_constraint_params()}
        self.caller = None if self.reuse else open_caller(self.spec, ctx, self.name)

    def render(self, row: Row) -> list[dict[str, str]]:
        return self.template.render(question=row["question"], response=row["response"],
                                    reference_answer=row.get("reference_answer") or "",
                                    reference_solution=row.get("reference_solution") or "")

    @property
    def min_shard_rows(self) -> int | None:
        return self.caller.backend.min_shard_rows if self.caller else None

    @property
    def submits_ahead(self) -> bool:
        return self.caller is not None and self.caller.backend.submits_ahead

    def callable_rows(self, rows: list[Row]) -> tuple[list[Row], list[Reject]]:
        """The rows the teacher can be asked about, and rejects for the others (a reference the prompt shows is
        missing)."""
        if not self.needs:
            return rows, []
        ok, rejects = [], []
        for row in rows:
            missing = [k for k in self.needs if not (row.get(k) or "").strip()]
            if missing:
                rejects.append(Reject(row["id"], self.name, "no_reference",
                                      f"teacher.prompt {self.spec.prompt!r} shows the {missing[0]}; the row has none",
                                      row))
            else:
                ok.append(row)
        return ok, rejects

    def config_hint(self, reason: str) -> str | None:
        if reason == "no_reference":
            return (f"teacher.prompt {self.spec.prompt!r} shows a reference answer and the source rows carry none: "
                    "set source.answer (or source.reference_solution) to the field that holds it, or use a prompt "
                    "without a reference (cft-paper).")
        if reason == "no_critique":
            return ("teacher.backend is 'existing' (reuse the source's critiques) and the source rows carry no "
                    "'critique' field: read a published CFT dataset (source.corpus: webinstruct-cft), or set "
                    "teacher.backend to a model backend.")
        return None

    def requests(self, rows: list[Row]) -> list[Request]:
        """One request per row (rows without a needed reference are left to :meth:`callable_rows`)."""
        return [Request.make(self.spec.model, self.render(row), self.params) for row in self.callable_rows(rows)[0]]

    def submit(self, rows: list[Row]) -> None:
        if self.caller is not None:
            self.caller.submit(self.requests(rows))

    def process(self, rows: list[Row]) -> StageOutput:
        if self.reuse:
            return self._reuse(rows)
        rows, rejects = self.callable_rows(rows)
        if rejects:
            self.ctx.reporter.advance(self.name, len(rejects))
        results = self.caller.call(self.requests(rows))
        out = []
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
        return {"prompt": self.spec.prompt, "verdict_constraint": self.spec.resolved_verdict_constraint(),
                **caller_summary(self.caller, self.spec)}

    def close(self) -> None:
        if self.caller:
            self.caller.close()
