"""The select phase: choose the final subset from the critiqued pool (needs all rows, so it runs between the
per-shard stages and the write). Reads only the columns it needs from the pool files, so memory holds a few
numbers per row, not the rows. Strategies come from :data:`cftdata.quality.selectors.SELECTORS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cftdata.errors import RecipeError
from cftdata.recipe import Recipe


def approx_tokens(text_len: pl.Expr) -> pl.Expr:
    """~4 characters per token (the same approximation the dry run documents)."""
    return (text_len / 4).ceil().cast(pl.Int64)


def pool_frame(pool_files: list[Path], with_tokens: bool = False) -> pl.DataFrame:
    """One small record per pooled row: ``id`` = the row's position in the pool (uint32, source order),
    ``critique_len``, ``verdict`` (and ``n_tokens``). The streaming engine reads the text columns batch by
    batch, so memory holds about a dozen bytes per row, never the texts or the id strings."""
    if not pool_files:
        return pl.DataFrame({"id": [], "critique_len": [], "verdict": [], "n_tokens": []},
                            schema={"id": pl.UInt32, "critique_len": pl.UInt32, "verdict": pl.Categorical,
                                    "n_tokens": pl.Int64})
    lf = pl.scan_parquet([str(p) for p in pool_files], row_index_name="_pos")
    cols = lf.collect_schema().names()
    exprs = [
        pl.col("_pos").cast(pl.UInt32).alias("id"),
        (pl.col("critique").fill_null("").str.len_chars() if "critique" in cols else pl.lit(0))
        .cast(pl.UInt32).alias("critique_len"),
        (pl.col("verdict") if "verdict" in cols else pl.lit("unknown")).cast(pl.Categorical).alias("verdict"),
    ]
    if with_tokens:
        text = [pl.col(c).fill_null("").str.len_chars() for c in ("question", "response", "critique") if c in cols]
        exprs.append(approx_tokens(pl.sum_horizontal(text)).alias("n_tokens"))
    return lf.select(exprs).collect(engine="streaming")


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


def select_mask(recipe: Recipe, pool_files: list[Path]) -> tuple[np.ndarray, dict[str, Any]]:
    """A boolean mask over pool positions (source order): True = kept by the recipe's ``select``; and a
    summary for the manifest. Ties (equal critique lengths) are broken by source order."""
    from cftdata.quality.selectors import select, strategy_params

    spec = recipe.select
    params = dict(spec.params)
    if spec.strategy == "length_matched":
        params["reference_lengths"] = reference_lengths(recipe, params)
    accepted = strategy_params(spec.strategy)
    if "seed" in accepted and "seed" not in params:
        params["seed"] = spec.seed if spec.seed is not None else recipe.run.seed
    df = pool_frame(pool_files, with_tokens=spec.strategy == "length_matched")
    kept = np.asarray(select(df, spec.strategy, n=spec.n, **params), dtype=np.int64)
    mask = np.zeros(df.height, dtype=bool)
    mask[kept] = True
    lens = df["critique_len"].filter(pl.Series(mask)) if len(kept) else pl.Series([], dtype=pl.UInt32)
    kept_verdicts = df["verdict"].filter(pl.Series(mask)).cast(pl.String).fill_null("unknown").value_counts()
    summary = {"strategy": spec.strategy, "n": spec.n, "pool": df.height, "kept": int(len(kept)),
               "tie_break": "source order",
               "verdicts_kept": dict(sorted(zip(kept_verdicts["verdict"].to_list(), kept_verdicts["count"].to_list(),
                                                strict=True))),
               "params": {k: v for k, v in params.items() if k != "reference_lengths"},
               "critique_len_kept": {"min": lens.min(), "max": lens.max(), "mean": lens.mean()} if len(kept) else None}
    return mask, summary
