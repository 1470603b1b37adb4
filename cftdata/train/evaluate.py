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

Generation backends: ``vllm`` (GPU; imported only when used), ``transformers`` (any device; batched
greedy ``generate``), ``local`` (a GGUF file through llama.cpp, CPU). ``auto`` picks ``local`` for a
``.gguf`` model, ``vllm`` when CUDA and vLLM are both available, else ``transformers``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cftdata.errors import CftdataError

__all__ = [
    "BENCHMARKS",
    "DEFAULT_STOP",
    "MATH_COT_SYSTEM",
    "Benchmark",
    "Problem",
    "EvalSettings",
    "build_prompt",
    "choose_backend",
    "cut_at_stop",
    "evaluate_model",
    "format_table",
    "grade",
    "load_problems",
    "make_generator",
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


def build_prompt(problem: str, tokenizer: Any = None, system: str = MATH_COT_SYSTEM) -> str:
    """The ``qwen25-math-cot`` prompt: literal ChatML, or the tokenizer's own chat template if given."""
    if tokenizer is not None:
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": problem}]
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{problem}<|im_end|>\n"
            "<|im_start|>assistant\n")


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first stop string (the stop string itself removed)."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if 0 <= i < cut:
            cut = i
    return text[:cut]


# -- generation backends ----------------------------------------------------------------------------


class Generator(ABC):
    """Greedy completion of raw prompt strings (subclassed per engine: transformers, llama.cpp, vLLM)."""

    name = "base"
    tokenizer: Any = None

    @abstractmethod
    def generate(self, prompts: list[str], max_new_tokens: int, stop: Sequence[str]) -> list[str]:
        """One completion per prompt, cut at the first stop string."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model."""


class TransformersGenerator(Generator):
    """Batched greedy ``generate`` with transformers (left padding, stop strings)."""

    name = "transformers"

    def __init__(self, model: str, device: str | None = None, batch_size: int = 16, dtype: str | None = None) -> None:
        from cftdata.train.commands import require_extra

        require_extra("torch", "transformers")
        import torch

        from cftdata.train.models import load_causal_lm, load_tokenizer, resolve_model

        ref = resolve_model(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if self.device != "cpu" else torch.float32)
        self.tokenizer = load_tokenizer(ref)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = load_causal_lm(ref, dtype=torch_dtype).to(self.device).eval()
        self.batch_size = batch_size

    def _stop_ids(self, stop: Sequence[str]) -> list[int]:
        ids = set()
        vocab = self.tokenizer.get_vocab()
        for s in stop:
            if s in vocab:
                ids.add(vocab[s])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return sorted(ids)

    def generate(self, prompts: list[str], max_new_tokens: int, stop: Sequence[str]) -> list[str]:
        import torch

        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[str] = [""] * len(prompts)
        eos_ids = self._stop_ids(stop)
        multi_token_stops = [s for s in stop if s not in self.tokenizer.get_vocab()]
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            enc = self.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
            kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                          top_p=None, top_k=None, eos_token_id=eos_ids,
                                          pad_token_id=self.tokenizer.pad_token_id)
            if multi_token_stops:
                kwargs.update(stop_strings=list(multi_token_stops), tokenizer=self.tokenizer)
            with torch.no_grad():
                gen = self.model.generate(**enc, **kwargs)
            new = gen[:, enc["input_ids"].shape[1]:]
            for j, i in enumerate(idx):
                text = self.tokenizer.decode(new[j], skip_special_tokens=False)
                text = cut_at_stop(text, [*stop, *(t for t in [self.tokenizer.pad_token] if t)])
                out[i] = text
        return out

    def close(self) -> None:
        del self.model


class VLLMGenerator(Generator):
    """vLLM offline generation (GPU). Imported only when used."""

    name = "vllm"

    def __init__(self, model: str, tensor_parallel_size: int | None = None, max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.9) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise CftdataError("--backend vllm needs vLLM on a GPU machine: pip install vllm.") from None
        import torch

        from cftdata.train.models import resolve_model

        ref = resolve_model(model)
        path = str(ref.gguf_path) if ref.gguf_path else ref.path
        tp = tensor_parallel_size or max(1, torch.cuda.device_count())
        kwargs: dict[str, Any] = dict(model=path, tensor_parallel_size=tp, dtype="bfloat16", seed=0,
                                      gpu_memory_utilization=gpu_memory_utilization, trust_remote_code=False)
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: list[str], max_new_tokens: int, stop: Sequence[str]) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=max_new_tokens, stop=list(stop),
                                skip_special_tokens=False)
        outputs = self.llm.generate(prompts, params)
        return [cut_at_stop(o.outputs[0].text if o.outputs else "", stop) for o in outputs]

    def close(self) -> None:
        del self.llm


