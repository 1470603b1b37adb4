"""Throughput, memory and recall of cftdata's streaming dedup, recall measured against the TRUE Jaccard.

    python benchmarks/dedup_speed.py --rows 200000 [--shard 50000] [--seed 0] [--threads N]

Generates GSM8K/MATH-style questions shard by shard (``dedup_corpus.py``: recombined from the real
questions in ``../shared/data``, about 15 % light edits of an earlier row: one number changed, two
adjacent words swapped, one word dropped or replaced by a synonym), feeds each shard to
:meth:`cftdata.quality.dedup.Deduplicator.check` and prints rows/second (dedup calls only; the
generation is timed apart), peak RSS, index size and quality:

* recall by true Jaccard: of the planted edits whose word 5-gram Jaccard with their source is
  >= 0.8 (>= 0.85, >= 0.9), the fraction dropped. A planted edit below the threshold is not a
  near-duplicate, so it does not count as a miss (the old version of this script counted every
  planted edit, mixing misses with pairs that are not near-duplicates at all);
* extra drops: dropped rows whose true Jaccard with the row they were matched to is below 0.6.

Peak RSS covers the whole process, including the corpus (all texts are kept, to check the drops).
Use ``dedup_compare.py`` for the side-by-side run with rensa and datasketch, and
``dedup_memory.py`` for the memory projection to 10M rows.
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

from dedup_corpus import DEFAULT_DATA, Corpus, Generator, extra_drops, recall_table  # noqa: E402

from cftdata.quality.dedup import Deduplicator  # noqa: E402


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--shard", type=int, default=50_000, help="rows per check() call")
    ap.add_argument("--edit-frac", type=float, default=0.15)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--shingle", type=int, default=5)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--transitive", action="store_true", help="also index near-duplicates")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    args = ap.parse_args(argv)

    gen = Generator(args.seed, args.data, args.shingle)
    dedup = Deduplicator(
        num_perm=args.num_perm,
        shingle=args.shingle,
        threshold=args.threshold,
        verify=not args.no_verify,
        transitive=args.transitive,
        threads=args.threads,
    )
    corpus = Corpus([])
    dup_of: list[int | None] = []
    t_dedup = t_gen = 0.0
    t0 = time.perf_counter()
    for lo, texts, planted in gen.stream(args.rows, args.shard, args.edit_frac):
        t1 = time.perf_counter()
        ids = [f"q{i:09d}" for i in range(lo, lo + len(texts))]
        verdicts = dedup.check(ids, texts)
        t2 = time.perf_counter()
        t_gen += t1 - t0
        t_dedup += t2 - t1
        corpus.texts += texts
        corpus.planted.update(planted)
        dup_of += [None if v is None else int(v[1:]) for v in verdicts]
        if not args.json:
            print(f"  {lo + len(texts):>10,} rows  {(lo + len(texts)) / t_dedup:>9,.0f} rows/s  "
                  f"peak rss {_peak_rss_mb():,.0f} MB", flush=True)  # fmt: skip
        t0 = time.perf_counter()
    stats = dedup.stats()
    dedup.close()
    dropped = np.array([d is not None for d in dup_of])
    bad = extra_drops(corpus, dropped, dup_of, args.shingle)
    report = {
        "rows": args.rows,
        "shard": args.shard,
        "seed": args.seed,
        "threads": dedup.threads,
        "dedup_seconds": round(t_dedup, 2),
        "generate_seconds": round(t_gen, 1),
        "rows_per_second": round(args.rows / t_dedup),
        "peak_rss_mb": round(_peak_rss_mb()),
        "index_mb": stats["index_mb"],
        "index_bytes_per_kept_row": round(stats["index_bytes"] / max(1, stats["kept"])),
        "bands_x_rows": f"{stats['bands']}x{stats['rows_per_band']}",
        "planted_edits": len(corpus.planted),
        **recall_table(corpus, dropped),
        "drops": int(dropped.sum()),
        "extra_drops": bad,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "stats": stats,
    }
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            if k != "stats":
                print(f"{k:>26}: {v}")
        print(f"{'stats':>26}: {json.dumps(stats)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
