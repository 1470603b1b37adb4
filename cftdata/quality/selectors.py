"""Selection strategies: which critiqued rows go into the final dataset.

Each strategy is a function registered in :data:`SELECTORS` that takes a ``polars.DataFrame``
with at least the columns ``id`` (unique strings), ``critique_len`` (critique length in
characters) and ``verdict`` (``right`` / ``wrong`` / ``unknown``; null counts as unknown), plus
``n_tokens`` for :func:`length_matched`, and returns the kept ids in a documented, deterministic
order. Call them through :func:`select`, which checks the parameter names, types and the frame::

    ids = select(df, "longest_critique", n=50_000)          # the paper's 50K rule
    ids = select(df, "random", n=4_000, seed=42)
    ids = select(df, "balanced_verdict", n=80_000, seed=42)  # 40K right + 40K wrong
    ids = select(df, "verdict_ratio", n=10_000, right_share=0.25, seed=42)  # 2.5K right + 7.5K wrong
    ids = select(df, "length_matched", n=50_000, reference_lengths=sft_lengths, seed=42)

Determinism: the result depends only on the set of rows and the parameters, never on the row
order of the frame (rows are ordered by ``id`` before any seeded draw) nor on the process.
Random draws use ``numpy.random.default_rng(seed)``.

Pools smaller than asked: ``n`` is a ceiling. ``random`` returns all rows if the pool has at most
``n``; ``balanced_verdict`` returns ``min(n/2, #right, #wrong)`` of each verdict; the trims of
``longest_critique`` shrink as described on that function; ``length_matched`` does not
redistribute bins that lack rows. Each of these can be made an error with ``strict=True``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from cftdata.errors import CftdataError
from cftdata.registry import Registry

__all__ = [
    "SELECTORS",
    "SelectionError",
    "VERDICTS",
    "balanced_verdict",
    "length_matched",
    "longest_critique",
    "random_sample",
    "select",
    "strategy_params",
    "verdict_ratio",
]

Selector = Callable[..., list[str]]

#: Strategy name -> function(df, **params) -> kept ids.
SELECTORS: Registry[Selector] = Registry("selection strategy")

VERDICTS = ("right", "wrong", "unknown")


class SelectionError(CftdataError):
    """A selection strategy got bad parameters or a frame without the columns it needs."""


# --- validation helpers -----------------------------------------------------------------------------


def _int_param(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SelectionError(f"Selection parameter {name!r} must be an integer, got {value!r}.")
    if value < minimum:
        raise SelectionError(f"Selection parameter {name!r} must be >= {minimum}, got {value}.")
    return int(value)


def _check_frame(df: Any, columns: Sequence[str], strategy: str) -> pl.DataFrame:
    if not isinstance(df, pl.DataFrame):
        raise SelectionError(f"Selection {strategy!r} needs a polars.DataFrame, got {type(df).__name__}.")
    missing = [c for c in ("id", *columns) if c not in df.columns]
    if missing:
        raise SelectionError(
            f"Selection {strategy!r} needs column(s) {', '.join(missing)}; the frame has {', '.join(df.columns)}."
        )
    if df.schema["id"] != pl.String and not df.schema["id"].is_integer():
        raise SelectionError(f"Column 'id' must hold strings or integers (row positions), not {df.schema['id']}.")
    if df["id"].null_count():
        raise SelectionError(f"Column 'id' has {df['id'].null_count()} null value(s).")
    if df["id"].n_unique() != df.height:
        dup = df["id"].filter(df["id"].is_duplicated()).unique().sort().head(3).to_list()
        raise SelectionError(f"Column 'id' has duplicate ids (e.g. {dup}); selection needs unique ids.")
    for c in columns:
        if c == "verdict":
            continue
        if not df.schema[c].is_numeric():
            raise SelectionError(f"Column {c!r} must be numeric, not {df.schema[c]}.")
        if df[c].null_count():
            raise SelectionError(
                f"Column {c!r} has {df[c].null_count()} null value(s); fill or drop those rows."
            )
    return df


def _by_id(df: pl.DataFrame) -> pl.DataFrame:
    """Canonical row order for seeded draws: independent of how the frame was assembled."""
    return df.sort("id")


# --- strategies ----------------------------------------------------------------------------------------


@SELECTORS.register("random")
def random_sample(df: pl.DataFrame, n: int, seed: int = 0, strict: bool = False) -> list[str]:
    """A seeded uniform sample of ``n`` rows, in draw order.

    Rows are ordered by id, then permuted with ``default_rng(seed)``; the first ``n`` are kept.
    So with the same seed a smaller sample is a prefix of a larger one (the 4K set is inside the
    50K set). If the pool has at most ``n`` rows, all rows are returned (shuffled), unless
    ``strict`` (then it is an error).
    """
    n = _int_param("n", n, 1)
    seed = _int_param("seed", seed, 0)
    _check_frame(df, [], "random")
    if strict and df.height < n:
        raise SelectionError(f"random: asked for n={n} rows but the pool has only {df.height}.")
    ids = _by_id(df)["id"].to_numpy()
    order = np.random.default_rng(seed).permutation(len(ids))
    return ids[order[:n]].tolist()


@SELECTORS.register("longest_critique")
def longest_critique(
    df: pl.DataFrame,
    n: int = 50_000,
    pool: int = 80_000,
    trim_shortest: int = 10_000,
    trim_longest: int = 10_000,
    strict: bool = False,
) -> list[str]:
    """The CFT paper's rule: long critiques, without the extreme tails; longest first.

    Rows are ranked by ``critique_len`` descending, ties by ``id`` ascending (rank 1 = longest).
    The ``trim_longest`` longest and ``trim_shortest`` shortest are dropped, the ``pool``
    longest of the rest kept, then the ``n`` longest of those: the result is ranks
    ``trim_longest + 1 .. trim_longest + min(n, pool)``. With the defaults on the ~600K
    WebInstruct pool that is ranks 10,001-60,000, as in WebInstruct-CFT-50K.

    Small pools: let ``target = min(n, pool)``. If the pool has fewer than
    ``target + trim_shortest + trim_longest`` rows, both trims are scaled down by the same factor
    so that exactly ``target`` rows remain (``trim_longest`` becomes
    ``floor((N - target) * trim_longest / (trim_shortest + trim_longest))``, the shortest side
    takes the rest); with ``N <= target`` nothing is trimmed and all rows are returned.
    ``strict=True`` makes a pool too small for the configured trims an error instead.
    """
    n = _int_param("n", n, 1)
    pool = _int_param("pool", pool, 1)
    trim_shortest = _int_param("trim_shortest", trim_shortest, 0)
    trim_longest = _int_param("trim_longest", trim_longest, 0)
    _check_frame(df, ["critique_len"], "longest_critique")
    total = df.height
    target = min(n, pool)
    if total >= target + trim_shortest + trim_longest:
        skip = trim_longest
    elif strict:
        raise SelectionError(
            f"longest_critique: the pool has {total} rows, fewer than n/pool ({target}) + trim_shortest "
            f"({trim_shortest}) + trim_longest ({trim_longest})."
        )
    else:
        excess = max(total - target, 0)
        trims = trim_shortest + trim_longest
        skip = (excess * trim_longest) // trims if trims else 0
    ranked = df.select("id", "critique_len").sort(["critique_len", "id"], descending=[True, False])
    return ranked["id"].slice(skip, target).to_list()


def _right_wrong(df: pl.DataFrame, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """The ids whose verdict is ``right`` and ``wrong`` (in id order), after checking the verdict column."""
    _check_frame(df, ["verdict"], strategy)
    column = df["verdict"]
    if isinstance(column.dtype, (pl.Categorical, pl.Enum)):
        column = column.cast(pl.String)
    if column.dtype != pl.String:
        raise SelectionError(f"Column 'verdict' must hold strings, not {column.dtype}.")
    verdicts = column.fill_null("unknown").str.strip_chars().str.to_lowercase()
    bad = verdicts.filter(~verdicts.is_in(VERDICTS)).unique().sort().head(3).to_list()
    if bad:
        raise SelectionError(f"Column 'verdict' has values outside {VERDICTS}: {bad}.")
    frame = _by_id(df.select("id").with_columns(verdict=verdicts))
    return (frame.filter(pl.col("verdict") == "right")["id"].to_numpy(),
            frame.filter(pl.col("verdict") == "wrong")["id"].to_numpy())


@SELECTORS.register("verdict_ratio")
def verdict_ratio(df: pl.DataFrame, n: int, right_share: float, seed: int = 0, strict: bool = False) -> list[str]:
    """``n`` rows of which ``round(n * right_share)`` have the verdict ``right`` and the rest ``wrong``, seeded.

    The right:wrong ratio of the selected set at a fixed size (the CFT authors' open question): grid over
    ``right_share`` with ``--grid select.params.right_share=0,0.25,0.5,0.75,1``. ``unknown`` verdicts are
    excluded. Within each verdict, rows are ordered by id and permuted with ``default_rng(seed)`` (``right``
    drawn first), so the same seed draws nested sets. If a verdict has too few rows, the size shrinks so that
    the ratio holds (``strict=True``: error instead). Rights come first, then wrongs.
    """
    n = _int_param("n", n, 1)
    seed = _int_param("seed", seed, 0)
    if isinstance(right_share, bool) or not isinstance(right_share, (int, float)) or not 0 <= right_share <= 1:
        raise SelectionError(f"verdict_ratio: right_share must be a number from 0 to 1, got {right_share!r}.")
    right, wrong = _right_wrong(df, "verdict_ratio")
    want_r = round(n * right_share)
    size = n
    if want_r > len(right) or n - want_r > len(wrong):
        if strict:
            raise SelectionError(f"verdict_ratio: need {want_r} right and {n - want_r} wrong; the pool has "
                                 f"{len(right)} right, {len(wrong)} wrong.")
        caps = [len(right) / right_share if right_share > 0 else n,
                len(wrong) / (1 - right_share) if right_share < 1 else n]
        size = int(min(n, *caps))
        want_r = min(round(size * right_share), len(right))
    rng = np.random.default_rng(seed)
    r = right[rng.permutation(len(right))[:want_r]]
    w = wrong[rng.permutation(len(wrong))[:min(size - want_r, len(wrong))]]
    return np.concatenate([r, w]).tolist()


@SELECTORS.register("balanced_verdict")
def balanced_verdict(df: pl.DataFrame, n: int, seed: int = 0, strict: bool = False) -> list[str]:
    """``n/2`` rows whose verdict is ``right`` and ``n/2`` whose verdict is ``wrong``, seeded.

    ``unknown`` (and null) verdicts are excluded. Within each verdict, rows are ordered by id and
    permuted with ``default_rng(seed)`` (one generator, ``right`` drawn first). If a verdict has
    fewer than ``n/2`` rows, both take ``min(#right, #wrong)`` so the result stays balanced
    (``strict=True``: error instead). The result alternates right, wrong, right, ... so every
    prefix is balanced too. ``n`` must be even.
    """
    n = _int_param("n", n, 2)
    seed = _int_param("seed", seed, 0)
    if n % 2:
        raise SelectionError(f"balanced_verdict: n must be even (n/2 right + n/2 wrong), got {n}.")
    right, wrong = _right_wrong(df, "balanced_verdict")
    k = min(n // 2, len(right), len(wrong))
    if strict and k < n // 2:
        raise SelectionError(
            f"balanced_verdict: need {n // 2} of each verdict; the pool has {len(right)} right, {len(wrong)} wrong."
        )
    rng = np.random.default_rng(seed)
    r = right[rng.permutation(len(right))[:k]]
    w = wrong[rng.permutation(len(wrong))[:k]]
    out = np.empty(2 * k, dtype=object)
    out[0::2], out[1::2] = r, w
    return out.tolist()


@SELECTORS.register("length_matched")
def length_matched(
    df: pl.DataFrame,
    n: int,
    reference_lengths: Sequence[float],
    bins: int = 20,
    seed: int = 0,
    length_column: str = "n_tokens",
    strict: bool = False,
) -> list[str]:
    """``n`` rows whose ``length_column`` distribution matches ``reference_lengths``, seeded.

    Histogram-binned sampling: bin edges are the ``bins + 1`` quantiles of the reference (equal
    reference mass per bin; repeated edges merged), bin ``i`` covers ``[edge_i, edge_i+1)`` and the
    last bin includes the reference maximum. Pool rows outside ``[min, max]`` of the reference are
    never chosen. Bin ``i`` gets ``n`` times its reference share rows (largest-remainder rounding,
    so the targets sum to ``n``), drawn uniformly within the bin (rows by id, permuted with
    ``default_rng(seed)``). A bin with fewer rows than its target gives all it has and the
    shortfall is not moved elsewhere (that would bend the distribution), so the result can be
    shorter than ``n``; ``strict=True`` makes a shortfall an error. Result order: bin by bin,
    draw order within a bin.
    """
    n = _int_param("n", n, 1)
    bins = _int_param("bins", bins, 1)
    seed = _int_param("seed", seed, 0)
    if not isinstance(length_column, str):
        raise SelectionError(f"length_column must be a column name, got {length_column!r}.")
    try:
        ref = np.asarray(reference_lengths, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise SelectionError("length_matched: reference_lengths must be a list of numbers.") from None
    if ref.size == 0:
        raise SelectionError("length_matched: reference_lengths is empty.")
    if not np.all(np.isfinite(ref)) or np.any(ref < 0):
        raise SelectionError("length_matched: reference_lengths must be finite and >= 0.")
    _check_frame(df, [length_column], "length_matched")
    frame = _by_id(df.select("id", length_column))
    ids = frame["id"].to_numpy()
    lengths = frame[length_column].to_numpy().astype(np.float64)

    edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)))
    nb = max(len(edges) - 1, 1)

    def bin_of(x: np.ndarray) -> np.ndarray:
        if len(edges) == 1:  # every reference length is the same
            return np.where(x == edges[0], 0, -1)
        b = np.searchsorted(edges, x, side="right") - 1
        b[x == edges[-1]] = nb - 1
        b[(x < edges[0]) | (x > edges[-1])] = -1
        return b

    share = np.bincount(bin_of(ref), minlength=nb) / ref.size
    raw = share * n
    target = np.floor(raw).astype(np.int64)
    remainder = n - int(target.sum())
    if remainder:
        # Largest fractional parts first; ties to the lower bin (stable sort).
        target[np.argsort(-(raw - target), kind="stable")[:remainder]] += 1
    pool_bins = bin_of(lengths)
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    short = 0
    for b in range(nb):
        members = np.flatnonzero(pool_bins == b)
        take = min(int(target[b]), len(members))
        short += int(target[b]) - take
        chosen.append(ids[members[rng.permutation(len(members))[:take]]])
    if strict and short:
        raise SelectionError(
            f"length_matched: {short} of the {n} rows could not be matched (bins without enough pool rows)."
        )
    return np.concatenate(chosen).tolist() if chosen else []


# --- front door -----------------------------------------------------------------------------------------


def strategy_params(strategy: str) -> dict[str, Any]:
    """Parameter names of a strategy -> default (``inspect.Parameter.empty`` if required)."""
    sig = inspect.signature(SELECTORS.get(strategy))
    return {name: p.default for name, p in list(sig.parameters.items())[1:]}


def select(df: pl.DataFrame, strategy: str, **params: Any) -> list[str]:
    """Run selection ``strategy`` (a :data:`SELECTORS` name) on ``df``; returns the kept ids.

    Unknown or missing parameters are reported with the strategy's accepted parameters, e.g.
    ``select(df, "longest_critique", n=50_000, pool=80_000, trim_shortest=10_000)``.
    """
    fn = SELECTORS.get(strategy)
    accepted = strategy_params(strategy)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise SelectionError(
            f"Selection {strategy!r} got unknown parameter(s) {', '.join(unknown)}; "
            f"it accepts {', '.join(accepted)}."
        )
    missing = [k for k, d in accepted.items() if d is inspect.Parameter.empty and k not in params]
    if missing:
        raise SelectionError(f"Selection {strategy!r} needs parameter(s) {', '.join(missing)}.")
    return fn(df, **params)
