"""Output formats (a registry): how a critiqued row becomes a training example.

* ``alpaca`` (default, what TIGER-Lab/WebInstruct-CFT publishes): ``instruction`` = the paper's fixed
  instruction, ``input`` = ``"Question:\\n{question}\\n\\nSolution:\\n{response}"``, ``output`` = the critique.
* ``messages``: one chat (optional system turn, user = instruction + "\\n" + input, assistant = critique).
* ``prompt-completion``: TRL's conversational prompt/completion pair (completion-only loss by default).
* ``sft-alpaca``: the paper's SFT baselines: ``instruction`` = question, ``input`` = "", ``output`` = the response.

Provenance columns (id, source, models, verdict...) follow unless ``output.provenance`` is false.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from cftdata.prompts import CFT_INSTRUCTION
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
    return f"Question:\n{question}\n\nSolution:\n{response}"


@dataclass(frozen=True)
class OutputFormat:
    name: str
    columns: dict[str, pa.DataType]
    render: Callable[[Row, str | None], dict]


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


def _sft_alpaca(row: Row, system: str | None) -> dict:
    return {"instruction": row["question"], "input": "", "output": row["response"]}


FORMATS: Registry[OutputFormat] = Registry("output format")
FORMATS.add("sft-alpaca", OutputFormat("sft-alpaca", {"instruction": pa.string(), "input": pa.string(),
                                                      "output": pa.string()}, _sft_alpaca))
FORMATS.add("alpaca", OutputFormat("alpaca", {"instruction": pa.string(), "input": pa.string(),
                                              "output": pa.string()}, _alpaca))
FORMATS.add("messages", OutputFormat("messages", {"messages": _MSG}, _messages))
FORMATS.add("prompt-completion", OutputFormat("prompt-completion", {"prompt": _MSG, "completion": _MSG},
                                              _prompt_completion))


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
