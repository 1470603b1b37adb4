"""``cftdata build --dry-run``: the real build with estimates instead of model calls.

:meth:`cftdata.pipeline.Build.estimate` runs every enabled stage over the real source rows (dedup,
decontamination, verification of existing answers, ``n`` samples, ``teacher.backend: none``/``existing``...),
with the model layer's estimating callers (:mod:`cftdata.backends.estimate`: token counts, expected output
lengths, answers already cached used as they are). So the calls it counts are the calls the build would make,
by construction. This module turns that into the estimate a user reads: calls, tokens and dollars per model
stage, and counts per stage. Nothing is written and no API key is needed.
"""

from __future__ import annotations

from typing import Any

from cftdata.backends.caller import EstimatingCaller
from cftdata.backends.pricing import cost_usd, is_paid
from cftdata.recipe import Recipe


def dry_run(recipe: Recipe, limit: int | None = None, sample: int | None = None,
            preflight: bool = False) -> dict[str, Any]:
    """Estimate calls, tokens and dollars for a recipe without calling any model.

    Returns ``counts`` (per stage: in / out / rejected), ``roles`` (per model stage: backend, model, calls,
    cache hits, input and output tokens, how tokens were counted, dollars), ``examples`` (the first prompt
    each model stage would send), ``total_cost_usd``, ``cost_complete`` (False when a paid model has no
    price), ``missing_keys`` (API-key variables the build would need and that are not set) and, with
    ``preflight``, ``preflight``: whether each model endpoint would pass the build's preflight, checked without
    spending (a models list, a batch list, the GGUF file; :mod:`cftdata.endpoints`).
    """
    from cftdata.pipeline import Build

    est = Build(recipe, limit=limit, sample=sample).estimate()
    roles: dict[str, dict[str, Any]] = {}
    examples: dict[str, list[dict[str, str]]] = {}
    total, complete = 0.0, True
    for label, (spec, caller) in est["models"].items():
        st = caller.stats
        cost = cost_usd(spec, st.input_tokens, st.output_tokens)
        if cost is None:
            complete = complete and (st.calls == 0 or not is_paid(spec))
        else:
            total += cost
        roles[label] = {"backend": spec.backend, "model": spec.model, "calls": st.calls,
                        "cache_hits": st.cache_hits, "input_tokens": st.input_tokens,
                        "output_tokens": st.output_tokens,
                        "counting": caller.counting if isinstance(caller, EstimatingCaller) else "",
                        "cost_usd": cost}
        examples[label] = caller.example if isinstance(caller, EstimatingCaller) else []
    counts = est["counts"]
    checks = []
    if preflight:
        from cftdata.endpoints import dry_run_checks

        checks = dry_run_checks(est["layer"])
    return {"preflight": checks, "source_rows": counts.get("source", {}).get("in", 0), "counts": counts,
            "rejects_by_reason": est["rejects_by_reason"], "roles": roles, "examples": examples,
            "total_cost_usd": round(total, 4), "cost_complete": complete, "missing_keys": est["missing_keys"]}


def format_estimate(est: dict[str, Any]) -> list[str]:
    """The estimate as the lines ``cftdata build --dry-run`` prints."""
    lines = [f"dry run: {est['source_rows']} source rows; per stage (in -> out, rejected):"]
    for name, c in est["counts"].items():
        lines.append(f"  {name:<14} {c['in']:>8,} -> {c['out']:<8,} {c['rejected']:>8,} rejected")
    if not est["roles"]:
        lines.append("  no model calls")
    for role, r in est["roles"].items():
        cost = "n/a" if r["cost_usd"] is None else f"${r['cost_usd']:.2f}"
        cached = f" (+{r['cache_hits']:,} from the cache)" if r["cache_hits"] else ""
        model = f"{r['backend']}:{r['model']}"
        name = role if role.endswith(model) else f"{role:<9} {model}"  # respond:<label> names the model already
        lines.append(f"  {name}: {r['calls']:,} calls{cached}, "
                     f"{r['input_tokens']:,} input tokens [{r['counting']}], "
                     f"~{r['output_tokens']:,} output tokens (estimate), cost {cost}")
    note = "" if est["cost_complete"] else " (some models have no price: add options.price)"
    lines.append(f"  expected cost: ${est['total_cost_usd']:.2f}{note}")
    if est["missing_keys"]:
        lines.append(f"  note: the build needs {', '.join(est['missing_keys'])} in the environment (not set now)")
    for check in est.get("preflight", []):
        lines.append(f"  preflight {check.line()}")
    for role, msgs in est["examples"].items():
        if msgs:
            lines.append(f"--- first {role} prompt ---")
            lines += [f"[{m['role']}] {m['content'][:1500]}" for m in msgs]
    return lines
