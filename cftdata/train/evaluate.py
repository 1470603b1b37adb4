"""Math evaluation with the CFT paper's protocol (section 5): greedy generation, last ``\\boxed{}``, graded.

Benchmarks (:data:`BENCHMARKS`): ``math500``, ``gsm8k``, ``minerva_math``, ``olympiadbench``, ``aime24``,
``amc23``, ``theoremqa``. Each is read from ``DATA_DIR/<name>/test.jsonl`` when a data folder is given
(the layout of QwenLM/Qwen2.5-Math's ``evaluation/data`` and of ``../shared/data``), else from its Hub
dataset where one exists.

Prompt (``qwen25-math-cot``, as the Qwen2.5-Math harness writes it)::

    <|im_start|>system
    Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>
    <|im_start|>user
    {problem}<|im_end|>
    <|im_start|>assistant

Greedy decoding (temperature 0, top_p 1), up to 2048 new tokens, stopping at ``<|im_end|>``,
``<|endoftext|>`` or ``[END]``. The predicted answer is the last brace-balanced ``\\boxed{...}``
(:func:`cftdata.verify.extract.extract_answer`, rule ``boxed``), compared with the reference answer by
:class:`cftdata.verify.pool.Verifier` (math-verify in worker processes with a hard per-item timeout).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cftdata.backends.base import cut_at_stop
from cftdata.errors import CftdataError

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
    "cut_at_stop",
    "eval_requests",
    "eval_spec",
    "evaluate_model",
    "format_table",
    "generate",
    "grade",
    "load_problems",
    "open_eval_caller",
    "resolve_benchmarks",
]

log = logging.getLogger(__name__)

#: The system prompt of the paper's evaluation ("qwen25-math-cot").
MATH_COT_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
#: Stop strings of the paper's evaluation.
DEFAULT_STOP = ("<|im_end|>", "<|endoftext|>", "[END]")
DEFAULT_MAX_NEW_TOKENS = 2048
GRADER = "cftdata.verify (math-verify in worker processes, per-item timeout)"


@dataclass(frozen=True)
class Problem:
    """One benchmark problem with its reference answer."""

    benchmark: str
    index: int
    problem: str
    gold: str | None


def _first(row: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in row and row[k] is not None:
            return row[k]
    return None


def _strip_dollars(s: str) -> str:
    """``$69$,$84$`` -> ``69,84``: OlympiadBench answers are LaTeX in ``$`` delimiters, some of them several."""
    s = s.replace("$", "").strip()
    return s[:-1].rstrip() if s.endswith(".") and not s.endswith("..") else s


def _number(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _gold_gsm8k(row: dict[str, Any]) -> str | None:
    from cftdata.verify.extract import extract_answer

    return extract_answer(str(row.get("answer") or ""), "gsm8k")


def _gold_last_boxed(row: dict[str, Any]) -> str | None:
    from cftdata.verify.extract import extract_answer

    sol = row.get("solution")
    if isinstance(sol, list):
        sol = sol[-1] if sol else ""
    return extract_answer(str(sol or ""), "boxed")


def _gold_olympiad(row: dict[str, Any]) -> str | None:
    fa = row.get("final_answer")
    if isinstance(fa, str):
        try:
            fa = json.loads(fa)
        except ValueError:
            fa = [fa]
    if not fa:
        return None
    return _strip_dollars(str(fa[0]))


@dataclass(frozen=True)
class Benchmark:
    """Where a benchmark lives and how to read a problem and its reference answer from a row."""

    name: str
    gold: Callable[[dict[str, Any]], str | None]
    hub: str | None = None
    hub_config: str | None = None
    hub_split: str = "test"
    local_file: str = "test.jsonl"
    problem_keys: tuple[str, ...] = ("problem", "question", "Question", "Problem")
    size: int | None = None
    note: str = ""


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("math500", lambda r: _number(_first(r, "answer")), hub="HuggingFaceH4/MATH-500", size=500,
                  note="answer"),
        Benchmark("gsm8k", _gold_gsm8k, hub="openai/gsm8k", hub_config="main", size=1319,
                  note="after ####"),
        Benchmark("minerva_math", _gold_last_boxed, size=272, note="last \\boxed{} of solution"),
        Benchmark("olympiadbench", _gold_olympiad, hub="Hothan/OlympiadBench", hub_config="OE_TO_maths_en_COMP",
                  hub_split="train", size=675, note="final_answer[0] without $"),
        Benchmark("aime24", lambda r: _number(_first(r, "answer", "Answer")), size=30, note="answer"),
        Benchmark("amc23", lambda r: _number(_first(r, "answer", "Answer")), size=40, note="answer (float)"),
        Benchmark("theoremqa", lambda r: _number(_first(r, "answer", "Answer")), hub="TIGER-Lab/TheoremQA",
                  size=800, note="answer"),
    )
}
_ALIASES = {"math-500": "math500", "math_500": "math500", "minerva": "minerva_math", "minerva-math": "minerva_math",
            "olympiad": "olympiadbench", "aime": "aime24", "aime2024": "aime24", "amc": "amc23",
            "theorem_qa": "theoremqa"}


def resolve_benchmarks(spec: str | Sequence[str]) -> list[str]:
    """``"math500,gsm8k"`` (or ``all``) -> canonical benchmark names, in order, without duplicates."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in items:
        name = raw.strip().lower()
        if not name:
            continue
        if name == "all":
            names = list(BENCHMARKS)
        else:
            name = _ALIASES.get(name, name)
            if name not in BENCHMARKS:
                raise CftdataError(f"Unknown benchmark {raw!r}. Known: {', '.join(BENCHMARKS)} (or all).")
            names = [name]
        out += [n for n in names if n not in out]
    if not out:
        raise CftdataError("No benchmark named: pass e.g. --benchmarks math500,gsm8k.")
    return out


