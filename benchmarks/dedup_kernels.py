"""MinHash signature kernels on the same flat shingle hashes: cftdata's numpy kernel vs rensa's native one.

    pip install -e '.[bench]'
    python benchmarks/dedup_kernels.py [--rows 50000] [--repeat 5] [--seed 0]

Cuts ``--rows`` GSM8K/MATH-style questions (``dedup_corpus.py``) into word 5-gram shingle sets with
cftdata's column-wise path, then times, best of ``--repeat``, the 128 MinHash values of every row:

* ``numpy, 1 thread`` / ``numpy, N threads``: :func:`cftdata.quality.minhash.signatures`
  (``uint32`` multiply-shift, ``np.minimum.reduceat``), permutations split over a thread pool;
* ``rensa digest matrix``: rensa 0.5.0 ``RMinHash.digest_matrix_from_flat_token_hashes`` on the same
  flat hashes and row offsets (native, the values stay inside an opaque matrix object);
* ``rensa + to_rows``: the same, plus reading the values back into a numpy array (``to_rows()``
  is the only way out of the matrix, and band keys and verification need the values).

It also checks the statistics that matter for LSH: on pairs of real questions and their light
edits, the fraction of equal MinHash values (estimated Jaccard) against the true Jaccard, for both
kernels. docs/dedup.md has the table and the choice it supports.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dedup_corpus import DEFAULT_DATA, Generator  # noqa: E402

from cftdata.quality.minhash import permutations, shingle_sets, signatures  # noqa: E402
from cftdata.quality.normalize import normalize_many  # noqa: E402


def best_of(repeat: int, fn) -> tuple[float, object]:  # noqa: ANN001
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args(argv)

    corpus = Generator(args.seed, args.data).corpus(args.rows)
    hashes, offsets = normalize_many(corpus.texts).ngrams(5)
    values, set_off = shingle_sets(hashes, offsets)
    perm = permutations(1, 128)
    pool = ThreadPoolExecutor(args.threads)
    results: dict[str, float] = {}
    results["numpy, 1 thread"], ours = best_of(args.repeat, lambda: signatures(values, set_off, perm))
    results[f"numpy, {args.threads} threads"], _ = best_of(
        args.repeat, lambda: signatures(values, set_off, perm, pool, args.threads)
    )
    try:
        import rensa
    except ImportError:
        rensa = None
    theirs = None
    if rensa is not None:
        flat64, off64 = values.astype(np.uint64), set_off.astype(np.uint64)

        def rensa_matrix():  # noqa: ANN202
            return rensa.RMinHash.digest_matrix_from_flat_token_hashes(flat64, off64, 128, 42)

        results["rensa digest matrix"], _ = best_of(args.repeat, rensa_matrix)
        results["rensa + to_rows"], theirs = best_of(
            args.repeat, lambda: np.array(rensa_matrix().to_rows(), dtype=np.uint32).T
        )
    pool.shutdown()

    # Estimated vs true Jaccard on the planted pairs (same sets for both kernels).
    planted = list(corpus.planted.values())
    sets = [set(values[set_off[i] : set_off[i + 1]].tolist()) for i in range(args.rows)]
    true_j = np.array([len(sets[p.row] & sets[p.source]) / len(sets[p.row] | sets[p.source]) for p in planted])
    quality = {}
    for name, sig in (("numpy", ours), ("rensa", theirs)):
        if sig is None:
            continue
        est = np.array([np.mean(sig[:, p.row] == sig[:, p.source]) for p in planted])
        quality[name] = {
            "mean(est - true)": round(float(np.mean(est - true_j)), 4),
            "sd(est - true)": round(float(np.std(est - true_j)), 4),
            "ideal sd": round(float(np.mean(np.sqrt(true_j * (1 - true_j) / 128))), 4),
        }
    print(f"{args.rows:,} rows, {int(set_off[-1]):,} shingles, 128 permutations, best of {args.repeat}\n")
    print("| kernel | ms | rows/s |")
    print("|---|---|---|")
    for name, sec in results.items():
        print(f"| {name} | {sec * 1e3:,.0f} | {args.rows / sec:,.0f} |")
    print()
    print(json.dumps(quality))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
