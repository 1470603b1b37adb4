"""Math evaluation with the CFT paper's protocol (section 5): greedy generation, answer extraction, grading.

Benchmarks come from :data:`cftdata.benchmarks.BENCHMARKS` (``math``, ``minerva_math``, ``gsm8k``,
``olympiadbench``, ``aime24``, ``amc23`` (the paper's main table, ``--benchmarks paper``), ``math500``,
``theoremqa``, ``gpqa_diamond``, ``mmlu_pro``). Each is read from ``DATA_DIR/<name>/test.jsonl`` when a data
folder is given (the layout of QwenLM/Qwen2.5-Math's ``evaluation/data`` and of ``../shared/data``), else from
its Hub dataset.

Prompt (``qwen25-math-cot``, as the Qwen2.5-Math harness writes it)::

    <|im_start|>system
    Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>
    <|im_start|>user
    {problem}<|im_end|>
    <|im_start|>assistant

Greedy decoding (temperature 0, top_p 1), up to 2048 new tokens. The harness (:mod:`cftdata.train.harness`:
``cftdata``, ``paper``, ``qwen25-math``) decides the stop strings, the question text, the reference answers and
the answer extraction; the grader (:mod:`cftdata.verify.graders`: ``math-verify``, ``paper``,
``qwen25-math``) compares the extracted answer with the reference in worker processes with a hard per-item
timeout. Results name both, and :func:`format_table` prints the paper's table layout (MATH, Minerva, GSM8K,
OlympiadBench, AIME24, AMC23, AVG); :func:`compare_results` puts two runs (CFT vs SFT) side by side.

Generation goes through the model layer like every other model call (:mod:`cftdata.backends`): any
backend of the registry that takes raw prompts (``vllm``, ``transformers``, ``local``; with
``--chat-template model`` any backend at all), each request cached as it finishes, so an interrupted
evaluation reruns only the generations it had not finished, and usage and cost are reported. ``auto``
picks ``local`` for a ``.gguf`` model, ``vllm`` when CUDA and vLLM are both available, else
``transformers`` (:func:`cftdata.backends.resolve_backend`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cftdata.backends.base import cut_at_stop
from cftdata.benchmarks import BENCHMARKS, PAPER_TABLE, Benchmark, Problem, load_problems, resolve_benchmarks
from cftdata.errors import CftdataError
from cftdata.train.harness import DEFAULT_STOP, HARNESSES, MATH_COT_SYSTEM

if TYPE_CHECKING:
    from cftdata.backends.base import Request, Result
    from cftdata.backends.caller import ModelCaller
    from cftdata.recipe import ModelSpec

__all__ = [
    "BENCHMARKS",
    "DEFAULT_STOP",
    "MATH_COT_SYSTEM",
    "Benchmark",
    "Problem",
    "EvalSettings",
    "build_prompt",
    "compare_results",
    "cut_at_stop",
    "eval_requests",
    "eval_spec",
    "evaluate_model",
    "format_comparison",
    "format_table",
    "generate",
    "grade",
    "load_problems",
    "open_eval_caller",
    "resolve_benchmarks",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 2048


def build_prompt(problem: str, system: str = MATH_COT_SYSTEM) -> str:
    """The ``qwen25-math-cot`` prompt as literal ChatML (sent as a raw prompt, whatever the model's template)."""
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{problem}<|im_end|>\n"
            "<|im_start|>assistant\n")


# -- generation: requests through the model layer ----------------------------------------------------


def eval_spec(model: str, settings: EvalSettings, options: dict[str, Any] | None = None) -> ModelSpec:
    """The model spec of an evaluation: ``settings.backend`` (``auto`` resolved for ``model``) and greedy
    decoding with the harness's stop strings (each request carries its benchmark's own)."""
    from cftdata.backends import resolve_backend
    from cftdata.recipe import ModelSpec, SamplingParams

    return ModelSpec(backend=resolve_backend(model, settings.backend), model=model, options=dict(options or {}),
                     params=SamplingParams(temperature=0.0, top_p=1.0, max_tokens=settings.max_new_tokens,
                                           stop=settings.stop_for(settings.benchmarks[0])))


