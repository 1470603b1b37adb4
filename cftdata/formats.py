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

Provenance columns (id, source, models, verdict...) follow unless ``output.provenance`` is false.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from cftdata.prompts import CFT_INSTRUCTION, SFT_INSTRUCTION
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
