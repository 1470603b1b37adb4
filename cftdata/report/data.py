"""Read what a report needs from a build's parquet files, column by column, with polars.

Nothing here loads a whole dataset: lengths are computed by a streaming scan that reads only the text
column they come from (two integer columns of N rows stay in memory), group counts read two short
columns, and sampled examples read only the row groups that hold them. This is what lets ``inspect``
run on a 600K-row build.

The question, response and critique are recovered from every output format:

* ``alpaca``: ``input`` = ``"Question:\\n{question}\\n\\nSolution:\\n{response}"``, ``output`` = critique;
* ``messages`` / ``prompt-completion``: the user turn holds the same text after the instruction, the
  (last) assistant turn is the critique;
* ``sft-alpaca`` / ``sft-paper``: the question is in ``instruction`` / ``input``, ``output`` = the response,
  no critique.

The authors' own CFT layouts (``alpaca-authors``, ``alpaca-batch``, ``alpaca-mini``) put one newline before
``Solution:`` and may omit the ``Question:`` label: the split accepts both (``\\n+Solution:\\n``).
"""

from __future__ import annotations

import contextlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from cftdata.formats import FORMATS

QUESTION_MARK = "Question:\n"
SOLUTION_MARK = "\n\nSolution:\n"

#: Provenance columns shown with a sampled example, when the build wrote them.
SAMPLE_EXTRA = ("id", "source", "verdict", "reference_answer", "response_source", "teacher",
                "critique_finish_reason", "verify_status", "verify_pred", "verify_gold")


@dataclass(frozen=True)
class TextColumns:
    """How to get question / response / critique out of one output format (polars expressions)."""

    question: pl.Expr | None
    response: pl.Expr | None
    critique: pl.Expr | None
    needs: tuple[str, ...]  # parquet columns these expressions read


def _user_turn(col: str) -> pl.Expr:
    return (pl.col(col).list.eval(pl.element().filter(pl.element().struct.field("role") == "user")
                                  .struct.field("content")).list.last())


