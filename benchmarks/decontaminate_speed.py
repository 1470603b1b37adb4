"""Throughput of benchmark decontamination (word 8-grams against the seven bundled benchmarks).

    python benchmarks/decontaminate_speed.py --rows 200000 [--shard 50000] [--seed 0]

Builds :class:`cftdata.quality.decontaminate.Decontaminator` from the local copies of the seven
benchmarks of the CFT paper in ``../shared/data`` (timed: building the 8-gram index), then checks
``--rows`` GSM8K/MATH-style questions (``dedup_corpus.py``: recombined from the sentences of the
same real questions, so a realistic share of them quote a benchmark problem) in ``--shard``-row
shards and prints rows/s, the number of contaminated rows per benchmark and peak RSS.

Only the public API is used (``Decontaminator.from_benchmarks(...).check(ids, texts)``), so the
same script measures an older checkout: run it with ``PYTHONPATH`` pointing at that checkout to get
the "before" number on the same machine and corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dedup_corpus import DEFAULT_DATA, Generator  # noqa: E402

from cftdata.quality.decontaminate import DEFAULT_BENCHMARKS, Decontaminator  # noqa: E402


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--shard", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    args = ap.parse_args(argv)

    texts = Generator(args.seed, args.data).corpus(args.rows).texts
    ids = [f"q{i:08d}" for i in range(len(texts))]
    t0 = time.perf_counter()
    deco = Decontaminator.from_benchmarks(DEFAULT_BENCHMARKS, data_dir=args.data)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hits = 0
    for lo in range(0, len(texts), args.shard):
        out = deco.check(ids[lo : lo + args.shard], texts[lo : lo + args.shard])
        hits += sum(h is not None for h in out)
    check_s = time.perf_counter() - t0
    stats = deco.stats()
    report = {
        "rows": args.rows,
        "shard": args.shard,
        "build_index_seconds": round(build_s, 2),
        "check_seconds": round(check_s, 2),
        "rows_per_second": round(args.rows / check_s),
        "contaminated": hits,
        "contaminated_by_benchmark": stats["contaminated_by_benchmark"],
        "index_ngrams": stats["index_ngrams"],
        "peak_rss_mb": round(_peak_rss_mb()),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k:>26}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