def eval_requests(problems: Sequence[Problem], settings: EvalSettings, spec: ModelSpec) -> list[Request]:
    """One greedy request per problem, as the harness asks it (its system prompt, question text and stop
    strings): the literal ChatML prompt as a raw prompt (``chatml``), or the system and user turns for the
    model's own chat template (``model``)."""
    from cftdata.backends.base import Request

    harness = HARNESSES.get(settings.harness)
    base = spec.params.as_request_params()
    out = []
    for p in problems:
        proto = harness.protocol(p.benchmark)
        params = {**base, "stop": settings.stop_for(p.benchmark)}
        if settings.chat_template == "chatml":
            out.append(Request.raw(spec.model, build_prompt(proto.question(p), proto.system), params))
        else:
            out.append(Request.make(spec.model, [{"role": "system", "content": proto.system},
                                                 {"role": "user", "content": proto.question(p)}], params))
    return out


def open_eval_caller(spec: ModelSpec, settings: EvalSettings, cache_dir: str | Path | None = None,
                     use_cache: bool = True) -> ModelCaller:
    """A cached caller for an evaluation (the build's request cache, ``$CFTDATA_CACHE_DIR`` by default), so an
    interrupted evaluation reruns only the generations it had not finished. Refuses, before any call, a
    backend that cannot take the chosen prompt kind."""
    from cftdata.backends.cache import RequestCache
    from cftdata.backends.caller import ModelLayer

    backend_cls = _backend_class(spec.backend)
    if settings.chat_template == "chatml" and not backend_cls.raw_prompts:
        raise CftdataError(f"Backend {spec.backend!r} takes chat messages only, and the paper's prompt is a literal "
                           "ChatML string: pass --chat-template model (the model's own template), or use the "
                           "local, transformers or vllm backend.")
    cache = RequestCache.open(cache_dir) if use_cache else None
    return ModelLayer(cache).caller(spec)


def _backend_class(name: str) -> Any:
    from cftdata.backends import BACKENDS

    return BACKENDS.get(name)


def generate(problems: Sequence[Problem], settings: EvalSettings, caller: ModelCaller) -> list[Result]:
    """One result per problem, in order (answers already in the cache are not generated again)."""
    return caller.call(eval_requests(problems, settings, caller.backend.spec))


# -- grading and the whole run ----------------------------------------------------------------------


def grade(problems: Sequence[Problem], outputs: Sequence[str], answer_rule: str = "boxed",
          workers: int | None = None, timeout_s: float | None = None, harness: str = "cftdata",
          grader: str | None = None) -> list[dict[str, Any]]:
    """Extract each output's answer and compare it with the reference; one record per problem.

    Args:
        answer_rule: The extraction rule of the ``cftdata`` harness (:mod:`cftdata.verify.extract`).
        harness: :data:`cftdata.train.harness.HARNESSES` name: extraction, references, stop strings.
        grader: :data:`cftdata.verify.graders.GRADERS` name (default: the harness's).
        timeout_s: Per-item limit (default: the grader's).
    """
    from cftdata.verify.graders import GRADERS
    from cftdata.verify.pool import CORRECT, INCORRECT, UNVERIFIABLE, Verifier

    h = HARNESSES.get(harness)
    g = GRADERS.get(grader or h.default_grader)
    records: list[dict[str, Any]] = []
    pending: list[int] = []
    for p, out in zip(problems, outputs, strict=True):
        proto = h.protocol(p.benchmark)
        gold, pred = proto.gold(p), proto.extract(out, p, answer_rule)
        rec = {"benchmark": p.benchmark, "index": p.index, "gold": gold, "pred": pred, "status": None,
               "detail": "", "output": out}
        if proto.letter:
            if not pred:
                rec.update(status=UNVERIFIABLE, detail="no choice letter")
            else:
                rec.update(status=CORRECT if gold and pred.strip().upper() == gold.strip().upper() else INCORRECT,
                           detail="choice letter")
        else:
            pending.append(len(records))
        records.append(rec)
    if pending:
        workers = workers or max(1, min(4, os.cpu_count() or 1))
        with Verifier(workers=workers, timeout_s=timeout_s or g.timeout_s, max_chars=g.max_chars,
                      check=g.check) as v:
            results = v.verify_many([(records[i]["gold"], records[i]["pred"]) for i in pending])
        for i, r in zip(pending, results, strict=True):
            records[i].update(status=r.status, detail=r.detail)
    return records


