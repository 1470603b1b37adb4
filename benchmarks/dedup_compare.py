"""Side by side: cftdata's Deduplicator vs rensa and datasketch on the same corpus, in one run.

    pip install -e '.[bench]'        # rensa==0.5.0, datasketch==2.0.0
    python benchmarks/dedup_compare.py --rows 200000 --seed 7 [--contenders cftdata rensa ...]

The corpus (``dedup_corpus.py``: GSM8K/MATH-style questions recombined from the real questions in
``../shared/data``, about 15 % light edits of an earlier row) is generated once from ``--seed`` and
written to a temporary file; each contender then runs in its own fresh process, so peak RSS
(``ru_maxrss``) is its own: Python, its imports, the corpus as a list of strings (the same for
all) and its index. Rows/s count only the dedup calls, fed in ``--shard``-row shards in input
order, first occurrence kept, 128 permutations, threshold 0.8.

Quality is measured against the **true** Jaccard similarity of word 5-gram sets
(:func:`dedup_corpus.shingle_set` on cftdata's ``word_tokens``):

* ``recall_j>=x``: fraction of planted edits whose true Jaccard with their source is >= x
  that were dropped;
* ``extra_drops``: dropped rows with no earlier row at true Jaccard >= 0.6 (false drops), and
  their share of all drops.

Contenders (``--contenders``; default: all):

* ``cftdata``: ``Deduplicator()`` with its defaults, ``check(ids, texts)`` per shard;
* ``cftdata-rensa-kernel``: the same, with the MinHash signatures computed by rensa's native
  ``RMinHash.digest_matrix_from_flat_token_hashes`` (read back with ``to_rows``) instead of the
  numpy kernel: the kernel choice of docs/dedup.md;
* ``rensa``: rensa 0.5.0 ``RMinHashDeduplicator(threshold=0.8, num_perm=128, use_lsh=True)``,
  ``add(key, RMinHash)`` per row, the minhash updated with the row's word 5-grams of
  ``text.lower().split()`` (how rensa's README feeds it);
* ``rensa-cftdata-tokens``: the same, fed the 5-grams of cftdata's normalized tokens
  (``word_tokens``, per row, as issue 18 measured it);
* ``rensa-tuned``: ``rensa`` with ``threshold=0.7`` for recall (its candidates are kept when their
  estimated Jaccard reaches the threshold, so a pair at true Jaccard 0.8 passes half the time at 0.8);
* ``datasketch``: datasketch 2.0.0 ``MinHashLSH(threshold=0.8, num_perm=128)``, query then insert
  per row, ``MinHash.update_batch`` with the same lower/split 5-grams;
* ``datasketch-tuned``: the same with ``weights=(0.1, 0.9)`` (bands chosen for recall).

Numbers depend on the machine and on what else runs: the script prints the load average before
and after. Run it on a quiet machine for numbers to quote.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dedup_corpus import DEFAULT_DATA, Corpus, Generator, extra_drops, recall_table  # noqa: E402

CONTENDERS = (
    "cftdata",
    "cftdata-rensa-kernel",
    "rensa",
    "rensa-cftdata-tokens",
    "rensa-tuned",
    "datasketch",
    "datasketch-tuned",
)
KEPT, DROPPED_UNKNOWN = -1, -2


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def _plain_shingles(text: str, n: int = 5) -> list[str]:
    words = text.lower().split()
    if len(words) < n:
        return [" ".join(words)]
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def _cftdata_shingles(text: str, n: int = 5) -> list[str]:
    from cftdata.quality.normalize import word_tokens

    words = word_tokens(text)
    if len(words) < n:
        return [" ".join(words)]
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


# --- contenders: each returns dup_of (index of the row matched, KEPT, or DROPPED_UNKNOWN) ---------------


def run_cftdata(texts: list[str], shard: int, rensa_kernel: bool = False) -> np.ndarray:
    from cftdata.quality.dedup import Deduplicator

    if rensa_kernel:
        _use_rensa_kernel()
    ids = [f"q{i:08d}" for i in range(len(texts))]
    dedup = Deduplicator()
    out = np.full(len(texts), KEPT, dtype=np.int64)
    for lo in range(0, len(texts), shard):
        verdicts = dedup.check(ids[lo : lo + shard], texts[lo : lo + shard])
        for i, v in enumerate(verdicts):
            if v is not None:
                out[lo + i] = int(v[1:])
    dedup.close()
    return out


def _use_rensa_kernel() -> None:
    """Swap the numpy MinHash kernel for rensa's native one (same layout: (num_perm, rows) uint32)."""
    import rensa

    import cftdata.quality.dedup as dedup_module

    def rensa_signatures(values, offsets, perm, pool=None, threads=1):  # noqa: ANN001, ANN202
        matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
            values.astype(np.uint64), offsets.astype(np.uint64), len(perm), 42
        )
        return np.array(matrix.to_rows(), dtype=np.uint32).T.copy()

    dedup_module.signatures = rensa_signatures


def run_rensa(
    texts: list[str], shard: int, tokens: Callable[[str], list[str]], threshold: float = 0.8
) -> np.ndarray:
    from rensa import RMinHash, RMinHashDeduplicator

    dedup = RMinHashDeduplicator(threshold=threshold, num_perm=128, use_lsh=True)
    out = np.full(len(texts), KEPT, dtype=np.int64)
    for i, text in enumerate(texts):
        m = RMinHash(num_perm=128, seed=42)
        m.update(tokens(text))
        if not dedup.add(f"q{i:08d}", m):
            out[i] = DROPPED_UNKNOWN
    return out


