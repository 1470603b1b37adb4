"""critique: the teacher's critique of each (question, response), with the paper's prompt by default.

Keeps the raw text, the finish reason and token usage. Errors, truncated (finish_reason length)
and empty critiques are rejects. Rows that already carry a critique (a published CFT dataset read
back) are passed through without a call when ``teacher.backend`` is ``existing``.

``teacher`` may be a list (several teachers): each critiques every response, with its own backend, model,
params and prompt, through its own cached caller. Each row then names its teacher in ``teacher`` and the
response it is about in ``response_id``; its id is ``<response id>.<teacher label>`` (one teacher: the response
id itself), so ids are stable and distinct per (question, generator, sample, teacher).

Prompts see ``question``, ``response``, ``reference_answer`` and ``reference_solution`` (empty when the source
has none), so a reference-guided critique prompt is a template like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from cftdata.backends.base import Request
from cftdata.backends.caller import ModelCaller
from cftdata.prompts import CRITIQUE_PROMPTS, PromptTemplate, resolve_prompt
from cftdata.recipe import TeacherSpec, model_label
from cftdata.rows import Reject, Row, StageOutput, id_part
from cftdata.stages.base import STAGES, BuildContext, Stage
from cftdata.stages.model_calls import caller_summary, open_caller, result_problem


@dataclass
class Teacher:
    """One teacher of a critique stage: its spec, its name, its prompt and (unless ``existing``) its caller."""

    spec: TeacherSpec
    label: str
    id_suffix: str
    template: PromptTemplate
    caller: ModelCaller | None = None


@STAGES.register("critique")
class CritiqueStage(Stage):
    name = "critique"
    calls_models = True
    columns = {
        "critique": pa.string(),
        "teacher": pa.string(),
        "response_id": pa.string(),
        "critique_finish_reason": pa.string(),
        "critique_input_tokens": pa.int64(),
        "critique_output_tokens": pa.int64(),
    }

    @classmethod
    def enabled(cls, recipe) -> bool:
        return recipe.critiques

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx)
        self.many = isinstance(ctx.recipe.teacher, list)
        self.teachers: list[Teacher] = []
        for i, spec in enumerate(ctx.recipe.teachers):
            label = model_label(spec)
            t = Teacher(spec, label, f".{id_part(label)}" if self.many else "",
                        resolve_prompt(spec.prompt, CRITIQUE_PROMPTS, ctx.recipe.resolve_path))
            if spec.backend != "existing":
                t.caller = open_caller(spec, ctx, f"{self.name}:{label}" if self.many else self.name,
                                       f"teacher.{i}" if self.many else "teacher")
            self.teachers.append(t)

    @staticmethod
    def render(teacher: Teacher, row: Row) -> list[dict[str, str]]:
        return teacher.template.render(question=row["question"], response=row["response"],
                                       reference_answer=row.get("reference_answer") or "",
                                       reference_solution=row.get("reference_solution") or "")

    @property
    def callers(self) -> list[ModelCaller]:
        return [t.caller for t in self.teachers if t.caller is not None]

    @property
    def fanout(self) -> int:
        return len(self.teachers)

    @property
    def min_shard_rows(self) -> int | None:
        return max((c.backend.min_shard_rows or 0 for c in self.callers), default=0) or None

    @property
    def submits_ahead(self) -> bool:
        return any(c.backend.submits_ahead for c in self.callers)

    def requests(self, teacher: Teacher, rows: list[Row]) -> list[Request]:
        params = teacher.spec.params.as_request_params()
        return [Request.make(teacher.spec.model, self.render(teacher, row), params) for row in rows]

    def submit(self, rows: list[Row]) -> None:
        for t in self.teachers:
            if t.caller is not None:
                t.caller.submit(self.requests(t, rows))

    def process(self, rows: list[Row]) -> StageOutput:
        return StageOutput.concat(self._critique(t, rows) if t.caller else self._reuse(t, rows) for t in self.teachers)

    def _critique(self, t: Teacher, rows: list[Row]) -> StageOutput:
        results = t.caller.call(self.requests(t, rows))
        out, rejects = [], []
        for row, res in zip(rows, results, strict=True):
            new = {**row, "id": row["id"] + t.id_suffix, "response_id": row["id"], "critique": res.text,
                   "teacher": t.label, "critique_finish_reason": res.finish_reason,
                   "critique_input_tokens": res.input_tokens, "critique_output_tokens": res.output_tokens}
            problem = result_problem(res)
            if problem:
                rejects.append(Reject(new["id"], self.name, problem[0], problem[1], new))
            else:
                out.append(new)
        return StageOutput(out, rejects)

    def _reuse(self, t: Teacher, rows: list[Row]) -> StageOutput:
        out, rejects = [], []
        for row in rows:
            new = {**row, "id": row["id"] + t.id_suffix, "response_id": row["id"],
                   "teacher": t.spec.label or f"existing:{t.spec.model}"}
            if (row.get("critique") or "").strip():
                out.append(new)
            else:
                rejects.append(Reject(new["id"], self.name, "no_critique",
                                      "teacher.backend is 'existing' but the row carries no critique", new))
        self.ctx.reporter.advance(self.name, len(rows))
        return StageOutput(out, rejects)

    def _one_summary(self, t: Teacher) -> dict[str, Any]:
        if t.caller is None:
            return {"backend": "existing", "model": t.spec.model}
        return {"prompt": t.spec.prompt, **caller_summary(t.caller, t.spec)}

    def summary(self) -> dict:
        if not self.many:
            return self._one_summary(self.teachers[0])
        return {"teachers": {t.label: self._one_summary(t) for t in self.teachers}}

    def close(self) -> None:
        for c in self.callers:
            c.close()