def load_problems(name: str, data_dir: str | Path | None = None, limit: int | None = None) -> tuple[list[Problem], str]:
    """The first ``limit`` problems of a benchmark and where they came from.

    Raises:
        cftdata.errors.CftdataError: no local file and no Hub copy, or a file without problems.
    """
    bench = BENCHMARKS[name]
    rows: list[dict[str, Any]] = []
    if data_dir is not None:
        path = Path(data_dir).expanduser() / name / bench.local_file
        if not path.is_file():
            raise CftdataError(f"Benchmark {name}: no {path} (expected DATA_DIR/{name}/{bench.local_file}).")
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    rows.append(json.loads(line))
                    if limit is not None and len(rows) >= limit:
                        break
        source = f"file:{path}"
    elif bench.hub is None:
        raise CftdataError(
            f"Benchmark {name} has no Hub dataset; pass --data-dir pointing at a folder with {name}/test.jsonl "
            "(for example QwenLM/Qwen2.5-Math's evaluation/data, or ../shared/data)."
        )
    else:
        import datasets

        try:
            ds = datasets.load_dataset(bench.hub, bench.hub_config, split=bench.hub_split)
        except Exception as e:  # any Hub failure is a user-facing one-liner
            raise CftdataError(f"Benchmark {name}: loading {bench.hub} from the Hub failed ({type(e).__name__}: "
                               f"{str(e)[:200]}); pass --data-dir with local copies instead.") from None
        if limit is not None:
            ds = ds.select(range(min(limit, len(ds))))
        rows = [dict(r) for r in ds]
        source = f"hub:{bench.hub}" + (f"/{bench.hub_config}" if bench.hub_config else "")
    problems = []
    for i, row in enumerate(rows):
        text = _first(row, *bench.problem_keys)
        if text is None:
            raise CftdataError(f"Benchmark {name} ({source}) row {i}: no problem field ({', '.join(bench.problem_keys)}).")
        problems.append(Problem(name, i, str(text), bench.gold(row)))
    if not problems:
        raise CftdataError(f"Benchmark {name} ({source}) has no problems.")
    return problems, source


def build_prompt(problem: str, system: str = MATH_COT_SYSTEM) -> str:
    """The ``qwen25-math-cot`` prompt as literal ChatML (sent as a raw prompt, whatever the model's template)."""
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{problem}<|im_end|>\n"
            "<|im_start|>assistant\n")


# -- generation: requests through the model layer ----------------------------------------------------