@dataclass
class EvalSettings:
    """Everything that changes a score (recorded in the results, and the key of cached results)."""

    benchmarks: list[str]
    limit: int | None = None
    data_dir: str | None = None
    backend: str = "auto"
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    answer_rule: str = "boxed"
    chat_template: str = "chatml"
    stop: list[str] | None = None
    harness: str = "cftdata"
    grader: str | None = None
    sample: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        from cftdata.verify.graders import GRADERS

        h = HARNESSES.get(self.harness)
        self.grader = GRADERS.get(self.grader or h.default_grader).name

    def stop_for(self, benchmark: str) -> list[str]:
        """The stop strings of one benchmark (``stop`` overrides the harness's)."""
        return list(self.stop) if self.stop is not None else list(HARNESSES.get(self.harness).protocol(benchmark).stop)

    def key(self) -> dict[str, Any]:
        """The settings as a plain dict."""
        return {"benchmarks": self.benchmarks, "limit": self.limit, "data_dir": self.data_dir,
                "backend": self.backend, "max_new_tokens": self.max_new_tokens, "answer_rule": self.answer_rule,
                "chat_template": self.chat_template, "stop": self.stop, "harness": self.harness,
                "grader": self.grader, "sample": self.sample, "seed": self.seed}


def evaluate_model(model: str, settings: EvalSettings, *, caller: ModelCaller | None = None,
                   samples_path: Path | None = None, backend_options: dict[str, Any] | None = None,
                   problems: dict[str, tuple[list[Problem], str]] | None = None,
                   cache_dir: str | Path | None = None, use_cache: bool = True) -> dict[str, Any]:
    """Generate, grade and score MODEL on the benchmarks; returns the results record.

    Generations go through the model layer's cached caller: an interrupted evaluation, rerun, generates only
    what it had not finished; usage (calls, cache hits, tokens, cost) is in the record.

    Args:
        caller: An already-open caller for MODEL (otherwise one is opened for ``settings.backend``).
        samples_path: Where to write one JSON line per problem (output, extracted answer, status).
        backend_options: The backend's ``options`` (``batch_size``, ``n_ctx``, ``tensor_parallel_size``...).
        problems: Preloaded problems per benchmark (reused across checkpoints).
        cache_dir: The request cache folder (default ``$CFTDATA_CACHE_DIR`` or ``~/.cache/cftdata``).
        use_cache: False: no cache (every generation runs, nothing is stored).
    """
    from cftdata.backends.pricing import cost_usd

    started = time.monotonic()
    from cftdata.verify.graders import GRADERS

    problems = problems or {b: load_problems(b, settings.data_dir, settings.limit, settings.sample, settings.seed)
                            for b in settings.benchmarks}
    harness = HARNESSES.get(settings.harness)
    own = caller is None
    if caller is None:
        caller = open_eval_caller(eval_spec(model, settings, backend_options), settings, cache_dir, use_cache)
    spec = caller.backend.spec
    all_problems = [p for b in settings.benchmarks for p in problems[b][0]]
    try:
        gen_started = time.monotonic()
        results = generate(all_problems, settings, caller)
        gen_seconds = time.monotonic() - gen_started
    finally:
        if own:
            caller.close()
    outputs = [cut_at_stop(r.text or "", settings.stop_for(p.benchmark)) if r.ok else ""
               for r, p in zip(results, all_problems, strict=True)]
    records = grade(all_problems, outputs, settings.answer_rule, harness=settings.harness, grader=settings.grader)
    for rec, r in zip(records, results, strict=True):
        rec["finish_reason"] = r.finish_reason
        if not r.ok:  # a failed generation is counted, with its reason, never graded as an answer
            rec.update(status="generation_error", detail=f"{r.error}: {r.error_detail}"[:500])
    per: dict[str, Any] = {}
    for b in settings.benchmarks:
        recs = [r for r in records if r["benchmark"] == b]
        statuses: dict[str, int] = {}
        for r in recs:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        correct = statuses.get("correct", 0)
        per[b] = {"title": BENCHMARKS.get(b).title, "n": len(recs), "correct": correct,
                  "accuracy": round(100.0 * correct / len(recs), 2), "statuses": statuses,
                  "source": problems[b][1], "stop": settings.stop_for(b),
                  "system_prompt": harness.protocol(b).system}
    average = round(sum(v["accuracy"] for v in per.values()) / len(per), 2)
    st = caller.stats
    usage = {**st.as_dict(), "cost_usd": cost_usd(spec, st.input_tokens, st.output_tokens)}
    result = {
        "model": model, "backend": spec.backend, "prompt": "qwen25-math-cot", "system_prompt": MATH_COT_SYSTEM,
        "chat_template": "literal ChatML" if settings.chat_template == "chatml" else "the model's own",
        "decoding": {"greedy": True, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": settings.max_new_tokens,
                     "stop": settings.stop_for(settings.benchmarks[0])},
        "harness": settings.harness, "harness_description": harness.description,
        "answer_rule": settings.answer_rule if settings.harness == "cftdata" else f"{settings.harness} harness",
        "grader": settings.grader, "grader_description": GRADERS.get(settings.grader).description,
        "limit": settings.limit, "benchmarks": per, "average": average, "paper_average": _paper_average(per),
        "usage": usage,
        "seconds": round(time.monotonic() - started, 1), "generation_seconds": round(gen_seconds, 1),
    }
    if samples_path is not None:
        samples_path.parent.mkdir(parents=True, exist_ok=True)
        with samples_path.open("w", encoding="utf-8") as f:
            for r, p in zip(records, all_problems, strict=True):
                f.write(json.dumps({**r, "problem": harness.protocol(p.benchmark).question(p)},
                                   ensure_ascii=False) + "\n")
        result["samples"] = str(samples_path)
    return result