class LlamaCppGenerator(Generator):
    """A GGUF model through llama.cpp (llama-cpp-python, the ``local`` extra), greedy, one prompt at a time."""

    name = "local"

    def __init__(self, model: str, n_ctx: int = 4096, n_threads: int | None = None) -> None:
        from cftdata.train.models import resolve_model

        ref = resolve_model(model)
        if ref.gguf_path is None:
            raise CftdataError(f"--backend local runs GGUF files through llama.cpp; {model!r} is not a .gguf file "
                               "(use --backend transformers).")
        from cftdata.backends.llama_runtime import load_llama

        self.llm = load_llama(ref.gguf_path, n_ctx=n_ctx, n_threads=n_threads or os.cpu_count() or 1, verbose=False)

    def generate(self, prompts: list[str], max_new_tokens: int, stop: Sequence[str]) -> list[str]:
        out = []
        for p in prompts:
            room = max(1, min(max_new_tokens, self.llm.n_ctx() - len(self.llm.tokenize(p.encode(), special=True)) - 1))
            res = self.llm.create_completion(prompt=p, max_tokens=room, temperature=0.0, top_p=1.0, top_k=1,
                                             stop=list(stop), seed=0)
            out.append(cut_at_stop(res["choices"][0]["text"], stop))
        return out

    def close(self) -> None:
        self.llm.close()


def _cuda_and_vllm() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def choose_backend(model: str, backend: str) -> str:
    """Resolve ``auto`` to ``local`` (GGUF), ``vllm`` (CUDA + vLLM) or ``transformers``."""
    if backend != "auto":
        return backend
    if model.endswith(".gguf") or model == "smollm2-135m":
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is not None:
            return "local"
    return "vllm" if _cuda_and_vllm() else "transformers"


def make_generator(model: str, backend: str = "auto", **options: Any) -> Generator:
    """A generator for MODEL on the named backend (``auto``, ``transformers``, ``vllm``, ``local``)."""
    backend = choose_backend(model, backend)
    if backend == "transformers":
        return TransformersGenerator(model, **options)
    if backend == "vllm":
        return VLLMGenerator(model, **options)
    if backend == "local":
        return LlamaCppGenerator(model, **options)
    raise CftdataError(f"Unknown backend {backend!r}: auto, transformers, vllm or local.")


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


def evaluate_model(model: str, settings: EvalSettings, generator: Generator | None = None,
                   samples_path: Path | None = None, generator_options: dict[str, Any] | None = None,
                   problems: dict[str, tuple[list[Problem], str]] | None = None) -> dict[str, Any]:
    """Generate, grade and score MODEL on the benchmarks; returns the results record.

    Args:
        generator: An already-loaded generator (otherwise one is made for ``settings.backend``).
        samples_path: Where to write one JSON line per problem (output, extracted answer, status).
        problems: Preloaded problems per benchmark (reused across checkpoints).
    """
    started = time.monotonic()
    problems = problems or {b: load_problems(b, settings.data_dir, settings.limit) for b in settings.benchmarks}
    own = generator is None
    gen = generator or make_generator(model, settings.backend, **(generator_options or {}))
    try:
        template_tok = gen.tokenizer if settings.chat_template == "model" else None
        prompts = {b: [build_prompt(p.problem, template_tok) for p in problems[b][0]] for b in settings.benchmarks}
        flat = [p for b in settings.benchmarks for p in prompts[b]]
        gen_started = time.monotonic()
        outputs = gen.generate(flat, settings.max_new_tokens, settings.stop)
        gen_seconds = time.monotonic() - gen_started
    finally:
        if own:
            gen.close()
    all_problems = [p for b in settings.benchmarks for p in problems[b][0]]
    records = grade(all_problems, outputs, settings.answer_rule)
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
    result = {
        "model": model, "backend": gen.name, "prompt": "qwen25-math-cot", "system_prompt": MATH_COT_SYSTEM,
        "chat_template": "literal ChatML" if settings.chat_template == "chatml" else "the model's own",
        "decoding": {"greedy": True, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": settings.max_new_tokens,
                     "stop": settings.stop},
        "answer_rule": settings.answer_rule, "grader": GRADER, "limit": settings.limit,
        "benchmarks": per, "average": average,
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