def run_datasketch(texts: list[str], shard: int, weights: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=0.8, num_perm=128, weights=weights)
    out = np.full(len(texts), KEPT, dtype=np.int64)
    for i, text in enumerate(texts):
        m = MinHash(num_perm=128)
        m.update_batch([s.encode("utf-8") for s in _plain_shingles(text)])
        hits = lsh.query(m)
        if hits:
            out[i] = min(hits)
        else:
            lsh.insert(i, m)
    return out


def child(name: str, corpus_file: str, shard: int, result_file: str) -> None:
    """Run one contender on the corpus file; write dup_of (.npy) and a JSON line of timings."""
    texts = json.loads(Path(corpus_file).read_text(encoding="utf-8"))
    rss_before = _peak_rss_mb()
    c0 = time.process_time()
    t0 = time.perf_counter()
    if name == "cftdata":
        dup_of = run_cftdata(texts, shard)
    elif name == "cftdata-rensa-kernel":
        dup_of = run_cftdata(texts, shard, rensa_kernel=True)
    elif name == "rensa":
        dup_of = run_rensa(texts, shard, _plain_shingles)
    elif name == "rensa-cftdata-tokens":
        dup_of = run_rensa(texts, shard, _cftdata_shingles)
    elif name == "rensa-tuned":
        dup_of = run_rensa(texts, shard, _plain_shingles, threshold=0.7)
    elif name == "datasketch":
        dup_of = run_datasketch(texts, shard)
    elif name == "datasketch-tuned":
        dup_of = run_datasketch(texts, shard, weights=(0.1, 0.9))
    else:
        raise SystemExit(f"unknown contender {name}")
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    np.save(result_file, dup_of)
    stats = {
        "seconds": seconds,
        "rows_per_s": len(texts) / seconds,
        "cpu_seconds": cpu,
        "rows_per_cpu_s": len(texts) / cpu,
        "peak_rss_mb": _peak_rss_mb(),
    }
    stats["rss_after_load_mb"] = rss_before
    print(json.dumps(stats))


def evaluate(corpus: Corpus, dup_of: np.ndarray) -> dict[str, float | int]:
    dropped = dup_of != KEPT
    out: dict[str, float | int] = {"drops": int(dropped.sum())}
    out.update(recall_table(corpus, dropped))
    targets = [None if d == KEPT else (None if d == DROPPED_UNKNOWN else int(d)) for d in dup_of.tolist()]
    bad = extra_drops(corpus, dropped, targets)
    out["extra_drops"] = bad
    out["extra_drop_share"] = round(bad / max(1, int(dropped.sum())), 5)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--shard", type=int, default=50_000, help="rows per Deduplicator.check call")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed (acceptance: one you did not develop with)")
    ap.add_argument("--edit-frac", type=float, default=0.15)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    ap.add_argument("--child", nargs=4, metavar=("NAME", "CORPUS", "SHARD", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        name, corpus_file, shard, out = args.child
        child(name, corpus_file, int(shard), out)
        return 0

    t0 = time.perf_counter()
    corpus = Generator(args.seed, args.data).corpus(args.rows, args.edit_frac)
    gen_s = time.perf_counter() - t0
    load_before = os.getloadavg()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus_file = Path(tmp) / "corpus.json"
        corpus_file.write_text(json.dumps(corpus.texts), encoding="utf-8")
        for name in args.contenders:
            out = Path(tmp) / f"{name}.npy"
            proc = subprocess.run(
                [sys.executable, __file__, "--child", name, str(corpus_file), str(args.shard), str(out)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                results[name] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
                continue
            stats = json.loads(proc.stdout.strip().splitlines()[-1])
            stats.update(evaluate(corpus, np.load(out)))
            results[name] = stats
    report = {
        "rows": args.rows,
        "seed": args.seed,
        "shard": args.shard,
        "planted_edits": len(corpus.planted),
        "generate_seconds": round(gen_s, 1),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }
    base = results.get("cftdata", {}).get("rows_per_s")
    for name, r in results.items():
        if base and "rows_per_s" in r and name != "cftdata":
            r["cftdata_speedup"] = round(base / r["rows_per_s"], 2)
            r["cftdata_cpu_ratio"] = round(results["cftdata"]["rows_per_cpu_s"] / r["rows_per_cpu_s"], 2)
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"{args.rows:,} rows, seed {args.seed}, {len(corpus.planted):,} planted edits, shards of {args.shard:,}; "
        f"load average {report['load_average_before']} -> {report['load_average_after']} on {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| contender | rows/s | rows per CPU-second | peak RSS MB (after loading the corpus) "
        "| recall J>=0.8 | J>=0.85 | J>=0.9 | drops | extra drops |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | error: {r['error']} | | | | | | | |")
            continue
        print(
            f"| {name} | {r['rows_per_s']:,.0f} | {r['rows_per_cpu_s']:,.0f} | "
            f"{r['peak_rss_mb']:,.0f} ({r['rss_after_load_mb']:,.0f}) | "
            f"{r['recall_j>=0.8']:.3f} | "
            f"{r['recall_j>=0.85']:.3f} | {r['recall_j>=0.9']:.3f} | {r['drops']:,} | "
            f"{r['extra_drops']:,} ({100 * r['extra_drop_share']:.2f} %) |"
        )
    if base:
        print()
        for name, r in results.items():
            if "cftdata_speedup" in r:
                print(
                    f"cftdata rows/s / {name} rows/s = {r['cftdata_speedup']:.2f} "
                    f"(per CPU-second: {r['cftdata_cpu_ratio']:.2f})"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
