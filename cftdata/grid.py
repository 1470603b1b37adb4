"""``cftdata build RECIPE --grid KEY=V1,V2 ...``: one build per combination, sharing the request cache.

Each variant gets the name ``<name>-<value>[-<value>...]`` and its own output folder; calls that are the
same across variants (e.g. generated responses when only the teacher changes) are made once, since the
cache is keyed on the rendered request.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from cftdata.errors import RecipeError
from cftdata.recipe import Recipe, load_recipe


def parse_grid(text: str) -> tuple[str, list[str]]:
    key, sep, values = text.partition("=")
    vals = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key.strip() or not vals:
        raise RecipeError(f"--grid {text!r}: expected KEY=V1,V2,... e.g. --grid teacher.model=gpt-4o,gpt-4o-mini.")
    return key.strip(), vals


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value.split("/")[-1]).strip("_") or "v"


def expand_grid(recipe_file: str, overrides: tuple[str, ...], grids: tuple[str, ...]
                ) -> list[tuple[str, Recipe, tuple[str, ...]]]:
    """(label, recipe, overrides) per variant; one unlabeled variant when there is no grid."""
    if not grids:
        return [("", load_recipe(recipe_file, overrides), overrides)]
    base = load_recipe(recipe_file, overrides)
    axes = [parse_grid(g) for g in grids]
    out = []
    for combo in itertools.product(*[vals for _, vals in axes]):
        label = ", ".join(f"{k}={v}" for (k, _), v in zip(axes, combo, strict=True))
        suffix = "-".join(_slug(v) for v in combo)
        name = f"{base.name}-{suffix}"
        out_dir = f"{base.output.dir}-{suffix}" if base.output.dir else str(Path("outputs") / name)
        var = (*overrides, *(f"{k}={v}" for (k, _), v in zip(axes, combo, strict=True)), f"name={name}",
               f"output.dir={out_dir}")
        out.append((label, load_recipe(recipe_file, var), var))
    return out


def comparison_table(results) -> str:
    """A plain-text table of grid results: rows, rejects, verdict ratio, calls, cost, time."""
    header = ["variant", "rows", "rejected", "right", "wrong", "unknown", "calls", "cache hits", "cost $", "s"]
    lines = []
    for label, res in results:
        m = res.manifest
        # the verdicts of the rows written: of the selected set when there is a select phase
        v = m["stages"].get("select", {}).get("verdicts_kept") or m["stages"].get("verdict", {}).get("verdicts", {})
        calls = sum(u.get("calls_made", 0) for u in m["usage"].values())
        hits = sum(u.get("cache_hits", 0) for u in m["usage"].values())
        costs = [c["total_usd"] for c in m["cost"].values() if c.get("total_usd") is not None]
        lines.append([label, res.rows, res.rejected, v.get("right", 0), v.get("wrong", 0), v.get("unknown", 0),
                      calls, hits, f"{sum(costs):.4f}" if costs else "n/a", m["seconds"]])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*["-" * w for w in widths])] +
                     [fmt.format(*map(str, row)) for row in lines])
