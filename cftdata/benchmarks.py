"""The benchmark registry, shared by evaluation (``cftdata eval``, ``select-checkpoint``) and decontamination.

One :class:`Benchmark` per test set: where it lives on the Hugging Face Hub (the ids the evaluation harnesses
load), where a local copy sits under a data folder (the layout of QwenLM/Qwen2.5-Math's ``evaluation/data``
and of ``../shared/data``: ``<data_dir>/<name>/test.jsonl``), which field holds the problem, how the
reference answer is read, and the column title of the CFT paper's tables.

=================  =========  ======================================================  ====================
name               problems   Hub id (config, split)                                  paper column
=================  =========  ======================================================  ====================
``math``           5,000      EleutherAI/hendrycks_math (7 subject configs, test)     MATH
``minerva_math``   272        math-ai/minervamath (test)                              Minerva
``gsm8k``          1,319      openai/gsm8k (main, test)                               GSM8K
``olympiadbench``  675        Hothan/OlympiadBench (OE_TO_maths_en_COMP, train)       OlympiadBench
``aime24``         30         HuggingFaceH4/aime_2024 (train)                         AIME24
``amc23``          40         math-ai/amc23 (test)                                    AMC23
``math500``        500        HuggingFaceH4/MATH-500 (test)                           MATH-500 (validation)
``theoremqa``      800        TIGER-Lab/TheoremQA (test)                              TheoremQA
``gpqa_diamond``   198        Idavidrein/gpqa (gpqa_diamond, train; gated)            GPQA
``mmlu_pro``       12,032     TIGER-Lab/MMLU-Pro (test)                               MMLU-Pro
``math_train``     7,500      EleutherAI/hendrycks_math (7 subject configs, train)    (held-out selection)
=================  =========  ======================================================  ====================

The authors' harness read MATH from the Hub id ``competition_math`` (hendrycks/competition_math, since
taken down) or its own ``data/math/test.jsonl``; EleutherAI/hendrycks_math holds the same 5,000 test and
7,500 train problems split by subject, and a local ``math/test.jsonl`` in the harness's layout is read the
same way. ``gpqa_diamond`` and ``mmlu_pro`` are multiple choice: the problem text carries the options (GPQA's
four are shuffled with a fixed seed per record, as the authors' harness shuffles them) and the reference is a
letter. ``math_train`` is not a reported test set: it is the source of the held-out slice that
``select-checkpoint --selection-set`` uses.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cftdata.errors import CftdataError
from cftdata.registry import Registry

__all__ = [
    "BENCHMARKS",
    "DEFAULT_DECONTAMINATION",
    "PAPER_TABLE",
    "Benchmark",
    "Problem",
    "load_problems",
    "read_rows",
    "resolve_benchmarks",
    "resolve_local",
]

_MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                  "prealgebra", "precalculus")
_LETTERS = "ABCDEFGHIJKLMNOP"


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: the text the model is asked, the reference answer and the source row."""

    benchmark: str
    index: int
    problem: str
    gold: str | None
    row: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def _first(row: dict[str, Any], keys: Sequence[str]) -> Any:
    for k in keys:
        if row.get(k) is not None:
            return row[k]
    return None