def _paper_average(per: dict[str, Any]) -> float | None:
    """The mean over the six benchmarks of the paper's main table, when all six were evaluated."""
    if not all(b in per for b in PAPER_TABLE):
        return None
    return round(sum(per[b]["accuracy"] for b in PAPER_TABLE) / len(PAPER_TABLE), 2)


# -- tables ---------------------------------------------------------------------------------------------


def _ordered(names: Sequence[str]) -> list[str]:
    """The paper's column order first, then the others in their given order."""
    return [b for b in PAPER_TABLE if b in names] + [b for b in names if b not in PAPER_TABLE]


def _average_label(names: Sequence[str]) -> tuple[str, str]:
    if set(PAPER_TABLE) <= set(names) and len(names) == len(PAPER_TABLE):
        return "AVG", "AVG: mean of the six benchmarks of the paper's main table."
    return "AVG", (f"AVG: mean of the {len(names)} benchmark(s) shown (the paper's AVG is over "
                   f"{', '.join(BENCHMARKS.get(b).title for b in PAPER_TABLE)}).")


def _grid(rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        head, *body = rows
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(head))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
                     for r in rows)


def format_table(result: dict[str, Any], markdown: bool = False) -> str:
    """The paper's table layout: one column per benchmark (MATH, Minerva, GSM8K, OlympiadBench, AIME24, AMC23
    first), then AVG; rows accuracy, correct and n; the harness and the grader named above it."""
    per = result["benchmarks"]
    names = _ordered(list(per))
    label, note = _average_label(names)
    avg = result.get("paper_average") if len(names) == len(PAPER_TABLE) and result.get("paper_average") is not None \
        else result["average"]
    rows = [["", *[per[b].get("title") or BENCHMARKS.get(b).title for b in names], label],
            ["accuracy %", *[f"{per[b]['accuracy']:.1f}" for b in names], f"{avg:.1f}"],
            ["correct", *[str(per[b]["correct"]) for b in names], ""],
            ["n", *[str(per[b]["n"]) for b in names], ""]]
    head = (f"model: {result.get('model', '?')}; harness: {result.get('harness', 'cftdata')}; "
            f"grader: {result.get('grader', '?')}")
    return "\n".join([head, _grid(rows, markdown), note])


