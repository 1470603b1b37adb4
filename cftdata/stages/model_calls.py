"""What the respond and critique stages share: a cached caller from the model layer, and result checking."""

from __future__ import annotations

from cftdata.backends.base import Result
from cftdata.backends.caller import ModelCaller
from cftdata.backends.pricing import cost_usd
from cftdata.recipe import ModelSpec
from cftdata.stages.base import BuildContext


def open_caller(spec: ModelSpec, ctx: BuildContext, label: str, section: str | None = None) -> ModelCaller:
    """A cached caller whose progress (rows, calls, cache hits, in flight, 429s, tokens, dollars) is shown;
    ``section`` is the recipe key the spec comes from (``teacher``...), named in error messages."""
    caller: ModelCaller

    def progress(n: int) -> None:
        st = caller.stats
        b = caller.backend.stats()
        limiter = getattr(caller.backend, "limiter", None)
        cost = cost_usd(spec, st.input_tokens, st.output_tokens)
        ctx.reporter.advance(label, n, {
            "calls": st.calls, "cached": st.cache_hits,
            "in flight": limiter.in_flight if limiter is not None else None,
            "429s": b.get("rate_limited"), "retries": b.get("retries"),
            "tokens": st.input_tokens + st.output_tokens, "$": f"{cost:.4f}" if cost is not None else None,
        })

    caller = ctx.models.caller(spec, on_progress=progress, label=label, section=section or label)
    return caller


def result_problem(result: Result) -> tuple[str, str] | None:
    """(reason, detail) when a result is not usable as data: an error, a truncated or an empty output."""
    if not result.ok:
        return result.error or "error", result.error_detail
    if result.finish_reason == "length":
        return "truncated", f"output hit max_tokens ({result.output_tokens} tokens); raise params.max_tokens"
    if not (result.text or "").strip():
        return "empty_output", f"finish_reason={result.finish_reason}"
    return None


def caller_summary(caller: ModelCaller, spec: ModelSpec) -> dict:
    return {
        "backend": spec.backend,
        "model": spec.model,
        **caller.stats.as_dict(),
        "backend_stats": caller.backend.stats(),
    }