def _split_user_text(text: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """``[instruction\\n]Question:\\n{q}\\n\\nSolution:\\n{r}`` -> (q, r); also ``{q}\\nSolution:\\n{r}``."""
    after = text.str.splitn(QUESTION_MARK, 2)
    body = pl.when(after.struct.field("field_1").is_null()).then(text).otherwise(after.struct.field("field_1"))
    parts = body.str.splitn(SOLUTION_MARK, 2)
    loose = body.str.splitn(SOLUTION_MARK[1:], 2)  # one newline before "Solution:" (the authors' files)
    one_nl = parts.struct.field("field_1").is_null()
    question = pl.when(one_nl).then(loose.struct.field("field_0")).otherwise(parts.struct.field("field_0"))
    response = pl.when(one_nl).then(loose.struct.field("field_1")).otherwise(parts.struct.field("field_1"))
    return question, response


def text_columns(columns: list[str] | set[str], fmt: str | None = None) -> TextColumns:
    """Expressions for question/response/critique, chosen from the format name and the columns present."""
    cols = set(columns)
    sft_question = FORMATS.get(fmt).sft_question if fmt in FORMATS else None
    if sft_question and {sft_question, "output"} <= cols:
        return TextColumns(pl.col(sft_question), pl.col("output"), None, (sft_question, "output"))
    if {"input", "output"} <= cols:
        q, r = _split_user_text(pl.col("input"))
        return TextColumns(q, r, pl.col("output"), ("input", "output"))
    if "messages" in cols:
        q, r = _split_user_text(_user_turn("messages"))
        crit = pl.col("messages").list.last().struct.field("content")
        return TextColumns(q, r, crit, ("messages",))
    if {"prompt", "completion"} <= cols:
        q, r = _split_user_text(_user_turn("prompt"))
        crit = pl.col("completion").list.last().struct.field("content")
        return TextColumns(q, r, crit, ("prompt", "completion"))
    return TextColumns(None, None, None, ())


class Dataset:
    """The data files of a finished build, read lazily."""

    def __init__(self, files: list[Path], fmt: str | None = None) -> None:
        self.files = [Path(f) for f in files]
        self.fmt = fmt
        if self.files:
            self.columns: list[str] = list(pq.read_schema(self.files[0]).names)
            self.rows = sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)
        else:
            self.columns, self.rows = [], 0
        self.text = text_columns(self.columns, fmt)

    def _scan(self) -> pl.LazyFrame:
        return pl.scan_parquet([str(f) for f in self.files])

    def has(self, *names: str) -> bool:
        return all(n in self.columns for n in names)

    def lengths(self, which: str) -> np.ndarray:
        """Character lengths of ``critique`` / ``response`` / ``question`` (nulls dropped), one column read."""
        expr = getattr(self.text, which)
        if expr is None or not self.files:
            return np.zeros(0, dtype=np.int64)
        s = self._scan().select(expr.str.len_chars().alias("n")).collect(engine="streaming").to_series()
        return s.drop_nulls().to_numpy().astype(np.int64, copy=False)

    def group_counts(self, by: str, of: str) -> list[tuple[str, dict[str, int]]]:
        """``[(by_value, {of_value: count})]``, largest group first (two columns read)."""
        if not self.files or not self.has(of):
            return []
        lf = self._scan()
        key = pl.col(by).fill_null("(none)") if self.has(by) else pl.lit("all")
        df = (lf.select(key.cast(pl.String).alias("k"), pl.col(of).fill_null("(none)").cast(pl.String).alias("v"))
              .group_by("k", "v").len().collect(engine="streaming"))
        groups: dict[str, dict[str, int]] = {}
        for k, v, n in df.iter_rows():
            groups.setdefault(k, {})[v] = int(n)
        return sorted(groups.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))

    def int_column(self, name: str) -> np.ndarray:
        if not self.files or not self.has(name):
            return np.zeros(0, dtype=np.int64)
        s = self._scan().select(pl.col(name)).collect(engine="streaming").to_series()
        return s.drop_nulls().to_numpy().astype(np.int64, copy=False)

    def sample(self, n: int, seed: int = 0) -> list[dict[str, Any]]:
        """``n`` rows chosen uniformly with ``seed``, each as {question, response, critique, + provenance}.

        Only the row groups holding a chosen row are read, so memory stays at one row group.
        """
        if n <= 0 or self.rows == 0:
            return []
        picks = sorted(random.Random(seed).sample(range(self.rows), min(n, self.rows)))
        extra = [c for c in SAMPLE_EXTRA if c in self.columns]
        cols = list(dict.fromkeys([*self.text.needs, *extra, *(["meta"] if "meta" in self.columns else [])]))
        exprs = [pl.col(c) for c in extra]
        for name in ("question", "response", "critique"):
            e = getattr(self.text, name)
            exprs.append((e if e is not None else pl.lit(None, dtype=pl.String)).alias(f"_{name}"))
        if "meta" in self.columns:
            exprs.append(pl.col("meta"))
        out: dict[int, dict[str, Any]] = {}
        base = 0
        for f in self.files:
            pf = pq.ParquetFile(f)
            for rg in range(pf.metadata.num_row_groups):
                size = pf.metadata.row_group(rg).num_rows
                local = [i - base for i in picks if base <= i < base + size]
                if local:
                    df = pl.from_arrow(pf.read_row_group(rg, columns=cols))
                    assert isinstance(df, pl.DataFrame)
                    rows = df[local].select(exprs).to_dicts()
                    for i, row in zip(local, rows, strict=True):
                        out[base + i] = row
                base += size
        result = []
        for i in picks:
            row = out[i]
            rec = {"index": i, "question": row.pop("_question"), "response": row.pop("_response"),
                   "critique": row.pop("_critique")}
            meta = row.pop("meta", None)
            rec["fields"] = {k: v for k, v in row.items() if v is not None}
            if meta:
                rec["fields"]["meta"] = _compact_json(meta)
            result.append(rec)
        return result


def _compact_json(text: str, limit: int = 400) -> str:
    with contextlib.suppress(TypeError, ValueError):
        text = json.dumps(json.loads(text), ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def quantiles(values: np.ndarray) -> dict[str, float] | None:
    """min/p10/median/mean/p90/max of a length array (None when empty); ``nearest`` like the manifest."""
    if values.size == 0:
        return None
    q = np.quantile(values, [0, 0.1, 0.5, 0.9, 1], method="nearest")
    return {"min": int(q[0]), "p10": int(q[1]), "p50": int(q[2]), "mean": round(float(values.mean()), 1),
            "p90": int(q[3]), "max": int(q[4])}


def rejects_overview(path: Path | None, stages: tuple[str, ...] = ("dedup", "decontaminate"),
                     ids_per_stage: int = 20) -> dict[str, Any]:
    """From ``rejects.parquet`` (no ``row`` column read): one example detail per reason, and the first
    removed ids (and their count) for each stage in ``stages``."""
    if path is None or not path.is_file():
        return {"examples": {}, "removed": {}}
    lf = pl.scan_parquet(str(path))
    ex = (lf.select("stage", "reason", "detail").group_by("stage", "reason")
          .agg(pl.col("detail").first(), pl.len().alias("n")).collect(engine="streaming"))
    examples = {f"{s}:{r}": d for s, r, d, _ in ex.iter_rows()}
    removed: dict[str, dict[str, Any]] = {}
    for st in stages:
        sub = lf.filter(pl.col("stage") == st).select("id", "detail")
        n = sub.select(pl.len()).collect().item()
        if n:
            first = sub.head(ids_per_stage).collect().to_dicts()
            removed[st] = {"count": int(n), "first": first}
    return {"examples": examples, "removed": removed}
