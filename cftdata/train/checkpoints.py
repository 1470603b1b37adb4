"""Checkpoint selection: evaluate every ``checkpoint-*`` of a run on a validation set and link the best.

The CFT authors pick the checkpoint with the best MATH-500 accuracy (greedy), and say it is usually
mid-training, not the last. MATH-500 is also a reported test set (the paper's validation table), so a
score chosen on it is optimistic; One-Shot CFT chose on 500 held-out problems instead. The selection set
is either a benchmark (default ``math500``) or a seeded slice of a source that is not a reported benchmark
(``EvalSettings(benchmarks=["math_train"], sample=500, seed=0)``: 500 problems of the MATH train split);
the record says which (``selection_set``). :func:`select_checkpoint` evaluates each checkpoint with
:func:`cftdata.train.evaluate.evaluate_model`, caches each score in
``checkpoint-N/cftdata_eval_<set>.json`` (a rerun after adding checkpoints evaluates only the new
ones; changed settings re-evaluate), writes the table to ``RUN_DIR/checkpoint_selection.json``, points
the symlink ``RUN_DIR/best`` at the winner and writes ``RUN_DIR/best.json``.

Ties go to the earliest checkpoint (fewest steps). Generations go through the model layer's request cache
(an interrupted selection reruns only what it had not generated; a checkpoint folder written again is a new
model, see :func:`cftdata.backends.models.model_fingerprint`). A backend whose engine keeps its memory
after closing (``process_per_model``: vLLM) evaluates each checkpoint in a fresh process, by calling
:func:`~cftdata.train.evaluate.evaluate_model` there.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from cftdata.errors import CftdataError

__all__ = ["choose_best", "format_selection", "link_best", "list_checkpoints", "select_checkpoint", "selection_set"]


def _step(p: Path) -> int:
    return int(p.name.rsplit("-", 1)[-1])


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """``checkpoint-<step>`` folders of a run, by step.

    Raises:
        cftdata.errors.CftdataError: not a folder, or no checkpoints in it.
    """
    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise CftdataError(f"{run} is not a folder (expected a training run with checkpoint-* folders).")
    cps = [p for p in run.iterdir() if p.is_dir() and p.name.startswith("checkpoint-")
           and p.name.rsplit("-", 1)[-1].isdigit() and not p.is_symlink()]
    if not cps:
        raise CftdataError(f"{run} has no checkpoint-* folders.")
    return sorted(cps, key=_step)


def choose_best(scores: Sequence[tuple[str, int, float]]) -> int:
    """Index of the best ``(name, step, accuracy)``: highest accuracy, ties to the earliest step."""
    if not scores:
        raise ValueError("no scores")
    return min(range(len(scores)), key=lambda i: (-scores[i][2], scores[i][1]))


def link_best(run_dir: Path, checkpoint: Path) -> Path:
    """Point ``run_dir/best`` at ``checkpoint`` (a relative symlink, replaced atomically)."""
    link = run_dir / "best"
    if link.exists() and not link.is_symlink():
        raise CftdataError(f"{link} exists and is not a symlink; move it away so that it can point at the best "
                           "checkpoint.")
    tmp = run_dir / f".best.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(checkpoint.name, target_is_directory=True)
    os.replace(tmp, link)
    return link


def selection_set(settings: Any) -> dict[str, Any]:
    """What the checkpoints are scored on: the benchmark, the slice, and whether it is a reported test set."""
    from cftdata.benchmarks import BENCHMARKS

    bench = BENCHMARKS.get(settings.benchmarks[0])
    slice_ = f"a seeded {settings.sample} of {bench.size:,} (seed {settings.seed})" if settings.sample else (
        f"the first {settings.limit}" if settings.limit else f"all {bench.size:,}")
    reported = "a reported test set" if bench.reported else "not a reported benchmark"
    tag = bench.name + (f"-s{settings.sample}-seed{settings.seed}" if settings.sample else "")
    return {"benchmark": bench.name, "title": bench.title, "sample": settings.sample, "seed": settings.seed,
            "limit": settings.limit, "reported": bench.reported, "tag": tag,
            "description": f"{bench.title} ({bench.name}), {slice_} problems; {reported}"}


def _evaluate_in_fresh_process(checkpoint: Path, settings: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`~cftdata.train.evaluate.evaluate_model` in a new (spawned) process, which exits afterwards and so
    gives back every byte of GPU memory the engine held."""
    from cftdata.train.evaluate import evaluate_model

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(evaluate_model, str(checkpoint), settings, **kwargs).result()


