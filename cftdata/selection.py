"""The select phase: choose the final subset from the critiqued pool (needs all rows, so it runs between the
per-shard stages and the write). Reads only the columns it needs from the pool files, so memory holds a few
numbers per row, not the rows. Strategies come from :data:`cftdata.quality.select.SELECTORS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from cftdata.errors import RecipeError
from cftdata.recipe import Recipe


def approx_tokens(text_len: pl.Expr) -> pl.Expr:
    """~4 characters per token (the same approximation the dry run documents)."""
    return (text_len / 4).ceil().cast(pl.Int64)


def pool_frame(pool_files: list[Path]) -> pl.DataFrame:
    if not pool_files:
        return pl.DataFrame({"id": [], "critique_len": [], "verdict": [], "n_tokens": []})
    lf = pl.scan_parquet([str(p) for p in pool_files])
    cols = lf.collect_schema().names()
    text = [pl.col(c).fill_null("").str.len_chars() for c in ("question", "response", "critique") if c in cols]
    return lf.select(
        pl.col("id"),
        (pl.col("critique").fill_null("").str.len_chars() if "critique" in cols else pl.lit(0)).alias("critique_len"),
        (pl.col("verdict") if "verdict" in cols else pl.lit("unknown")).alias("verdict"),
        approx_tokens(pl.sum_horizontal(text)).alias("n_tokens"),
    ).collect()


def reference_lengths(recipe: Recipe, params: dict[str, Any]) -> list[float]:
    """Token lengths of the reference dataset for ``length_matched`` (``reference``: a parquet/jsonl file,
    ``reference_columns``: the text columns whose lengths add up to one example)."""
    ref = params.pop("reference", None)
    columns = params.pop("reference_columns", ["instruction", "input", "output"])
    if ref is None:
        return params.pop("reference_lengths", [])
    path = recipe.resolve_path(ref)
    if not path.exists():
        raise RecipeError(f"select.params.reference: {path} does not exist.")
    df = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_ndjson(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RecipeError(f"select.params.reference: {path} has no column(s) {missing}; it has {df.columns}.")
    lengths = df.select(approx_tokens(pl.sum_horizontal([pl.col(c).cast(pl.Utf8).fill_null("").str.len_chars()
                                                          for c in columns])))
    return lengths.to_series().to_list()


def select_ids(recipe: Recipe, pool_files: list[Path]) -> tuple[list[str], dict[str, Any]]:
    """The ids the recipe's ``select`` keeps, and a summary for the manifest."""
    from cftdata.quality.select import select, strategy_params

    spec = recipe.select
    params = dict(spec.params)
    if spec.strategy == "length_matched":
        params["reference_lengths"] = reference_lengths(recipe, params)
    accepted = strategy_params(spec.strategy)
    if "seed" in accepted and "seed" not in params:
        params["seed"] = spec.seed if spec.seed is not None else recipe.run.seed
    df = pool_frame(pool_files)
    kept = select(df, spec.strategy, n=spec.n, **params)
    lens = df.filter(pl.col("id").is_in(kept))["critique_len"] if kept else pl.Series([], dtype=pl.Int64)
    summary = {"strategy": spec.strategy, "n": spec.n, "pool": df.height, "kept": len(kept),
               "params": {k: v for k, v in params.items() if k != "reference_lengths"},
               "critique_len_kept": {"min": lens.min(), "max": lens.max(), "mean": lens.mean()} if kept else None}
    return kept, summary
