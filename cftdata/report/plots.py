"""The report's charts, drawn with matplotlib's object API (no pyplot, no GUI backend) into PNG bytes."""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence

import numpy as np

# A colour per verdict / verifier status; anything else gets a neutral palette colour.
COLORS = {
    "right": "#2e9e5b", "correct": "#2e9e5b",
    "wrong": "#d1495b", "incorrect": "#d1495b",
    "unknown": "#9aa5b1", "unverifiable": "#9aa5b1", "(none)": "#cbd2d9",
    "timeout": "#f0a202", "error": "#7d4e9f",
}
PALETTE = ["#3d7ea6", "#f0a202", "#7d4e9f", "#5c946e", "#c9733a", "#4f5d75"]
ACCENT = "#3d7ea6"
DPI = 110


def _require_matplotlib():
    try:
        import matplotlib

        if "matplotlib.pyplot" not in sys.modules:  # leave a notebook's interactive backend alone
            matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        from cftdata.errors import CftdataError

        raise CftdataError("`cftdata inspect` draws its charts with matplotlib, which is not installed: "
                           "pip install 'cftdata[report]' (or pip install 'matplotlib>=3.8').") from None
    return Figure


def short_number(v: float, _pos: object = None) -> str:
    """12 -> "12", 48000 -> "48K", 1200000 -> "1.2M" (tick labels)."""
    for div, suffix in ((1e6, "M"), (1e3, "K")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    axis.set_major_formatter(FuncFormatter(short_number))


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white",
                metadata={"Software": None})
    return buf.getvalue()


def _style(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=9)
    ax.grid(axis="x", color="#e4e7eb", linewidth=0.8)
    ax.set_axisbelow(True)


def color_for(label: str, i: int) -> str:
    return COLORS.get(label, PALETTE[i % len(PALETTE)])


def length_histogram(values: np.ndarray, title: str, xlabel: str = "characters") -> bytes:
    """A histogram with median and p90 marks; a long tail beyond p99.5 is folded into the last bin."""
    Figure = _require_matplotlib()
    fig = Figure(figsize=(6.4, 3.0))
    ax = fig.add_subplot()
    _style(ax)
    ax.grid(axis="y", color="#e4e7eb", linewidth=0.8)
    ax.grid(axis="x", visible=False)
    if values.size == 0:
        ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes, color="#616e7c")
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        hi = float(np.quantile(values, 0.995))
        clipped = int(np.count_nonzero(values > hi)) if values.size > 200 and hi < values.max() else 0
        data = np.minimum(values, hi) if clipped else values
        bins = min(60, max(5, int(np.sqrt(values.size)) + 1))
        ax.hist(data, bins=bins, color=ACCENT, edgecolor="white", linewidth=0.4)
        med, p90 = (float(np.quantile(values, q, method="nearest")) for q in (0.5, 0.9))
        ax.axvline(med, color="#1f2933", linestyle="--", linewidth=1, label=f"median {med:,.0f}")
        ax.axvline(p90, color="#d1495b", linestyle=":", linewidth=1.2, label=f"p90 {p90:,.0f}")
        ax.legend(fontsize=8, frameon=False, ncols=2, loc="lower right", bbox_to_anchor=(1.0, 1.0))
        ax.set_xlabel(xlabel + (f"  ({clipped:,} rows above {hi:,.0f} shown in the last bin)" if clipped else ""),
                      fontsize=9)
        ax.set_ylabel("rows", fontsize=9)
        _integer_ticks(ax.yaxis)
    ax.set_title(title, fontsize=11, loc="left")
    return _png(fig)


