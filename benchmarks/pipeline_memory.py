"""Bounded memory: the non-LLM stages (load, verify, dedup, select, format, write) over N synthetic rows.

Synthetic rows follow NuminaMath-CoT's shape (problem, solution ending in a boxed answer, an answer column)
plus an existing critique, so the build runs with `teacher.backend: existing` and no model. Each size runs
in a fresh subprocess; the script prints wall time, rows/s, the build process's peak RSS, the verify
workers' peak RSS, and the dedup index size (reported separately, since it grows with the corpus by design).

    python benchmarks/pipeline_memory.py --rows 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

WORDS = ["triangle", "circle", "integer", "prime", "sum", "product", "area", "angle", "length", "polynomial", "root", "digit", "fraction", "ratio", "probability", "sequence", "term", "function", "value", "equation", "square", "cube", "number", "rectangle", "perimeter"]


def make_corpus(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    writer = None
    for start in range(0, n, 50_000):
        rows = []
        for i in range(start, min(n, start + 50_000)):
            a, b = rng.randint(2, 999), rng.randint(2, 999)
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 40)))
            ans = a * b if i % 3 else a + b
            rows.append({
                "problem": f"Problem {i}: {words}. Compute {a} times {b}.",
                "solution": f"We multiply: {a} x {b} = {ans}. " + words + f" So the answer is $\\boxed{{{ans}}}$.",
                "answer": str(a * b),
                "critique": words * rng.randint(1, 4) + ("\nConclusion: right [END]" if i % 3 else "\nConclusion: wrong [END]"),
            })
        t = pa.Table.from_pylist(rows)
        writer = writer or pq.ParquetWriter(path, t.schema)
        writer.write_table(t)
    writer.close()


CHILD = r"""
import json, resource, sys, time
from cftdata.pipeline import build
from cftdata.recipe import validate_recipe
recipe = validate_recipe(json.loads(sys.argv[1]))
t0 = time.time()
res = build(recipe)
print(json.dumps({"seconds": time.time() - t0, "rows_out": res.rows, "rejected": res.rejected,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "dedup": res.manifest["stages"].get("dedup", {}),
                  "phases": res.manifest["peak_rss_mb_after"],
                  "verify": res.manifest["stages"].get("verify", {})}))
"""


def run(n: int, workdir: Path, shard: int, dedup: bool = True) -> dict:
    src = workdir / f"corpus-{n}.parquet"
    if not src.exists():
        make_corpus(src, n)
    recipe = {"name": f"mem-{n}", "source": {"path": str(src), "corpus": "generic", "question": "problem",
                                             "response": "solution", "answer": "answer"},
              "respond": {"mode": "existing"}, "teacher": {"backend": "existing", "model": "synthetic"},
              "verify": {"answer_rule": "boxed", "workers": 2}, **({"dedup": {}} if dedup else {}),
              "select": {"strategy": "random", "n": n // 2},
              "output": {"dir": str(workdir / f"out-{n}"), "rows_per_file": 100_000},
              "run": {"shard_size": shard}, "cache": {"enabled": False}}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(recipe)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--shard-size", type=int, default=5000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--no-dedup", action="store_true", help="leave the dedup stage out (its index grows by design)")
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cftdata-mem-"))
    results = {}
    for n in args.rows:
        t0 = time.time()
        r = run(n, workdir, args.shard_size, dedup=not args.no_dedup)
        d = r["dedup"]
        results[n] = r
        print(f"{n:>9,} rows: {r['seconds']:8.1f} s build ({n / r['seconds']:,.0f} rows/s), "
              f"peak RSS {r['peak_rss_mb']:,.0f} MB (verify workers {r['workers_peak_rss_mb']:,.0f} MB), "
              f"dedup index {json.dumps({k: v for k, v in d.items() if 'byte' in k or 'mb' in k.lower()})}, "
              f"out {r['rows_out']:,}, rejected {r['rejected']:,}, peak RSS after each phase {r['phases']} "
              f"[total {time.time() - t0:.0f} s]", flush=True)
    if len(results) >= 2:
        small, big = min(results), max(results)
        ratio = results[big]["peak_rss_mb"] / results[small]["peak_rss_mb"]
        what = "without dedup" if args.no_dedup else "dedup index included"
        print(f"peak RSS ratio {big:,} / {small:,} rows: {ratio:.2f} (target <= 1.5, {what})")
    print(f"self RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; work dir {workdir}")


if __name__ == "__main__":
    main()