def _number(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _strip_dollars(s: str) -> str:
    """``$69$,$84$`` -> ``69,84``: OlympiadBench answers are LaTeX in ``$`` delimiters, some of them several."""
    s = s.replace("$", "").strip()
    return s[:-1].rstrip() if s.endswith(".") and not s.endswith("..") else s


def _gold_answer(row: dict[str, Any]) -> str | None:
    return _number(_first(row, ("answer", "Answer")))


def _gold_gsm8k(row: dict[str, Any]) -> str | None:
    from cftdata.verify.extract import extract_answer

    return extract_answer(str(row.get("answer") or ""), "gsm8k")


def _gold_last_boxed(row: dict[str, Any]) -> str | None:
    """The last ``\\boxed{}`` of the solution; the ``answer`` field where a copy has no solution."""
    from cftdata.verify.extract import extract_answer

    sol = row.get("solution")
    if isinstance(sol, list):
        sol = sol[-1] if sol else ""
    if not sol:
        return _gold_answer(row)
    return extract_answer(str(sol), "boxed")


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


def _gpqa_choices(row: dict[str, Any], index: int) -> tuple[list[str], str]:
    """The four options in a fixed per-record shuffled order, and the correct letter."""
    options = [row.get(f"Incorrect Answer {i}") for i in (1, 2, 3)] + [row.get("Correct Answer")]
    if any(o is None for o in options):
        raise KeyError("Correct Answer / Incorrect Answer 1-3")
    order = list(range(4))
    random.Random(f"gpqa:{row.get('Record ID', index)}").shuffle(order)
    return [str(options[i]) for i in order], _LETTERS[order.index(3)]


def _gpqa_text(row: dict[str, Any], index: int) -> str:
    """The authors' GPQA question (tools/evaluate_gpqa ``generate_question_and_answers``)."""
    choices, _ = _gpqa_choices(row, index)
    q = str(row["Question"])
    listed = " ".join(f"({_LETTERS[i]}) {c}" for i, c in enumerate(choices))
    return q + ("" if q.endswith("\n") else "\n") + "Answer Choices: " + listed


def _gpqa_gold(row: dict[str, Any], index: int) -> str:
    return _gpqa_choices(row, index)[1]


def _mmlu_pro_options(row: dict[str, Any]) -> list[str]:
    return [str(o) for o in row.get("options") or [] if o != "N/A"]


def _mmlu_pro_text(row: dict[str, Any], index: int) -> str:
    """The authors' zero-shot MMLU-Pro user turn (tools/evaluate_mmlu-pro ``format_cot_example``)."""
    options = "".join(f"{_LETTERS[i]}. {o}\n" for i, o in enumerate(_mmlu_pro_options(row)))
    return f"Question:\n{row['question']}\nOptions:\n{options}Answer: Let's think step by step.\n"


def _mmlu_pro_gold(row: dict[str, Any], index: int) -> str | None:
    if row.get("answer"):
        return str(row["answer"]).strip()
    if row.get("answer_index") is not None:
        return _LETTERS[int(row["answer_index"])]
    return None


@dataclass(frozen=True)
class Benchmark:
    """A test set: where it lives, how to read a problem and its reference answer.

    Attributes:
        name: Registry key (``math``, ``gsm8k``...).
        title: Column title in the paper's tables.
        size: Number of problems in the full set.
        hub: Hugging Face Hub dataset id.
        hub_configs: Configs loaded and concatenated in order (``(None,)``: the default config).
        hub_split: Split holding the test problems.
        local_path: Path of a local JSONL copy under a data folder.
        question_keys: Fields tried in order for the question text.
        gold: Reference answer of a row (the ``cftdata`` harness; the paper harness has its own rule).
        kind: ``math`` (free-form answers) or ``choice`` (a letter).
        render: ``(row, index) -> text`` for problems whose text is not one field (multiple choice).
        choice_gold: ``(row, index) -> letter`` for multiple-choice benchmarks.
        reported: A reported test set (``False`` for sources of held-out selection slices).
        gated: Access must be requested on the Hub.
    """

    name: str
    title: str
    size: int
    hub: str
    hub_configs: tuple[str | None, ...] = (None,)
    hub_split: str = "test"
    local_path: str = ""
    question_keys: tuple[str, ...] = ("problem", "question", "Question", "Problem")
    gold: Callable[[dict[str, Any]], str | None] = _gold_answer
    kind: str = "math"
    render: Callable[[dict[str, Any], int], str] | None = None
    choice_gold: Callable[[dict[str, Any], int], str | None] | None = None
    reported: bool = True
    gated: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        if not self.local_path:
            object.__setattr__(self, "local_path", f"{self.name}/test.jsonl")

    @property
    def hub_config(self) -> str | None:
        """The single config (``None`` when the default or several)."""
        return self.hub_configs[0] if len(self.hub_configs) == 1 else None

    @property
    def local_file(self) -> str:
        return Path(self.local_path).name

    def question(self, row: dict[str, Any]) -> str | None:
        """The bare question of a row (no options): what decontamination matches on."""
        text = _first(row, self.question_keys)
        return None if text is None else str(text)

    def problem(self, row: dict[str, Any], index: int, source: str = "") -> Problem:
        """A :class:`Problem` from a row; a row without the fields it needs is a one-paragraph error."""
        try:
            if self.render is not None:
                text = self.render(row, index)
                gold = self.choice_gold(row, index) if self.choice_gold else None
            else:
                text = self.question(row)
                gold = self.gold(row)
        except (KeyError, TypeError, IndexError, ValueError) as e:
            raise CftdataError(f"Benchmark {self.name} ({source}) row {index}: missing or malformed field {e}.") from None
        if text is None:
            raise CftdataError(f"Benchmark {self.name} ({source}) row {index}: no problem field "
                               f"({', '.join(self.question_keys)}).")
        return Problem(self.name, index, text, gold, row)


#: Benchmark name -> :class:`Benchmark`.
BENCHMARKS: Registry[Benchmark] = Registry("benchmark")
for _b in (
    Benchmark("math", "MATH", 5000, "EleutherAI/hendrycks_math", _MATH_SUBJECTS, gold=_gold_last_boxed,
              note="last \\boxed{} of solution"),
    Benchmark("minerva_math", "Minerva", 272, "math-ai/minervamath", gold=_gold_last_boxed,
              note="last \\boxed{} of solution (Hub copy: answer)"),
    Benchmark("gsm8k", "GSM8K", 1319, "openai/gsm8k", ("main",), question_keys=("question",), gold=_gold_gsm8k,
              note="after ####"),
    Benchmark("olympiadbench", "OlympiadBench", 675, "Hothan/OlympiadBench", ("OE_TO_maths_en_COMP",),
              hub_split="train", question_keys=("question",), gold=_gold_olympiad,
              note="final_answer[0] without $ (674 on the Hub)"),
    Benchmark("aime24", "AIME24", 30, "HuggingFaceH4/aime_2024", hub_split="train", note="answer"),
    Benchmark("amc23", "AMC23", 40, "math-ai/amc23", note="answer (float)"),
    Benchmark("math500", "MATH-500", 500, "HuggingFaceH4/MATH-500", note="answer"),
    Benchmark("theoremqa", "TheoremQA", 800, "TIGER-Lab/TheoremQA", note="answer"),
    Benchmark("gpqa_diamond", "GPQA", 198, "Idavidrein/gpqa", ("gpqa_diamond",), hub_split="train",
              question_keys=("Question",), kind="choice", render=_gpqa_text, choice_gold=_gpqa_gold, gated=True,
              note="letter of Correct Answer after a fixed shuffle"),
    Benchmark("mmlu_pro", "MMLU-Pro", 12032, "TIGER-Lab/MMLU-Pro", question_keys=("question",), kind="choice",
              render=_mmlu_pro_text, choice_gold=_mmlu_pro_gold, note="answer (letter)"),
    Benchmark("math_train", "MATH train", 7500, "EleutherAI/hendrycks_math", _MATH_SUBJECTS, hub_split="train",
              local_path="math/train.jsonl", gold=_gold_last_boxed, reported=False,
              note="last \\boxed{} of solution"),
):  # fmt: skip
    BENCHMARKS.add(_b.name, _b)

#: The six benchmarks of the paper's main table, in its column order (the "average" is over these).
PAPER_TABLE: tuple[str, ...] = ("math", "minerva_math", "gsm8k", "olympiadbench", "aime24", "amc23")
#: What decontamination checks by default: the seven math test sets whose copies ship with the harnesses.
DEFAULT_DECONTAMINATION: tuple[str, ...] = (
    "math500", "gsm8k", "minerva_math", "olympiadbench", "aime24", "amc23", "theoremqa",
)  # fmt: skip

_ALIASES = {"math-500": "math500", "math_500": "math500", "minerva": "minerva_math", "minerva-math": "minerva_math",
            "olympiad": "olympiadbench", "aime": "aime24", "aime2024": "aime24", "amc": "amc23",
            "theorem_qa": "theoremqa", "gpqa": "gpqa_diamond", "gpqa-diamond": "gpqa_diamond",
            "mmlu-pro": "mmlu_pro", "mmlupro": "mmlu_pro", "math-train": "math_train", "hendrycks_math": "math"}
#: Named groups usable wherever benchmark names are: ``paper`` (the main table), ``all`` (every reported set).
GROUPS: dict[str, tuple[str, ...]] = {
    "paper": PAPER_TABLE,
    "all": tuple(n for n in BENCHMARKS if BENCHMARKS.get(n).reported),
}


def resolve_benchmarks(spec: str | Sequence[str]) -> list[str]:
    """``"math500,gsm8k"`` (or ``paper``, ``all``) -> canonical benchmark names, in order, without duplicates."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in items:
        name = raw.strip().lower()
        if not name:
            continue
        if name in GROUPS:
            names = list(GROUPS[name])
        else:
            name = _ALIASES.get(name, name)
            if name not in BENCHMARKS:
                raise CftdataError(f"Unknown benchmark {raw!r}. Known: {', '.join(BENCHMARKS.names())} "
                                   f"(or {', '.join(GROUPS)}).")
            names = [name]
        out += [n for n in names if n not in out]
    if not out:
        raise CftdataError("No benchmark named: pass e.g. --benchmarks math500,gsm8k.")
    return out


def resolve_local(bench: Benchmark, path: str | Path) -> Path:
    """A local copy: ``path`` itself (a file), ``path/<local_path>`` or ``path/<file name>`` (a folder)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for candidate in (p / bench.local_path, p / bench.local_file):
            if candidate.is_file():
                return candidate
        raise CftdataError(f"Benchmark {bench.name}: no {bench.local_path} or {bench.local_file} under {p} "
                           f"(pass a folder with {bench.local_path}, e.g. QwenLM/Qwen2.5-Math's evaluation/data).")
    if not p.is_file():
        raise CftdataError(f"Benchmark {bench.name}: file {p} does not exist.")
    return p


def _read_jsonl(bench: Benchmark, file: Path, limit: int | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with file.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CftdataError(f"Benchmark {bench.name}: {file}:{lineno} is not JSON ({exc.msg}).") from None
            if limit is not None and len(rows) >= limit:
                break
    return rows


def _read_hub(bench: Benchmark, limit: int | None) -> list[dict[str, Any]]:
    try:
        from datasets import load_dataset
    except ImportError:  # pragma: no cover - datasets is a core dependency
        raise CftdataError("Loading benchmarks from the Hub needs the 'datasets' package.") from None
    rows: list[dict[str, Any]] = []
    for config in bench.hub_configs:
        where = bench.hub + (f"/{config}" if config else "")
        try:
            ds = load_dataset(bench.hub, config, split=bench.hub_split)
        except Exception as exc:  # network, auth, renamed dataset: one paragraph naming the benchmark
            gated = (" It is gated: accept its terms on the Hub and set HF_TOKEN." if bench.gated else "")
            raise CftdataError(
                f"Benchmark {bench.name}: could not load {where} split {bench.hub_split!r} from the Hub "
                f"({type(exc).__name__}: {str(exc)[:200]}).{gated} Pass a data folder or a local JSONL file "
                f"({bench.local_path}) instead."
            ) from None
        for r in ds:
            rows.append(dict(r))
            if limit is not None and len(rows) >= limit:
                return rows
    return rows


def read_rows(name: str, data: str | Path | None = None,
              limit: int | None = None) -> tuple[list[dict[str, Any]], str]:
    """The raw rows of a benchmark (the first ``limit``) and where they came from (``file:...``/``hub:...``).

    ``data`` is a JSONL file, a data folder (``<data>/<local_path>``) or ``None`` for the Hub.
    """
    bench = BENCHMARKS.get(name)
    if data is not None:
        file = resolve_local(bench, data)
        rows, source = _read_jsonl(bench, file, limit), f"file:{file}"
    else:
        rows = _read_hub(bench, limit)
        source = "hub:" + bench.hub + (f"/{bench.hub_config}" if bench.hub_config else "") + f":{bench.hub_split}"
    if not rows:
        raise CftdataError(f"Benchmark {name} ({source}) has no rows.")
    return rows, source


def load_problems(name: str, data: str | Path | None = None, limit: int | None = None,
                  sample: int | None = None, seed: int = 0) -> tuple[list[Problem], str]:
    """The problems of a benchmark and where they came from.

    Args:
        limit: Only the first ``limit`` rows.
        sample: A seeded uniform sample of ``sample`` rows (indices keep the row positions), e.g. the
            500-problem held-out slice of ``math_train``.
        seed: Seed of the sample.

    Raises:
        cftdata.errors.CftdataError: no copy, a malformed row, or fewer rows than ``sample``.
    """
    bench = BENCHMARKS.get(name)
    rows, source = read_rows(name, data, limit)
    positions = list(range(len(rows)))
    if sample is not None:
        if sample > len(rows):
            raise CftdataError(f"Benchmark {name} ({source}) has {len(rows)} rows, fewer than the {sample} asked.")
        positions = sorted(random.Random(seed).sample(positions, sample))
        source += f" (seeded sample: {sample} of {len(rows)}, seed {seed})"
    return [bench.problem(rows[i], i, source) for i in positions], source
