"""Output formats (a registry): how a critiqued row becomes a training example.

Critique (CFT) layouts, each byte for byte what its source wrote:

* ``alpaca`` (default, what TIGER-Lab/WebInstruct-CFT publishes): ``instruction`` = the paper's fixed
  instruction, ``input`` = ``"Question:\\n{question}\\n\\nSolution:\\n{response}"``, ``output`` = the critique.
* ``alpaca-authors``: the authors' own training rows (Wyyyb/CriticCoT ``single_format_cft``, e.g.
  ``build_webinstruct_on-policy_cft_80k_0120.py``, the self-generated-response run): ``instruction`` ends in
  two newlines, ``input`` = ``question + "\\nSolution:\\n" + response + "\\n"`` (no ``Question:`` label).
* ``alpaca-batch``: the MetaMathQA / NuminaMath training rows (``postprocess_metamath_batch_data_0124.py``,
  ``postprocess_numina_batch_data_0124.py``): ``single_format_cft`` applied to the question and answer parsed
  back out of the ``cft-batch`` user message, whose answer still carries the f-string's trailing
  ``"\\n    "``: ``input`` = ``question + "\\nSolution:\\n" + response + "\\n    \\n"``.
* ``alpaca-mini``: the GPT-4o-mini ablation rows (``postprocess_wi_mini_batch_data_0127.py``): the
  ``cft-batch-alpaca`` user message split on ``"\\nSolution:\\n"``, so the question keeps its label:
  ``input`` = ``"Question:\\n{question}\\n\\nSolution:\\n{response}\\n"``.
* ``messages``: one chat (optional system turn, user = instruction + "\\n" + input, assistant = critique).
* ``prompt-completion``: TRL's conversational prompt/completion pair (completion-only loss by default).

SFT layouts (no critique):

* ``sft-paper``: the authors' SFT baseline instruction (``fetch_webinstruct_ori_sft_80k_0123.py``):
  ``instruction`` = "Please reason step by step to solve the following question.", ``input`` = question,
  ``output`` = the response.
* ``sft-alpaca``: ``instruction`` = question, ``input`` = "", ``output`` = the response.

RL layouts (prompts for on-policy training with a verifiable reward):

* ``grpo-prompts``: TRL's ``GRPOTrainer`` dataset: ``prompt`` = the question as a conversational user turn,
  ``solution`` = the reference answer (extra columns reach TRL's reward functions as keyword arguments, e.g.
  ``trl.rewards.accuracy_reward(completions, solution)``). One row per question.
* ``verl-prompts``: verl's RL parquet fields: ``data_source``, ``prompt`` (chat list), ``ability`` (``math``),
  ``reward_model`` = ``{style: rule, ground_truth: <reference answer>}``, ``extra_info``. One row per question.
* ``grpo-critique``: (question, solution) -> a verifiable right/wrong label (critique RL): ``prompt`` = the CFT
  instruction, question and response as a user turn, ``label`` = ``right``/``wrong``, ``label_source``.
* ``verl-critique``: the same in verl's fields (``ability`` ``critique``, ``reward_model.ground_truth`` = label).

The label is the verifier's (``verify``: correct -> right, incorrect -> wrong) when it decided, else the teacher's
verdict (``label_source`` says which); a row neither decided is a ``format:no_label`` reject, a prompt row
without a reference answer a ``format:no_reference_answer`` one. The prompt layouts write one row per question:
later rows of the same question (several responses or teachers) are rejects ``format:same_prompt``.

Critique-and-refine layout (needs a ``refine`` section):

* ``critique-refine``: TRL's conversational prompt/completion pair of critique-guided distillation: the user turn
  holds the refine instruction, the question, the response and its critique; the completion is the refined
  response (columns ``refined`` and ``refiner`` follow with provenance).

Provenance columns (id, source, models, verdict...) follow unless ``output.provenance`` is false.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from cftdata.prompts import CFT_INSTRUCTION, SFT_INSTRUCTION
from cftdata.prompts.refine import REFINE_INSTRUCTION
from cftdata.registry import Registry
from cftdata.rows import Row

_MSG = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

PROVENANCE: dict[str, pa.DataType] = {
    "id": pa.string(),
    "question_id": pa.string(),
    "source": pa.string(),
    "response_source": pa.string(),
    "teacher": pa.string(),
    "verdict": pa.string(),
    "reference_answer": pa.string(),
    "critique_finish_reason": pa.string(),
    "critique_input_tokens": pa.int64(),
    "critique_output_tokens": pa.int64(),
    "meta": pa.string(),
}


def alpaca_input(question: str, response: str) -> str:
    """The ``input`` of the published WebInstruct-CFT rows."""
    return f"Question:\n{question}\n\nSolution:\n{response}"


#: The instruction of the authors' own training files: the published one plus two newlines.
AUTHORS_INSTRUCTION = CFT_INSTRUCTION + "\n\n"

_ALPACA = {"instruction": pa.string(), "input": pa.string(), "output": pa.string()}


@dataclass(frozen=True)
class OutputFormat:
    """A layout: its columns, how a row renders, and what a reader needs to know about it.

    ``family`` is the on-disk shape (``alpaca``, ``messages``, ``prompt-completion``); ``sft_question`` names
    the column holding the question in SFT layouts (``None`` for critique layouts).
    """

    name: str
    columns: dict[str, pa.DataType]
    render: Callable[[Row, str | None], dict]
    family: str = "alpaca"
    sft_question: str | None = None
    #: A row column whose repeats are not written (one row per question): they become ``format:same_prompt``.
    one_per: str | None = None
    #: Why a row cannot be written in this layout, as (reason, detail) of a ``format:<reason>`` reject, or None.
    refuse: Callable[[Row], tuple[str, str] | None] | None = None


def _alpaca(row: Row, system: str | None) -> dict:
    return {"instruction": CFT_INSTRUCTION, "input": alpaca_input(row["question"], row["response"]),
            "output": row["critique"]}


def _chat(row: Row, system: str | None) -> tuple[list[dict], dict]:
    user = CFT_INSTRUCTION + "\n" + alpaca_input(row["question"], row["response"])
    prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return prompt, {"role": "assistant", "content": row["critique"]}


def _messages(row: Row, system: str | None) -> dict:
    prompt, answer = _chat(row, system)
    return {"messages": [*prompt, answer]}


def _prompt_completion(row: Row, system: str | None) -> dict:
    prompt, answer = _chat(row, system)
    return {"prompt": prompt, "completion": [answer]}


def _alpaca_authors(row: Row, system: str | None) -> dict:
    return {"instruction": AUTHORS_INSTRUCTION, "input": f"{row['question']}\nSolution:\n{row['response']}\n",
            "output": row["critique"]}


def _alpaca_batch(row: Row, system: str | None) -> dict:
    return {"instruction": AUTHORS_INSTRUCTION,
            "input": f"{row['question']}\nSolution:\n{row['response']}\n    \n", "output": row["critique"]}


def _alpaca_mini(row: Row, system: str | None) -> dict:
    return {"instruction": AUTHORS_INSTRUCTION, "input": alpaca_input(row["question"], row["response"]) + "\n",
            "output": row["critique"]}


def _sft_alpaca(row: Row, system: str | None) -> dict:
    return {"instruction": row["question"], "input": "", "output": row["response"]}


def _sft_paper(row: Row, system: str | None) -> dict:
    return {"instruction": SFT_INSTRUCTION, "input": row["question"], "output": row["response"]}


def _user(text: str, system: str | None) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


def rl_label(row: Row) -> tuple[str, str]:
    """(label, where it came from) of a (question, response) pair: the verifier when it decided, else the teacher."""
    status = row.get("verify_status")
    if status in ("correct", "incorrect"):
        return ("right" if status == "correct" else "wrong"), "verifier"
    verdict = row.get("verdict")
    if verdict in ("right", "wrong"):
        return verdict, "teacher"
    return "unknown", "none"


def _critique_prompt(row: Row, system: str | None) -> list[dict]:
    return _user(CFT_INSTRUCTION + "\n" + alpaca_input(row["question"], row["response"]), system)


def _grpo_prompts(row: Row, system: str | None) -> dict:
    return {"prompt": _user(row["question"], system), "solution": row.get("reference_answer")}


def _grpo_critique(row: Row, system: str | None) -> dict:
    label, source = rl_label(row)
    return {"prompt": _critique_prompt(row, system), "label": label, "label_source": source}


def _extra_info(row: Row) -> dict:
    return {"split": "train", "id": row.get("id"), "question_id": row.get("question_id") or row.get("id"),
            "question": row["question"]}


def _verl_prompts(row: Row, system: str | None) -> dict:
    return {"data_source": row.get("source"), "prompt": _user(row["question"], system), "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": row.get("reference_answer")},
            "extra_info": _extra_info(row)}


def _verl_critique(row: Row, system: str | None) -> dict:
    label, source = rl_label(row)
    return {"data_source": row.get("source"), "prompt": _critique_prompt(row, system), "ability": "critique",
            "reward_model": {"style": "rule", "ground_truth": label},
            "extra_info": {**_extra_info(row), "response": row["response"], "label_source": source}}


def _critique_refine(row: Row, system: str | None) -> dict:
    user = (f"{REFINE_INSTRUCTION}\n\nQuestion:\n{row['question']}\n\nSolution:\n{row['response']}\n\n"
            f"Critique:\n{row['critique']}")
    return {"prompt": _user(user, system), "completion": [{"role": "assistant", "content": row.get("refined")}]}


def _needs_reference(row: Row) -> tuple[str, str] | None:
    if (row.get("reference_answer") or "").strip():
        return None
    return "no_reference_answer", "an RL prompt needs the question's reference answer (source.answer)"


def _needs_label(row: Row) -> tuple[str, str] | None:
    if rl_label(row)[0] != "unknown":
        return None
    return "no_label", "neither the verifier nor the teacher decided right or wrong"


_REWARD = pa.struct([("style", pa.string()), ("ground_truth", pa.string())])
_EXTRA = [("split", pa.string()), ("id", pa.string()), ("question_id", pa.string()), ("question", pa.string())]
_VERL = {"data_source": pa.string(), "prompt": _MSG, "ability": pa.string(), "reward_model": _REWARD}

FORMATS: Registry[OutputFormat] = Registry("output format")
for _f in (
    OutputFormat("alpaca", _ALPACA, _alpaca),
    OutputFormat("alpaca-authors", _ALPACA, _alpaca_authors),
    OutputFormat("alpaca-batch", _ALPACA, _alpaca_batch),
    OutputFormat("alpaca-mini", _ALPACA, _alpaca_mini),
    OutputFormat("messages", {"messages": _MSG}, _messages, family="messages"),
    OutputFormat("prompt-completion", {"prompt": _MSG, "completion": _MSG}, _prompt_completion,
                 family="prompt-completion"),
    OutputFormat("sft-alpaca", _ALPACA, _sft_alpaca, sft_question="instruction"),
    OutputFormat("sft-paper", _ALPACA, _sft_paper, sft_question="input"),
    OutputFormat("critique-refine", {"prompt": _MSG, "completion": _MSG}, _critique_refine,
                 family="prompt-completion"),
    OutputFormat("grpo-prompts", {"prompt": _MSG, "solution": pa.string()}, _grpo_prompts, family="rl",
                 one_per="question_id", refuse=_needs_reference),
    OutputFormat("grpo-critique", {"prompt": _MSG, "label": pa.string(), "label_source": pa.string()},
                 _grpo_critique, family="rl", refuse=_needs_label),
    OutputFormat("verl-prompts", {**_VERL, "extra_info": pa.struct(_EXTRA)}, _verl_prompts, family="rl",
                 one_per="question_id", refuse=_needs_reference),
    OutputFormat("verl-critique", {**_VERL, "extra_info": pa.struct([*_EXTRA, ("response", pa.string()),
                                                                    ("label_source", pa.string())])},
                 _verl_critique, family="rl", refuse=_needs_label),
):
    FORMATS.add(_f.name, _f)


class Formatter:
    """Renders rows in one format, with or without provenance, against a fixed schema."""

    def __init__(self, name: str, provenance: bool = True, system_prompt: str | None = None,
                 extra_columns: dict[str, pa.DataType] | None = None) -> None:
        self.fmt = FORMATS.get(name)
        self.system = system_prompt
        cols = dict(self.fmt.columns)
        if provenance:
            cols.update(PROVENANCE)
            cols.update(extra_columns or {})
        self.provenance = provenance
        self.schema = pa.schema(list(cols.items()))

    def render(self, row: Row) -> dict:
        out = self.fmt.render(row, self.system)
        if self.provenance:
            for name in self.schema.names:
                if name not in out:
                    out[name] = row.get(name)
        return out