def _load_result(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CftdataError(f"{p} does not exist (expected a results JSON written by cftdata eval --output).") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CftdataError(f"{p} is not a JSON results file ({e}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), dict):
        raise CftdataError(f"{p} is not a cftdata eval results file (no 'benchmarks' mapping).")
    return data


def compare_results(a: str | Path | dict[str, Any], b: str | Path | dict[str, Any],
                    labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Two runs side by side (e.g. CFT vs SFT) on the benchmarks both evaluated, with the difference A - B.

    Differences in harness, grader, limit or decoding are listed in ``notes``: scores taken under different
    settings are not comparable.

    Raises:
        cftdata.errors.CftdataError: a file is missing or not a results file, or the runs share no benchmark.
    """
    ra = a if isinstance(a, dict) else _load_result(a)
    rb = b if isinstance(b, dict) else _load_result(b)
    la, lb = labels or (str(ra.get("model", "A")), str(rb.get("model", "B")))
    common = _ordered([n for n in ra["benchmarks"] if n in rb["benchmarks"]])
    if not common:
        raise CftdataError(f"The two runs share no benchmark ({', '.join(ra['benchmarks'])} vs "
                           f"{', '.join(rb['benchmarks'])}).")
    notes = []
    for key in ("harness", "grader", "limit", "max_new_tokens", "chat_template"):
        va = ra.get(key, ra.get("decoding", {}).get(key))
        vb = rb.get(key, rb.get("decoding", {}).get(key))
        if va != vb:
            notes.append(f"the runs differ in {key}: {va!r} vs {vb!r}")
    for n in common:
        if ra["benchmarks"][n]["n"] != rb["benchmarks"][n]["n"]:
            notes.append(f"{n}: {ra['benchmarks'][n]['n']} vs {rb['benchmarks'][n]['n']} problems")

    def avg(r: dict[str, Any]) -> float:
        return round(sum(r["benchmarks"][n]["accuracy"] for n in common) / len(common), 2)

    rows = {n: {"title": BENCHMARKS.get(n).title, "a": ra["benchmarks"][n]["accuracy"],
                "b": rb["benchmarks"][n]["accuracy"]} for n in common}
    for v in rows.values():
        v["diff"] = round(v["a"] - v["b"], 2)
    average = {"a": avg(ra), "b": avg(rb)}
    average["diff"] = round(average["a"] - average["b"], 2)
    return {"labels": [la, lb], "benchmarks": rows, "average": average, "notes": notes,
            "harness": [ra.get("harness"), rb.get("harness")], "grader": [ra.get("grader"), rb.get("grader")]}


def format_comparison(cmp: dict[str, Any], markdown: bool = False) -> str:
    """A comparison as the paper's table: one row per run and a difference row (A - B)."""
    names = list(cmp["benchmarks"])
    label, note = _average_label(names)
    la, lb = cmp["labels"]
    rows = [["", *[cmp["benchmarks"][n]["title"] for n in names], label],
            [la, *[f"{cmp['benchmarks'][n]['a']:.1f}" for n in names], f"{cmp['average']['a']:.1f}"],
            [lb, *[f"{cmp['benchmarks'][n]['b']:.1f}" for n in names], f"{cmp['average']['b']:.1f}"],
            [f"{la} - {lb}", *[f"{cmp['benchmarks'][n]['diff']:+.1f}" for n in names], f"{cmp['average']['diff']:+.1f}"]]
    head = f"harness: {' / '.join(map(str, cmp['harness']))}; grader: {' / '.join(map(str, cmp['grader']))}"
    lines = [head, _grid(rows, markdown), note]
    lines += [f"note: {n}" for n in cmp["notes"]]
    return "\n".join(lines)
