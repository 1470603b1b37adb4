"""Benchmark: answer-verification throughput with 1 and 2 worker processes.

Runs the real public data in ``../shared/data`` (relative to the repository root) through
:class:`cftdata.verify.Verifier`:

* gsm8k/example_model_solutions.jsonl: every (row, model) pair (4 models x 1319 rows), answers
  extracted with the ``a_colon`` rule from ``ground_truth`` and each model's ``solution``;
* math500/test.jsonl: all 500 rows, the ``boxed`` answer of ``solution`` against ``answer``.

For each data set and worker count it starts a fresh Verifier (start-up is timed separately and not
counted), verifies all pairs, and prints pairs/second and the 2-vs-1 worker speed-up. Usage::

    python benchmarks/verify_speed.py [--repeat 3] [--data ../shared/data] [--workers 1 2]

This is a script, not a test. The machines it is meant for have 2 cores; other processes running at
the same time distort the numbers (the best of ``--repeat`` runs is reported).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from cftdata.verify import Verifier, extract_answer

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
GSM8K_MODELS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def gsm8k_pairs(data: Path) -> tuple[list[tuple[str | None, str | None]], list[bool]]:
    """(gold, pred) for every (row, model) of the GSM8K example model solutions, and the labels."""
    pairs: list[tuple[str | None, str | None]] = []
    labels: list[bool] = []
    with open(data / "gsm8k" / "example_model_solutions.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            gold = extract_answer(row["ground_truth"], "a_colon")
            for model in GSM8K_MODELS:
                pairs.append((gold, extract_answer(row[model]["solution"], "a_colon")))
                labels.append(bool(row[model]["is_correct"]))
    return pairs, labels


def math500_pairs(data: Path) -> list[tuple[str | None, str | None]]:
    """(gold ``answer``, boxed answer of ``solution``) for the 500 MATH-500 rows."""
    with open(data / "math500" / "test.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [(row["answer"], extract_answer(row["solution"], "boxed")) for row in rows]


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def calibrate(n: int = 5_000_000) -> float:
    """Speed-up of 2 processes over 1 on pure-Python CPU work: the most this machine can give now.

    On a machine shared with other busy processes (or whose cores are SMT siblings) this is well
    below 2, and the verifier's speed-up cannot exceed it.
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.map(_burn, [1000, 1000])  # start both
        t0 = time.perf_counter()
        pool.apply(_burn, (2 * n,))
        t1 = time.perf_counter()
        pool.map(_burn, [n, n], chunksize=1)
        t2 = time.perf_counter()
    return (t1 - t0) / (t2 - t1)


def measure(pairs: list, workers: int) -> tuple[float, float, list]:
    """Pairs/second of one fresh Verifier (start-up not counted), its start-up time, and the results."""
    t0 = time.perf_counter()
    with Verifier(workers=workers) as verifier:
        t1 = time.perf_counter()
        results = verifier.verify_many(pairs)
        t2 = time.perf_counter()
    return len(pairs) / (t2 - t1), t1 - t0, results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    ap.add_argument("--repeat", type=int, default=3, help="runs per setting (the best is reported)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    ap.add_argument("--no-calibrate", action="store_true", help="skip the CPU-burn reference measurement")
    args = ap.parse_args(argv)
    if not (args.data / "math500" / "test.jsonl").is_file():
        print(f"data not found under {args.data}", file=sys.stderr)
        return 2

    gsm, labels = gsm8k_pairs(args.data)
    sets = {"gsm8k example_model_solutions": gsm, "math500": math500_pairs(args.data)}
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"cpus available: {cpus}; load average before: {os.getloadavg()[0]:.2f}")
    if not args.no_calibrate:
        print(f"reference: pure-Python CPU work, 2 processes vs 1: {calibrate():.2f}x")
    for name, pairs in sets.items():
        rates: dict[int, float] = dict.fromkeys(args.workers, 0.0)
        startups: dict[int, float] = dict.fromkeys(args.workers, 0.0)
        outcomes: dict[int, list] = {}
        for _ in range(args.repeat):  # interleaved, so that a burst of other load hits both settings
            for workers in args.workers:
                rate, startup, outcomes[workers] = measure(pairs, workers)
                rates[workers] = max(rates[workers], rate)
                startups[workers] += startup / args.repeat
        for workers in args.workers:
            rate, startup, results = rates[workers], startups[workers], outcomes[workers]
            statuses: dict[str, int] = {}
            for r in results:
                statuses[r.status] = statuses.get(r.status, 0) + 1
            print(f"{name:32s} {len(pairs):5d} pairs  workers={workers}  {rate:8.1f} pairs/s  "
                  f"(start-up {startup:.2f} s)  {statuses}")
            if pairs is gsm:
                agree = sum(r.is_correct == lab for r, lab in zip(results, labels, strict=True))
                print(f"{'':32s} agreement with is_correct: {agree}/{len(labels)} = {agree / len(labels):.2%}")
        if 1 in rates and len(rates) > 1:
            for workers, rate in rates.items():
                if workers != 1:
                    print(f"{name:32s} speed-up {workers} vs 1 workers: {rate / rates[1]:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f} (other processes running distort the numbers)")
    if not args.no_calibrate:
        print(f"reference again: pure-Python CPU work, 2 processes vs 1: {calibrate():.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
