"""Throughput and memory of streaming exact + near dedup on synthetic math-like questions.

    python benchmarks/dedup_speed.py --rows 1000000

Generates questions shard by shard (so the generator never holds the corpus), plants a known
fraction of exact duplicates (case/whitespace/punctuation variants of an earlier question, which
normalization must see through) and near duplicates (one word replaced in an earlier question of
at least 40 words), feeds the shards to :class:`cftdata.quality.dedup.Deduplicator`, and prints
rows/second, peak RSS (``resource.getrusage``), index size, and planted vs found duplicates.
Generation time is excluded from the dedup rate; peak RSS covers the whole process.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

from cftdata.quality.dedup import Deduplicator
from cftdata.quality.normalize import word_tokens


def shingle_jaccard(a: str, b: str, n: int) -> float:
    """True Jaccard similarity of the word n-gram sets of two texts (what MinHash estimates)."""
    ta, tb = word_tokens(a), word_tokens(b)
    sa = {tuple(ta[i : i + n]) for i in range(max(1, len(ta) - n + 1))}
    sb = {tuple(tb[i : i + n]) for i in range(max(1, len(tb) - n + 1))}
    return len(sa & sb) / len(sa | sb)


_MATH_TEXT = (
    "find compute determine evaluate prove show solve simplify let suppose given if then what is the "
    "value of a an sum product integer integers positive negative real number numbers prime primes "
    "divisor divisors remainder when divided by function polynomial root roots equation equations "
    "triangle circle square rectangle area perimeter radius diameter angle angles degrees side sides "
    "length width height volume probability random chosen uniformly expected largest smallest least "
    "greatest how many ways distinct ordered pairs such that satisfies sequence series term terms "
    "first last arithmetic geometric ratio difference matrix vector determinant derivative integral "
    "limit maximum minimum interval domain range point points line lines slope intercept parabola "
    "graph coordinate coordinates plane and or with for in on at to from each every all some no not "
    "are be has have train speed hours miles minutes cost dollars price percent apples books students "
    "class school store sells buys costs per day week year total average mean median mode"
)
_MATH_WORDS = _MATH_TEXT.split()
_LATEX = ["$x^{2}$", "$\\frac{1}{2}$", "$n!$", "$\\sqrt{x}$", "$a_{n}$", "$f(x)$", "$\\pi r^2$", "$x+y=10$"]


def _vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    syll = ["ka", "lo", "mi", "ter", "vex", "qua", "dri", "nom", "sel", "pha", "zu", "ron", "ti", "gel"]
    words = list(_MATH_WORDS)
    while len(words) < size:
        k = int(rng.integers(2, 4))
        words.append("".join(syll[i] for i in rng.integers(0, len(syll), k)))
    return list(dict.fromkeys(words))[:size]


class Generator:
    """Synthetic questions with planted duplicates; remembers a window of recent texts to copy."""

    def __init__(
        self, seed: int, exact_frac: float, near_frac: float, shingle: int = 5, window: int = 100_000
    ) -> None:
        self.shingle = shingle
        self.rng = np.random.default_rng(seed)
        self.vocab = np.array(_vocabulary(6000, self.rng), dtype=object)
        ranks = np.arange(1, len(self.vocab) + 1)
        self.p = (1.0 / ranks**1.1) / (1.0 / ranks**1.1).sum()
        self.numbers = np.array([str(i) for i in range(1, 10_000)], dtype=object)
        self.exact_frac, self.near_frac = exact_frac, near_frac
        self.window = window
        self.recent: list[str] = []  # ring buffer of earlier texts
        self.recent_ids: list[str] = []
        self.next_id = 0

    def _fresh(self, count: int) -> list[str]:
        lengths = self.rng.integers(25, 100, count)
        words = self.vocab[self.rng.choice(len(self.vocab), int(lengths.sum()), p=self.p)]
        # ~12% numbers, ~3% LaTeX fragments.
        kind = self.rng.random(len(words))
        nums = self.numbers[self.rng.integers(0, len(self.numbers), len(words))]
        words = np.where(kind < 0.12, nums, words)
        latex = np.array(_LATEX, dtype=object)[self.rng.integers(0, len(_LATEX), len(words))]
        words = np.where((kind >= 0.12) & (kind < 0.15), latex, words)
        out, pos = [], 0
        for n in lengths:
            out.append(" ".join(words[pos : pos + n]).capitalize() + "?")
            pos += n
        return out

    def shard(self, count: int) -> tuple[list[str], list[str], dict[str, tuple[str, str, float]]]:
        """ids, texts and the planted duplicates {id: (kind, source id, true Jaccard)} of one shard."""
        fresh = iter(self._fresh(count))
        ids, texts, planted = [], [], {}
        draws = self.rng.random(count)
        for d in draws:
            rid = f"q{self.next_id:09d}"
            self.next_id += 1
            text = None
            if self.recent and d < self.exact_frac + self.near_frac:
                j = int(self.rng.integers(0, len(self.recent)))
                src, src_id = self.recent[j], self.recent_ids[j]
                if d < self.exact_frac:
                    variant = int(self.rng.integers(0, 3))
                    text = [src.upper(), "  " + src.replace(" ", "   ") + " ", src.rstrip("?") + " ."][
                        variant
                    ]
                    planted[rid] = ("exact", src_id, 1.0)
                else:
                    words = src.split(" ")
                    if len(words) >= 40:
                        k = int(self.rng.integers(0, len(words)))
                        words[k] = "zzq" + str(int(self.rng.integers(0, 10**6)))
                        text = " ".join(words)
                        planted[rid] = ("near", src_id, shingle_jaccard(src, text, self.shingle))
            if text is None:
                text = next(fresh)
            ids.append(rid)
            texts.append(text)
            if len(self.recent) < self.window:
                self.recent.append(text)
                self.recent_ids.append(rid)
            else:
                j = int(self.rng.integers(0, self.window))
                self.recent[j], self.recent_ids[j] = text, rid
        return ids, texts, planted


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--shard", type=int, default=20_000, help="rows per check() call")
    ap.add_argument("--exact-frac", type=float, default=0.10)
    ap.add_argument("--near-frac", type=float, default=0.10)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--shingle", type=int, default=5)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument(
        "--transitive", action="store_true", help="also index near-duplicates (catches edit chains)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    args = ap.parse_args(argv)

    gen = Generator(args.seed, args.exact_frac, args.near_frac, args.shingle)
    dedup = Deduplicator(
        num_perm=args.num_perm,
        shingle=args.shingle,
        threshold=args.threshold,
        verify=not args.no_verify,
        transitive=args.transitive,
        threads=args.threads,
    )
    t_dedup = t_gen = 0.0
    # Near duplicates split by whether their true Jaccard reaches the threshold.
    found = {"exact": 0, "near_above": 0, "near_below": 0}
    planted_n = {"exact": 0, "near_above": 0, "near_below": 0}
    wrong_target = 0
    unplanted_flagged = 0
    done = 0
    t_start = time.perf_counter()
    while done < args.rows:
        count = min(args.shard, args.rows - done)
        t0 = time.perf_counter()
        ids, texts, planted = gen.shard(count)
        t1 = time.perf_counter()
        verdicts = dedup.check(ids, texts)
        t2 = time.perf_counter()
        t_gen += t1 - t0
        t_dedup += t2 - t1
        for rid, dup_of in zip(ids, verdicts, strict=True):
            p = planted.get(rid)
            if p is not None:
                kind = p[0] if p[0] == "exact" else ("near_above" if p[2] >= args.threshold else "near_below")
                planted_n[kind] += 1
                if dup_of is not None:
                    found[kind] += 1
            elif dup_of is not None:
                unplanted_flagged += 1
        wrong_target += sum(
            1
            for rid, dup_of in zip(ids, verdicts, strict=True)
            if dup_of is not None and rid in planted and dup_of > rid
        )
        done += count
        if not args.json:
            print(
                f"  {done:>9,} rows  {done / t_dedup:>8,.0f} rows/s  rss {_peak_rss_mb():,.0f} MB", flush=True
            )
    stats = dedup.stats()
    dedup.close()
    report = {
        "rows": args.rows,
        "shard": args.shard,
        "dedup_seconds": round(t_dedup, 1),
        "generate_seconds": round(t_gen, 1),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "rows_per_second": round(args.rows / t_dedup),
        "peak_rss_mb": round(_peak_rss_mb()),
        "index_mb": stats["index_mb"],
        "bands_x_rows": f"{stats['bands']}x{stats['rows_per_band']}",
        "planted_exact": planted_n["exact"],
        "found_exact": found["exact"],
        "planted_near_jaccard_ge_threshold": planted_n["near_above"],
        "found_near_jaccard_ge_threshold": found["near_above"],
        "planted_near_jaccard_lt_threshold": planted_n["near_below"],
        "found_near_jaccard_lt_threshold": found["near_below"],
        "flagged_unplanted": unplanted_flagged,
        "pointed_forward": wrong_target,
        "stats": stats,
    }
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            if k != "stats":
                print(f"{k:>20}: {v}")
        print(f"{'stats':>20}: {json.dumps(stats)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