def eval_spec(model: str, settings: EvalSettings, options: dict[str, Any] | None = None) -> ModelSpec:
    """The model spec of an evaluation: ``settings.backend`` (``auto`` resolved for ``model``) and greedy
    decoding with the paper's stop strings."""
    from cftdata.backends import resolve_backend
    from cftdata.recipe import ModelSpec, SamplingParams

    return ModelSpec(backend=resolve_backend(model, settings.backend), model=model, options=dict(options or {}),
                     params=SamplingParams(temperature=0.0, top_p=1.0, max_tokens=settings.max_new_tokens,
                                           stop=list(settings.stop)))


def eval_requests(problems: Sequence[Problem], settings: EvalSettings, spec: ModelSpec) -> list[Request]:
    """One greedy request per problem: the literal ChatML prompt as a raw prompt (``chatml``), or the
    system and user turns for the model's own chat template (``model``)."""
    from cftdata.backends.base import Request

    params = spec.params.as_request_params()
    if settings.chat_template == "chatml":
        return [Request.raw(spec.model, build_prompt(p.problem), params) for p in problems]
    return [Request.make(spec.model, [{"role": "system", "content": MATH_COT_SYSTEM},
                                      {"role": "user", "content": p.problem}], params) for p in problems]


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
          workers: int | None = None, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Extract each output's answer and compare it with the reference; one record per problem."""
    from cftdata.verify.extract import extract_answer
    from cftdata.verify.pool import Verifier

    preds = [extract_answer(o, answer_rule) for o in outputs]
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    with Verifier(workers=workers, timeout_s=timeout_s) as v:
        results = v.verify_many([(p.gold, pred) for p, pred in zip(problems, preds, strict=True)])
    return [
        {"benchmark": p.benchmark, "index": p.index, "gold": p.gold, "pred": pred, "status": r.status,
         "detail": r.detail, "output": out}
        for p, pred, r, out in zip(problems, preds, results, outputs, strict=True)
    ]


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
    stop: list[str] = field(default_factory=lambda: list(DEFAULT_STOP))

    def key(self) -> dict[str, Any]:
        """The settings as a plain dict."""
        return {"benchmarks": self.benchmarks, "limit": self.limit, "data_dir": self.data_dir,
                "backend": self.backend, "max_new_tokens": self.max_new_tokens, "answer_rule": self.answer_rule,
                "chat_template": self.chat_template, "stop": self.stop}


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
    problems = problems or {b: load_problems(b, settings.data_dir, settings.limit) for b in settings.benchmarks}
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
    outputs = [cut_at_stop(r.text or "", settings.stop) if r.ok else "" for r in results]
    records = grade(all_problems, outputs, settings.answer_rule)
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
        per[b] = {"n": len(recs), "correct": correct, "accuracy": round(100.0 * correct / len(recs), 2),
                  "statuses": statuses, "source": problems[b][1]}
    average = round(sum(v["accuracy"] for v in per.values()) / len(per), 2)
    st = caller.stats
    usage = {**st.as_dict(), "cost_usd": cost_usd(spec, st.input_tokens, st.output_tokens)}
    result = {
        "model": model, "backend": spec.backend, "prompt": "qwen25-math-cot", "system_prompt": MATH_COT_SYSTEM,
        "chat_template": "literal ChatML" if settings.chat_template == "chatml" else "the model's own",
        "decoding": {"greedy": True, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": settings.max_new_tokens,
                     "stop": settings.stop},
        "answer_rule": settings.answer_rule, "grader": GRADER, "limit": settings.limit,
        "benchmarks": per, "average": average, "usage": usage,
        "seconds": round(time.monotonic() - started, 1), "generation_seconds": round(gen_seconds, 1),
    }
    if samples_path is not None:
        samples_path.parent.mkdir(parents=True, exist_ok=True)
        with samples_path.open("w", encoding="utf-8") as f:
            for r, p in zip(records, all_problems, strict=True):
                f.write(json.dumps({**r, "problem": p.problem}, ensure_ascii=False) + "\n")
        result["samples"] = str(samples_path)
    return result


def format_table(result: dict[str, Any]) -> str:
    """Per-benchmark accuracy and the average as a plain-text table."""
    rows = [(name, str(v["n"]), str(v["correct"]), f"{v['accuracy']:.1f}") for name, v in result["benchmarks"].items()]
    rows.append(("average", "", "", f"{result['average']:.1f}"))
    head = ("benchmark", "n", "correct", "accuracy %")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)

    def fmt(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
    return "\n".join([fmt(head), line, *[fmt(r) for r in rows[:-1]], line, fmt(rows[-1])])
