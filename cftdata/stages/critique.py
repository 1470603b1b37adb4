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

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from cftdata.backends.base import Request
from cftdata.backends.caller import ModelCaller
from cftdata.errors import RecipeError
from cftdata.prompts import CRITIQUE_PROMPTS, PromptTemplate, resolve_prompt
from cftdata.recipe import TeacherSpec, model_label
from cftdata.rows import Reject, Row, StageOutput, id_part
from cftdata.sources import SourceMapper
from cftdata.stages.base import STAGES, BuildContext, Stage
from cftdata.stages.model_calls import caller_summary, open_caller, result_problem

#: Reference fields a critique prompt may show -> the recipe key that maps them.
REFERENCE_FIELDS = {"reference_answer": "source.answer", "reference_solution": "source.reference_solution"}


@dataclass
class Teacher:
    """One teacher of a critique stage: its spec, its name, its prompt and (unless ``existing``) its caller."""

    spec: TeacherSpec
    label: str
    id_suffix: str
    template: PromptTemplate
    caller: ModelCaller | None = None
    key: str = "teacher"  #: its recipe key (``teacher`` or ``teacher.<i>``), named in messages
    needs: list[str] = field(default_factory=list)  #: the reference fields its prompt shows
    params: dict[str, Any] = field(default_factory=dict)  #: request params, verdict constraint included


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
        mapper = SourceMapper(ctx.recipe)
        mapped = {"reference_answer": mapper.f_answer or (mapper.f_solution and mapper.corpus.answer_rule),
                  "reference_solution": mapper.f_solution}
        for i, spec in enumerate(ctx.recipe.teachers):
            label = model_label(spec)
            key = f"teacher.{i}" if self.many else "teacher"
            t = Teacher(spec, label, f".{id_part(label)}" if self.many else "",
                        resolve_prompt(spec.prompt, CRITIQUE_PROMPTS, ctx.recipe.resolve_path), key=key)
            if spec.backend != "existing":
                #: The reference fields the prompt shows (``reference_answer``, ``reference_solution``): rows need them.
                t.needs = sorted(t.template.variables & set(REFERENCE_FIELDS))
                unmapped = [REFERENCE_FIELDS[k] for k in t.needs if not mapped[k]]
                if unmapped:
                    raise RecipeError(
                        f"Recipe {ctx.recipe.name!r}: {key}.prompt {spec.prompt!r} shows the teacher the "
                        f"{' and '.join(t.needs)}, but no source field holds it: corpus {ctx.recipe.source.corpus!r} "
                        f"maps none and {' / '.join(unmapped)} is not set. Set it, or use a prompt without a reference "
                        "(cft-paper).")
                t.params = {**spec.params.as_request_params(), **spec.verdict_constraint_params()}
                t.caller = open_caller(spec, ctx, f"{self.name}:{label}" if self.many else self.name, key)
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

    def callable_rows(self, teacher: Teacher, rows: list[Row]) -> tuple[list[Row], list[Reject]]:
        """The rows ``teacher`` can be asked about, and rejects for the others (a reference its prompt shows is
        missing)."""
        if not teacher.needs:
            return rows, []
        ok, rejects = [], []
        for row in rows:
            missing = [k for k in teacher.needs if not (row.get(k) or "").strip()]
            if missing:
                new = {**row, "id": row["id"] + teacher.id_suffix, "response_id": row["id"], "teacher": teacher.label}
                rejects.append(Reject(new["id"], self.name, "no_reference",
                                      f"{teacher.key}.prompt {teacher.spec.prompt!r} shows the {missing[0]}; the row "
                                      "has none", new))
            else:
                ok.append(row)
        return ok, rejects

    def config_hint(self, reason: str) -> str | None:
        if reason == "no_reference":
            t = next((t for t in self.teachers if t.needs), self.teachers[0])
            return (f"{t.key}.prompt {t.spec.prompt!r} shows a reference answer and the source rows carry none: "
                    "set source.answer (or source.reference_solution) to the field that holds it, or use a prompt "
                    "without a reference (cft-paper).")
        if reason == "no_critique":
            return ("teacher.backend is 'existing' (reuse the source's critiques) and the source rows carry no "
                    "'critique' field: read a published CFT dataset (source.corpus: webinstruct-cft), or set "
                    "teacher.backend to a model backend.")
        return None

    def requests(self, teacher: Teacher, rows: list[Row]) -> list[Request]:
        """One request per row ``teacher`` can be asked about (the others are left to :meth:`callable_rows`)."""
        return [Request.make(teacher.spec.model, self.render(teacher, row), teacher.params)
                for row in self.callable_rows(teacher, rows)[0]]

    def submit(self, rows: list[Row]) -> None:
        for t in self.teachers:
            if t.caller is not None:
                t.caller.submit(self.requests(t, rows))

    def process(self, rows: list[Row]) -> StageOutput:
        return StageOutput.concat(self._critique(t, rows) if t.caller else self._reuse(t, rows) for t in self.teachers)

    def _critique(self, t: Teacher, rows: list[Row]) -> StageOutput:
        rows, rejects = self.callable_rows(t, rows)
        if rejects:
            self.ctx.reporter.advance(self.name, len(rejects))
        results = t.caller.call(self.requests(t, rows))
        out = []
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
        return {"prompt": t.spec.prompt, "verdict_constraint": t.spec.resolved_verdict_constraint(),
                **caller_summary(t.caller, t.spec)}

    def summary(self) -> dict:
        if not self.many:
            return self._one_summary(self.teachers[0])
        return {"teachers": {t.label: self._one_summary(t) for t in self.teachers}}

    def close(self) -> None:
        for c in self.callers:
            c.close()