def stacked_ratio(groups: Sequence[tuple[str, dict[str, int]]], title: str,
                  order: Sequence[str] = ("right", "wrong", "unknown"), max_groups: int = 15) -> bytes:
    """One horizontal bar per group, split by the share of each category (e.g. verdict by source)."""
    Figure = _require_matplotlib()
    groups = list(groups)
    if len(groups) > max_groups:
        rest: dict[str, int] = {}
        for _, counts in groups[max_groups - 1:]:
            for k, v in counts.items():
                rest[k] = rest.get(k, 0) + v
        groups = [*groups[:max_groups - 1], (f"({len(groups) - max_groups + 1} more sources)", rest)]
    cats = [c for c in order if any(c in g for _, g in groups)]
    cats += sorted({c for _, g in groups for c in g} - set(cats))
    fig = Figure(figsize=(6.4, 0.9 + 0.42 * max(1, len(groups))))
    ax = fig.add_subplot()
    _style(ax)
    labels = [f"{name}  (n={sum(c.values()):,})" for name, c in groups]
    y = np.arange(len(groups))[::-1]
    left = np.zeros(len(groups))
    for i, cat in enumerate(cats):
        share = np.array([c.get(cat, 0) / max(1, sum(c.values())) for _, c in groups])
        ax.barh(y, share, left=left, color=color_for(cat, i), label=cat, height=0.62)
        for yy, l0, s in zip(y, left, share, strict=True):
            if s >= 0.08:
                ax.text(l0 + s / 2, yy, f"{s:.0%}", ha="center", va="center", fontsize=8, color="white")
        left += share
    ax.set_yticks(y, labels)
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax.legend(fontsize=8, frameon=False, ncols=max(1, len(cats)), loc="lower left", bbox_to_anchor=(0, 1.0))
    ax.set_title(title, fontsize=11, loc="left", pad=22)
    return _png(fig)


def bar_counts(counts: dict[str, int], title: str, xlabel: str = "rows", max_bars: int = 20) -> bytes:
    """Horizontal bars, largest first (e.g. rejects by reason)."""
    Figure = _require_matplotlib()
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(items) > max_bars:
        items = [*items[:max_bars - 1], (f"({len(items) - max_bars + 1} more)", sum(v for _, v in items[max_bars - 1:]))]
    fig = Figure(figsize=(6.4, 0.9 + 0.36 * max(1, len(items))))
    ax = fig.add_subplot()
    _style(ax)
    if not items:
        ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes, color="#616e7c")
        ax.set_yticks([])
    else:
        y = np.arange(len(items))[::-1]
        vals = [v for _, v in items]
        ax.barh(y, vals, color="#d1495b", height=0.6)
        ax.set_yticks(y, [k for k, _ in items])
        for yy, v in zip(y, vals, strict=True):
            ax.text(v, yy, f" {v:,}", va="center", fontsize=8)
        ax.set_xlim(0, max(vals) * 1.15)
        _integer_ticks(ax.xaxis)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_title(title, fontsize=11, loc="left")
    return _png(fig)


def stage_funnel(counts: dict[str, dict[str, float]], title: str = "Rows through each stage") -> bytes:
    """Rows kept (and rejected) per stage, in build order."""
    Figure = _require_matplotlib()
    names = list(counts)
    fig = Figure(figsize=(6.4, 0.9 + 0.38 * max(1, len(names))))
    ax = fig.add_subplot()
    _style(ax)
    y = np.arange(len(names))[::-1]
    out = np.array([counts[n].get("out", 0) for n in names], dtype=float)
    rej = np.array([counts[n].get("rejected", 0) for n in names], dtype=float)
    ax.barh(y, out, color=ACCENT, height=0.6, label="out")
    ax.barh(y, rej, left=out, color="#d1495b", height=0.6, label="rejected")
    for yy, o, r in zip(y, out, rej, strict=True):
        ax.text(o + r, yy, f" {int(o):,}" + (f" (-{int(r):,})" if r else ""), va="center", fontsize=8)
    ax.set_yticks(y, names)
    top = float((out + rej).max()) if len(names) else 1.0
    ax.set_xlim(0, max(1.0, top) * 1.2)
    _integer_ticks(ax.xaxis)
    ax.legend(fontsize=8, frameon=False, ncols=2, loc="lower left", bbox_to_anchor=(0, 1.0))
    ax.set_xlabel("rows", fontsize=9)
    ax.set_title(title, fontsize=11, loc="left", pad=22)
    return _png(fig)
