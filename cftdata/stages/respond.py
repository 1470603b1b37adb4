"""respond: the noisy responses each critique is about, from one generator or several.

``existing`` takes the corpus's own answer (rows without one are rejected); ``generate`` samples
``n`` responses per question from a model with a solve prompt. ``respond`` may be a list of generators
(fan-out in one build), each with its own backend, model, params, ``n`` and prompt, each through its own
cached caller (so limits, batch APIs and cost are per model). Every row keeps ``question_id`` and names its
generator in ``response_source``. Ids: ``<question id>.<sample>`` for one generator, and
``<question id>.<generator label>.<sample>`` (``<question id>.<generator label>`` for an existing one) for a
list, so they are stable and distinct per (question, generator, sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from cftdata.backends.base import Request
from cftdata.backends.caller import ModelCaller
from cftdata.errors import RecipeError
from cftdata.prompts import SOLVE_PROMPTS, PromptTemplate, resolve_prompt
from cftdata.recipe import RespondSpec, model_label
from cftdata.rows import Reject, Row, StageOutput, id_part
from cftdata.sources import SourceMapper
from cftdata.stages.base import STAGES, BuildContext, Stage
from cftdata.stages.model_calls import caller_summary, open_caller, result_problem


@dataclass
class Generator:
    """One generator of a respond stage: its spec, its name, and (generate mode) its prompt and caller."""

    spec: RespondSpec
    label: str
    id_suffix: str
    template: PromptTemplate | None = None
    caller: ModelCaller | None = None

    @property
    def fanout(self) -> int:
        return self.spec.n if self.caller else 1


@STAGES.register("respond")
class RespondStage(Stage):
    name = "respond"
    calls_models = True
    columns = {
        "question_id": pa.string(),
        "response_source": pa.string(),
        "response_finish_reason": pa.string(),
        "response_input_tokens": pa.int64(),
        "response_output_tokens": pa.int64(),
    }

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx)
        self.many = isinstance(ctx.recipe.respond, list)
        self.generators: list[Generator] = []
        #: The source field that holds the responses an ``existing``-mode generator critiques.
        self.response_field = SourceMapper(ctx.recipe).f_response
        for i, spec in enumerate(ctx.recipe.generators):
            label = model_label(spec)
            key = f"respond.{i}" if self.many else "respond"
            gen = Generator(spec, label, f".{id_part(label)}" if self.many else "")
            if spec.mode == "existing" and self.response_field is None:
                raise RecipeError(
                    f"Recipe {ctx.recipe.name!r}: {key}.mode is 'existing' (critique the source's own responses), "
                    f"but no source field holds responses: corpus {ctx.recipe.source.corpus!r} maps none and "
                    f"source.response is not set. Set source.response to the field with the responses, or set "
                    f"{key}.mode: generate to sample them from a model.")
            if spec.mode == "generate":
                gen.template = resolve_prompt(spec.prompt, SOLVE_PROMPTS, ctx.recipe.resolve_path)
                gen.caller = open_caller(spec, ctx, f"{self.name}:{label}" if self.many else self.name, key)
            self.generators.append(gen)

    @property
    def callers(self) -> list[ModelCaller]:
        return [g.caller for g in self.generators if g.caller is not None]

    @property
    def min_shard_rows(self) -> int | None:
        return max((c.backend.min_shard_rows or 0 for c in self.callers), default=0) or None

    @property
    def fanout(self) -> int:
        return sum(g.fanout for g in self.generators)

    def config_hint(self, reason: str) -> str | None:
        if reason == "no_response":
            return (f"respond.mode is 'existing' and the source field {self.response_field!r} (source.response) is "
                    "empty or absent in these rows: set source.response to the field that holds the responses, "
                    "or set respond.mode: generate.")
        return None

    @property
    def submits_ahead(self) -> bool:
        return any(c.backend.submits_ahead for c in self.callers)

    def process(self, rows: list[Row]) -> StageOutput:
        return StageOutput.concat(self._generate(g, rows) if g.caller else self._existing(g, rows)
                                  for g in self.generators)

    def _existing(self, gen: Generator, rows: list[Row]) -> StageOutput:
        out, rejects = [], []
        for row in rows:
            new = {**row, "id": row["id"] + gen.id_suffix, "question_id": row["id"], "response_source": "corpus"}
            if not (row.get("response") or "").strip():
                rejects.append(Reject(new["id"], self.name, "no_response",
                                      "respond.mode is 'existing' but the row has no response", new))
                continue
            out.append(new)
        self.ctx.reporter.advance(self.name, len(rows))
        return StageOutput(out, rejects)

    def requests(self, gen: Generator, rows: list[Row]) -> tuple[list[Request], list[tuple[Row, int]]]:
        """The ``n`` sampling requests of each row for one generator, and (row, sample) for each request."""
        params = gen.spec.params.as_request_params()
        base_seed = params.pop("seed", None)
        requests, owners = [], []
        for row in rows:
            messages = gen.template.render(question=row["question"])
            for k in range(gen.spec.n):
                p = dict(params) if base_seed is None else {**params, "seed": base_seed + k}
                requests.append(Request.make(gen.spec.model, messages, p, sample=k))
                owners.append((row, k))
        return requests, owners

    def submit(self, rows: list[Row]) -> None:
        for gen in self.generators:
            if gen.caller is not None:
                gen.caller.submit(self.requests(gen, rows)[0])

    def _generate(self, gen: Generator, rows: list[Row]) -> StageOutput:
        requests, owners = self.requests(gen, rows)
        results = gen.caller.call(requests)
        out, rejects = [], []
        for (row, k), res in zip(owners, results, strict=True):
            new = {**row, "id": f"{row['id']}{gen.id_suffix}.{k}", "question_id": row["id"], "response": res.text,
                   "response_source": gen.label,
                   "response_finish_reason": res.finish_reason, "response_input_tokens": res.input_tokens,
                   "response_output_tokens": res.output_tokens}
            problem = result_problem(res)
            if problem:
                rejects.append(Reject(new["id"], self.name, problem[0], problem[1], new))
            else:
                out.append(new)
        return StageOutput(out, rejects)

    def _one_summary(self, gen: Generator) -> dict[str, Any]:
        if gen.caller is None:
            return {"mode": "existing"}
        return {"mode": "generate", "n": gen.spec.n, "prompt": gen.spec.prompt, **caller_summary(gen.caller, gen.spec)}

    def summary(self) -> dict:
        if not self.many:
            return self._one_summary(self.generators[0])
        return {"generators": {g.label: self._one_summary(g) for g in self.generators}}

    def close(self) -> None:
        for c in self.callers:
            c.close()
