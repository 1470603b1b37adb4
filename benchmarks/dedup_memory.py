"""How the Deduplicator's memory grows with rows: measured to --rows, projected to 10M.

    python benchmarks/dedup_memory.py --rows 1000000 [--shard 50000] [--seed 0]

Streams GSM8K/MATH-style questions (``dedup_corpus.py``, 15 % light edits; the generator keeps
only a window of 50K recent rows, so the corpus costs no memory as it grows) through
:meth:`cftdata.quality.dedup.Deduplicator.check` with its defaults, and after every shard records
the index size (``stats()["index_bytes"]``, exact: the arrays it holds) and the process's current
and peak RSS. A straight line fitted to the second half of the points gives bytes per row; the
script prints the measured points and the projection of index size and RSS to 1M, 10M and 100M
rows (RSS = the fitted line; the per-shard temporaries are included in its intercept).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dedup_corpus import DEFAULT_DATA, Generator  # noqa: E402

from cftdata.quality.dedup import Deduplicator  # noqa: E402


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--shard", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    dedup = Deduplicator()
    points = []
    t_dedup = 0.0
    for lo, texts, _ in Generator(args.seed, args.data).stream(args.rows, args.shard):
        ids = [f"q{i:09d}" for i in range(lo, lo + len(texts))]
        t0 = time.perf_counter()
        dedup.check(ids, texts)
        t_dedup += time.perf_counter() - t0
        st = dedup.stats()
        points.append(
            {
                "rows": lo + len(texts),
                "kept": st["kept"],
                "index_mb": round(st["index_bytes"] / 2**20, 1),
                "rss_mb": round(_rss_mb(), 1),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
            }
        )
        if not args.json:
            print(json.dumps(points[-1]), flush=True)
    half = points[len(points) // 2 :]
    rows = np.array([p["rows"] for p in half], dtype=float)
    fit = {k: np.polyfit(rows, [p[k] for p in half], 1) for k in ("index_mb", "rss_mb", "peak_rss_mb")}
    st = dedup.stats()
    report = {
        "rows": args.rows,
        "rows_per_second": round(args.rows / t_dedup),
        "kept_fraction": round(st["kept"] / st["seen"], 3),
        "index_bytes_per_row": round(fit["index_mb"][0] * 2**20),
        "rss_bytes_per_row": round(fit["rss_mb"][0] * 2**20),
        "projection_mb": {
            f"{n:,}": {k: round(float(np.polyval(fit[k], n))) for k in fit} for n in (10**6, 10**7, 10**8)
        },
        "index_breakdown_bytes_per_kept_row": _breakdown(dedup),
        "points": points,
    }
    dedup.close()
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def _breakdown(dedup: Deduplicator) -> dict[str, float]:
    """Bytes per kept row of each part of the index."""
    kept = max(1, dedup.stats()["kept"])
    parts = {
        "exact digests": dedup._exact_index.nbytes,
        "band keys": dedup._band_index.nbytes,
        "shingle sets": dedup._sets.itemsize * len(dedup._sets),
        "signatures": dedup._sigs.itemsize * len(dedup._sigs),
        "slot bookkeeping": sum(a.itemsize * len(a) for a in (dedup._slot_rep, dedup._slot_pos, dedup._slot_len)),
        "kept ids": len(dedup._id_bytes) + dedup._id_ends.itemsize * len(dedup._id_ends),
    }
    return {k: round(v / kept, 1) for k, v in parts.items()}


if __name__ == "__main__":
    raise SystemExit(main())