def select_checkpoint(
    run_dir: str | Path,
    settings: Any,
    *,
    output: str | Path | None = None,
    reevaluate: bool = False,
    backend_options: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    evaluate: Callable[[Path], dict[str, Any]] | None = None,
    echo: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Evaluate every checkpoint of a run on one selection set, link the best, write the table.

    Args:
        run_dir: A training output folder with ``checkpoint-*`` folders.
        settings: :class:`cftdata.train.evaluate.EvalSettings` with exactly one benchmark (and ``sample`` for a
            seeded slice of it).
        output: Where the table goes (default ``run_dir/checkpoint_selection.json``).
        reevaluate: Ignore cached per-checkpoint results.
        backend_options: The backend's ``options`` (see ``cftdata eval --option``).
        cache_dir, use_cache: The request cache (see :func:`~cftdata.train.evaluate.evaluate_model`).
        evaluate: ``checkpoint -> result record`` (default: the real evaluation); for tests and reuse.
        echo: Progress lines.

    Returns:
        The selection record (also written to ``output``).
    """
    from cftdata.backends import BACKENDS, resolve_backend
    from cftdata.train.evaluate import evaluate_model, load_problems

    run = Path(run_dir).expanduser().resolve()
    checkpoints = list_checkpoints(run)
    if len(settings.benchmarks) != 1:
        raise CftdataError("select-checkpoint scores on exactly one benchmark (default math500).")
    bench = settings.benchmarks[0]
    chosen = selection_set(settings)
    echo(f"selection set: {chosen['description']}")
    key = settings.key()
    problems = None
    rows: list[dict[str, Any]] = []
    for cp in checkpoints:
        cache = cp / f"cftdata_eval_{chosen['tag']}.json"
        result = None
        if cache.is_file() and not reevaluate:
            cached = json.loads(cache.read_text(encoding="utf-8"))
            if cached.get("settings") == key:
                result = cached
                echo(f"{cp.name}: cached ({cached['benchmarks'][bench]['accuracy']:.1f}%)")
        if result is None:
            echo(f"{cp.name}: evaluating on {chosen['tag']}" + (f" (first {settings.limit})" if settings.limit else ""))
            if evaluate is not None:
                result = evaluate(cp)
            else:
                if problems is None:
                    problems = {bench: load_problems(bench, settings.data_dir, settings.limit, settings.sample,
                                                     settings.seed)}
                kwargs = dict(problems=problems, samples_path=cp / f"cftdata_eval_{chosen['tag']}.samples.jsonl",
                              backend_options=backend_options, cache_dir=cache_dir, use_cache=use_cache)
                if BACKENDS.get(resolve_backend(str(cp), settings.backend)).process_per_model:
                    result = _evaluate_in_fresh_process(cp, settings, **kwargs)
                else:
                    result = evaluate_model(str(cp), settings, **kwargs)
            result["settings"] = key
            cache.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
            echo(f"{cp.name}: {result['benchmarks'][bench]['accuracy']:.1f}%")
        b = result["benchmarks"][bench]
        rows.append({"checkpoint": cp.name, "step": _step(cp), "accuracy": b["accuracy"], "correct": b["correct"],
                     "n": b["n"]})
    best_i = choose_best([(r["checkpoint"], r["step"], r["accuracy"]) for r in rows])
    best = rows[best_i]
    link = link_best(run, run / best["checkpoint"])
    record = {"run_dir": str(run), "benchmark": bench, "selection_set": chosen, "settings": key, "checkpoints": rows,
              "best": best, "best_link": str(link), "tie_break": "earliest step"}
    out = Path(output) if output else run / "checkpoint_selection.json"
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (run / "best.json").write_text(json.dumps({**best, "path": str(run / best["checkpoint"]), "benchmark": bench,
                                               "selection_set": chosen, "settings": key}, indent=2) + "\n",
                                   encoding="utf-8")
    record["output"] = str(out)
    return record


def format_selection(record: dict[str, Any]) -> str:
    """The per-checkpoint table, the best one marked, under the name of the selection set."""
    rows = record["checkpoints"]
    width = max(len("checkpoint"), *(len(r["checkpoint"]) for r in rows))
    chosen = record.get("selection_set") or {"description": record.get("benchmark", "?")}
    lines = [f"selection set: {chosen['description']}",
             f"{'checkpoint'.ljust(width)}  {'step':>6}  {'correct':>9}  {'accuracy %':>10}",
             f"{'-' * width}  {'-' * 6}  {'-' * 9}  {'-' * 10}"]
    for r in rows:
        mark = "  <- best" if r["checkpoint"] == record["best"]["checkpoint"] else ""
        lines.append(f"{r['checkpoint'].ljust(width)}  {r['step']:>6}  {str(r['correct']) + '/' + str(r['n']):>9}  "
                     f"{r['accuracy']:>10.1f}{mark}")
    return "\n".join(lines)
