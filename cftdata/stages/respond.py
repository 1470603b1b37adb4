"""respond: the noisy response each critique is about.

``existing`` takes the corpus's own answer (rows without one are rejected); ``generate`` samples
``n`` responses per question from a model with a solve prompt. Generated rows get the id
``<question id>.<sample>`` and keep ``question_id``.
"""

from __future__ import annotations

import pyarrow as pa

from cftdata.backends.base import Request
from cftdata.errors import RecipeError
from cftdata.prompts import SOLVE_PROMPTS, resolve_prompt
from cftdata.rows import Reject, Row, StageOutput
from cftdata.sources import SourceMapper
from cftdata.stages.base import STAGES, BuildContext, Stage
from cftdata.stages.model_calls import caller_summary, open_caller, result_problem


@STAGES.register("respond")
class RespondStage(Stage):
    name = "respond"
    columns = {
        "question_id": pa.string(),
        "response_source": pa.string(),
        "response_finish_reason": pa.string(),
        "response_input_tokens": pa.int64(),
        "response_output_tokens": pa.int64(),
    }

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx)
        self.spec = ctx.recipe.respond
        self.caller = None
        if self.spec.mode == "existing":
            self.response_field = SourceMapper(ctx.recipe).f_response
            if self.response_field is None:
                raise RecipeError(
                    f"Recipe {ctx.recipe.name!r}: respond.mode is 'existing' (critique the source's own responses), "
                    f"but no source field holds responses: corpus {ctx.recipe.source.corpus!r} maps none and "
                    "source.response is not set. Set source.response to the field with the responses, or set "
                    "respond.mode: generate to sample them from a model.")
        if self.spec.mode == "generate":
            self.template = resolve_prompt(self.spec.prompt, SOLVE_PROMPTS, ctx.recipe.resolve_path)
            self.caller = open_caller(self.spec, ctx, self.name)

    @property
    def min_shard_rows(self) -> int | None:
        return self.caller.backend.min_shard_rows if self.caller else None

    @property
    def fanout(self) -> int:
        return self.spec.n if self.caller else 1

    def process(self, rows: list[Row]) -> StageOutput:
        if self.caller is None:
            return self._existing(rows)
        return self._generate(rows)

    def _existing(self, rows: list[Row]) -> StageOutput:
        out, rejects = [], []
        for row in rows:
            if not (row.get("response") or "").strip():
                rejects.append(Reject(row["id"], self.name, "no_response",
                                      "respond.mode is 'existing' but the row has no response", row))
                continue
            out.append({**row, "question_id": row["id"], "response_source": "corpus"})
        self.ctx.reporter.advance(self.name, len(rows))
        return StageOutput(out, rejects)

    def config_hint(self, reason: str) -> str | None:
        if reason == "no_response":
            return (f"respond.mode is 'existing' and the source field {self.response_field!r} (source.response) is "
                    "empty or absent in these rows: set source.response to the field that holds the responses, "
                    "or set respond.mode: generate.")
        return None

    @property
    def submits_ahead(self) -> bool:
        return self.caller is not None and self.caller.backend.submits_ahead

    def requests(self, rows: list[Row]) -> tuple[list[Request], list[tuple[Row, int]]]:
        """The ``n`` sampling requests of each row, and (row, sample) for each request."""
        params = self.spec.params.as_request_params()
        base_seed = params.pop("seed", None)
        requests, owners = [], []
        for row in rows:
            messages = self.template.render(question=row["question"])
            for k in range(self.spec.n):
                p = dict(params) if base_seed is None else {**params, "seed": base_seed + k}
                requests.append(Request.make(self.spec.model, messages, p, sample=k))
                owners.append((row, k))
        return requests, owners

    def submit(self, rows: list[Row]) -> None:
        if self.caller is not None:
            self.caller.submit(self.requests(rows)[0])

    def _generate(self, rows: list[Row]) -> StageOutput:
        requests, owners = self.requests(rows)
        results = self.caller.call(requests)
        out, rejects = [], []
        for (row, k), res in zip(owners, results, strict=True):
            new = {**row, "id": f"{row['id']}.{k}", "question_id": row["id"], "response": res.text,
                   "response_source": f"{self.spec.backend}:{self.spec.model}",
                   "response_finish_reason": res.finish_reason, "response_input_tokens": res.input_tokens,
                   "response_output_tokens": res.output_tokens}
            problem = result_problem(res)
            if problem:
                rejects.append(Reject(new["id"], self.name, problem[0], problem[1], new))
            else:
                out.append(new)
        return StageOutput(out, rejects)

    def summary(self) -> dict:
        if self.caller is None:
            return {"mode": "existing"}
        return {"mode": "generate", "n": self.spec.n, "prompt": self.spec.prompt,
                **caller_summary(self.caller, self.spec)}

    def close(self) -> None:
        if self.caller:
            self.caller.close()
