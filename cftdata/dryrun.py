"""``cftdata build --dry-run``: render every prompt, count calls and tokens, estimate the cost. No calls.

Input tokens are counted with tiktoken for OpenAI models when its encoding files are available (they
are downloaded once; offline without them), else approximated as characters / 4 (English prose and
LaTeX average 3.5-4.5 characters per token, so expect +-20%). Output tokens are estimated from
``params.max_tokens`` (an upper bound) or ``options.expected_output_tokens`` when the recipe gives it.
When responses are to be generated, the teacher's input is estimated with responses of the
generator's expected output length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cftdata.prompts import CRITIQUE_PROMPTS, SOLVE_PROMPTS, resolve_prompt
from cftdata.recipe import ModelSpec, Recipe
from cftdata.sources import read_source


@lru_cache(maxsize=8)
def _tiktoken_encoder(model: str) -> Callable[[str], int] | None:
    try:
        import tiktoken

        enc = tiktoken.encoding_for_model(model)
        enc.encode("probe")
    except Exception:  # not installed, unknown model, or the encoding file cannot be fetched offline
        return None
    return lambda text: len(enc.encode(text, disallowed_special=()))


def token_counter(spec: ModelSpec) -> tuple[Callable[[str], int], str]:
    enc = _tiktoken_encoder(spec.model) if spec.backend.startswith("openai") else None
    if enc is not None:
        return enc, "tiktoken"
    return (lambda text: (len(text) + 3) // 4), "approx(chars/4)"


@dataclass
class RoleEstimate:
    backend: str
    model: str
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    counting: str = ""
    cost_usd: float | None = None
    example: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "example"}


def expected_output(spec: ModelSpec) -> int:
    return int(spec.options.get("expected_output_tokens") or spec.params.max_tokens or 512)


def dry_run(recipe: Recipe, limit: int | None = None, sample: int | None = None) -> dict[str, Any]:
    """Estimate calls, tokens and dollars for a recipe without calling any model."""
    from cftdata.pricing import cost_usd

    rows = rejected = 0
    teacher = RoleEstimate(recipe.teacher.backend, recipe.teacher.model)
    t_count, teacher.counting = token_counter(recipe.teacher)
    t_tpl = resolve_prompt(recipe.teacher.prompt, CRITIQUE_PROMPTS, recipe.resolve_path)
    gen = None
    if recipe.respond.mode == "generate":
        gen = RoleEstimate(recipe.respond.backend, recipe.respond.model)
        g_count, gen.counting = token_counter(recipe.respond)
        g_tpl = resolve_prompt(recipe.respond.prompt, SOLVE_PROMPTS, recipe.resolve_path)
        g_out = expected_output(recipe.respond)
    t_out = expected_output(recipe.teacher)
    placeholder = (f"<response from {recipe.respond.backend}:{recipe.respond.model}, ~{g_out} tokens>"
                   if gen else "")
    extra_in = g_out if gen else 0  # the generated response's expected length, counted as teacher input
    for shard in read_source(recipe, recipe.run.shard_size, limit, sample):
        rejected += len(shard.rejects)
        for row in shard.rows:
            if gen is not None:
                msgs = g_tpl.render(question=row["question"])
                n = recipe.respond.n
                gen.calls += n
                gen.input_tokens += n * sum(g_count(m["content"]) for m in msgs)
                gen.output_tokens += n * g_out
                gen.example = gen.example or msgs
                responses = [placeholder] * n
            elif (row.get("response") or "").strip():
                responses = [row["response"]]
            else:
                rejected += 1
                continue
            rows += 1
            if recipe.teacher.backend == "existing":
                continue
            for resp in responses:
                msgs = t_tpl.render(question=row["question"], response=resp)
                teacher.calls += 1
                teacher.input_tokens += sum(t_count(m["content"]) for m in msgs) + extra_in
                teacher.output_tokens += t_out
                if not teacher.example:
                    teacher.example = msgs
    roles = {"critique": teacher}
    if gen is not None:
        roles = {"respond": gen, **roles}
    specs = {"respond": recipe.respond, "critique": recipe.teacher}
    total = 0.0
    known = True
    for name, est in roles.items():
        est.cost_usd = cost_usd(specs[name], est.input_tokens, est.output_tokens)
        if est.cost_usd is None:
            known = known and est.calls == 0 or not _is_paid(specs[name])
        else:
            total += est.cost_usd
    return {"rows": rows, "rejected": rejected, "roles": {k: v.as_dict() for k, v in roles.items()},
            "examples": {k: v.example for k, v in roles.items()}, "total_cost_usd": round(total, 4),
            "cost_complete": known}


def _is_paid(spec: ModelSpec) -> bool:
    from cftdata.backends.base import BACKENDS

    return spec.backend in BACKENDS and BACKENDS.get(spec.backend).paid
