"""Benchmark: how often the graders agree with each other and with human/known labels.

Two graders, each with its harness's extraction (``cftdata eval --harness ... --grader ...``):

* ``paper``: the CFT authors' harness re-implemented (:mod:`cftdata.verify.paper`: their extraction order,
  normalisation, reference answers and lenient ``math_equal``);
* ``math-verify``: cftdata's default grader, with cftdata's extraction (``auto`` rule: last ``\\boxed{}``, "the
  answer is", ``####``, ``A:`` lines; the ``cftdata`` eval harness uses ``boxed`` alone, which finds nothing in
  these GSM8K solutions, so ``auto`` is the fair reading here);

plus the two crossings (paper extraction + math-verify, cftdata extraction + paper comparison), on the real
public data in ``../shared/data``:

* ``gsm8k``: every solution of gsm8k/example_model_solutions.jsonl (4 models x 1,319 problems) against the
  GSM8K reference, with its ``is_correct`` label (written by the data set's authors);
* ``math500``: MATH-500's own reference solutions against their references (label: correct), and each
  solution against the *next* problem's reference (label: wrong), 1,000 pairs.

For each data set it prints, per grader, accuracy against the labels, false positives / false negatives,
and the agreement between the two graders (same verdict on the same item). Usage::

    python benchmarks/grader_agreement.py [--data ../shared/data] [--limit N] [--workers 2] [--json out.json]

This is a script, not a test; it prints numbers (about two minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cftdata.benchmarks import BENCHMARKS
from cftdata.verify import paper
from cftdata.verify.extract import extract_answer
from cftdata.verify.graders import GRADERS
from cftdata.verify.pool import Verifier

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
GSM8K_MODELS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def gsm8k_items(data: Path, limit: int | None) -> list[dict]:
    """(benchmark row, solution text, label) for every (problem, model) of the GSM8K example solutions."""
    tests = [json.loads(line) for line in (data / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    items = []
    with open(data / "gsm8k" / "example_model_solutions.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if limit is not None and i >= limit:
                break
            row = json.loads(line)
            ref = tests[i]
            assert ref["question"] == row["question"], f"row {i}: example solutions and test.jsonl differ in order"
            for m in GSM8K_MODELS:
                items.append({"row": ref, "solution": row[m]["solution"], "label": bool(row[m]["is_correct"])})
    return items


def math500_items(data: Path, limit: int | None) -> list[dict]:
    rows = [json.loads(line) for line in (data / "math500" / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = rows[:limit] if limit else rows
    same = [{"row": r, "solution": r["solution"], "label": True} for r in rows]
    shifted = [{"row": r, "solution": rows[(i + 1) % len(rows)]["solution"], "label": False}
               for i, r in enumerate(rows)]
    return same + shifted


def readings(bench: str, items: list[dict]) -> dict[str, list[tuple[str | None, str | None]]]:
    """(gold, pred) pairs under the two extractions."""
    b = BENCHMARKS.get(bench)
    paper_pairs = [(paper.reference_answer(bench, it["row"]), paper.extract_answer(it["solution"], bench))
                   for it in items]
    cft_pairs = [(b.gold(it["row"]), extract_answer(it["solution"], "auto")) for it in items]
    return {"paper": paper_pairs, "cftdata": cft_pairs}


def run(pairs: list[tuple[str | None, str | None]], grader: str, workers: int) -> tuple[list[bool], float]:
    g = GRADERS.get(grader)
    with Verifier(workers=workers, timeout_s=g.timeout_s, max_chars=g.max_chars, check=g.check) as v:
        started = time.perf_counter()
        res = v.verify_many(pairs)
        return [r.status == "correct" for r in res], time.perf_counter() - started


def score(verdicts: list[bool], labels: list[bool]) -> dict:
    n = len(labels)
    agree = sum(v == lab for v, lab in zip(verdicts, labels, strict=True))
    fp = sum(v and not lab for v, lab in zip(verdicts, labels, strict=True))
    fn = sum(lab and not v for v, lab in zip(verdicts, labels, strict=True))
    return {"n": n, "agreement_with_labels_pct": round(100 * agree / n, 2), "false_positives": fp,
            "false_negatives": fn, "graded_correct": sum(verdicts), "labelled_correct": sum(labels)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, help="only the first N problems of each data set")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    out: dict = {}
    for bench, items in (("gsm8k", gsm8k_items(args.data, args.limit)), ("math500", math500_items(args.data, args.limit))):
        labels = [it["label"] for it in items]
        pairs = readings(bench, items)
        combos = {
            "paper (paper extraction + paper math_equal)": ("paper", "paper"),
            "math-verify (cftdata auto extraction + math-verify)": ("cftdata", "math-verify"),
            "paper extraction + math-verify": ("paper", "math-verify"),
            "cftdata auto extraction + paper math_equal": ("cftdata", "paper"),
            "qwen25-math (paper extraction + upstream math_equal)": ("paper", "qwen25-math"),
        }
        verdicts, res = {}, {}
        for name, (reading, grader) in combos.items():
            verdicts[name], seconds = run(pairs[reading], grader, args.workers)
            res[name] = {**score(verdicts[name], labels), "seconds": round(seconds, 1)}
        names = list(combos)
        a, b = verdicts[names[0]], verdicts[names[1]]
        both = sum(x == y for x, y in zip(a, b, strict=True))
        res["agreement paper vs math-verify (full harnesses)"] = {
            "same_verdict_pct": round(100 * both / len(a), 2), "paper_only_correct": sum(x and not y for x, y in zip(a, b, strict=True)),
            "math_verify_only_correct": sum(y and not x for x, y in zip(a, b, strict=True))}
        a2 = verdicts["paper extraction + math-verify"]
        res["agreement paper vs math-verify (same paper extraction)"] = {
            "same_verdict_pct": round(100 * sum(x == y for x, y in zip(a, a2, strict=True)) / len(a), 2)}
        out[bench] = res
        print(f"\n== {bench}: {len(items)} items ({sum(labels)} labelled correct)")
        for name, r in res.items():
            print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in r.items()))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
