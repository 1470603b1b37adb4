"""Training data: read a cftdata output (or a Hub dataset), render chats, tokenize, build the label mask.

Accepted row formats (detected from the columns):

``alpaca``
    ``instruction``, ``input`` (optional), ``output``: user turn = instruction + "\\n" + input (just the
    instruction when input is empty, as LLaMA-Factory does), assistant turn = output (the critique).
``prompt-completion``
    TRL's conversational ``prompt`` (list of messages) and ``completion`` (one assistant message); plain
    strings are read as one user turn and one assistant turn.
``messages``
    One chat whose last message is the assistant turn to learn.

A row without a system message gets ``system_prompt`` from the training configuration (pinned to
"You are a helpful assistant." by the reference config, so the template's own default never leaks in);
a row that carries its own system message keeps it.

The label mask (:func:`encode_chat`): the chat is rendered with the chat template, and split by text into
the prompt (everything up to and including the generation prompt, e.g. ``<|im_start|>assistant\\n``), the
critique, the end-of-turn marker (the first special token after the critique, e.g. ``<|im_end|>`` or
``<|eot_id|>``) and the template's tail (e.g. the ``\\n`` after ``<|im_end|>``). Each piece is tokenized on
its own, as LLaMA-Factory does and as inference sees it (the prompt is tokenized alone, then the model
writes). Labels are ``-100`` for the prompt and the tail, the token ids for the critique and the
end-of-turn token. Only the last assistant turn is learned.

Truncation to ``max_length`` never drops an example. ``llamafactory`` (the paper's) shares the budget
between prompt and critique exactly as LLaMA-Factory's ``infer_seqlen`` does; ``keep_start`` keeps the
first ``max_length`` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cftdata.errors import CftdataError

__all__ = [
    "CHATML_TEMPLATE",
    "IGNORE_INDEX",
    "LLAMA3_TEMPLATE",
    "EncodedExample",
    "apply_chat_template_setting",
    "detect_format",
    "encode_chat",
    "infer_seqlen",
    "load_training_rows",
    "row_to_messages",
    "tokenize_dataset",
]

IGNORE_INDEX = -100

#: Qwen ChatML (what LLaMA-Factory's ``qwen`` template renders); no default system prompt is inserted:
#: the system turn always comes from the data or from the pinned ``system_prompt``.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

#: A Llama-3-style template (header tokens, trimmed content, ``<|eot_id|>``): used by the tests as a
#: template that differs from ChatML in every respect that matters to the label mask.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim "
    "+ '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

CHATML_SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>")


# -- reading ----------------------------------------------------------------------------------------


def _data_files(path: Path) -> list[str]:
    if path.is_file():
        return [str(path)]
    for folder in (path / "data", path):
        for pattern in ("*.parquet", "*.jsonl", "*.json"):
            files = sorted(str(p) for p in folder.glob(pattern))
            if files:
                return files
    raise CftdataError(
        f"Training data {path}: no data/*.parquet (a cftdata output folder) and no .parquet/.jsonl/.json files."
    )


def load_training_rows(data: str, split: str = "train", config: str | None = None, limit: int | None = None):
    """Load DATA as a ``datasets.Dataset``: a cftdata output folder, a data file, or a Hub dataset id.

    Raises:
        cftdata.errors.CftdataError: nothing usable at ``data``.
    """
    import datasets

    path = Path(data).expanduser()
    if path.exists():
        files = _data_files(path)
        kind = "parquet" if files[0].endswith(".parquet") else "json"
        ds = datasets.load_dataset(kind, data_files=files, split="train")
    elif data.count("/") == 1 and not data.startswith((".", "/", "~")):
        try:
            ds = datasets.load_dataset(data, config, split=split)
        except Exception as e:  # any Hub failure is a user-facing one-liner
            raise CftdataError(f"Training data {data!r}: not a local path, and loading it from the Hub failed: "
                               f"{type(e).__name__}: {str(e)[:300]}") from None
    else:
        raise CftdataError(f"Training data {data!r}: no such file or folder (and not a Hub id like owner/name).")
    if len(ds) == 0:
        raise CftdataError(f"Training data {data!r} has no rows.")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    detect_format(ds.column_names, data)
    return ds


def detect_format(columns: Sequence[str], origin: str = "data") -> str:
    """``alpaca``, ``prompt-completion`` or ``messages`` from a dataset's column names."""
    cols = set(columns)
    if {"instruction", "output"} <= cols:
        return "alpaca"
    if {"prompt", "completion"} <= cols:
        return "prompt-completion"
    if "messages" in cols:
        return "messages"
    raise CftdataError(
        f"Training data {origin}: cannot tell its format from the columns {sorted(cols)}. Expected "
        "instruction/input/output (alpaca), prompt/completion (TRL conversational) or messages."
    )


def _as_messages(value: Any, role: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return [{"role": str(m["role"]), "content": str(m["content"] or "")} for m in value]


def row_to_messages(row: dict[str, Any], fmt: str, system_prompt: str | None) -> list[dict[str, str]]:
    """One row as a chat ending in the assistant turn to learn, with the system turn settled."""
    if fmt == "alpaca":
        instruction, extra = row.get("instruction") or "", row.get("input") or ""
        user = f"{instruction}\n{extra}" if extra else instruction
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": row.get("output") or ""}]
    elif fmt == "prompt-completion":
        msgs = _as_messages(row["prompt"], "user") + _as_messages(row["completion"], "assistant")
    else:
        msgs = _as_messages(row["messages"], "user")
    if not msgs or msgs[-1]["role"] != "assistant":
        raise CftdataError(f"A training row does not end with an assistant turn: {str(row)[:200]}")
    if msgs[0]["role"] != "system" and system_prompt is not None:
        msgs = [{"role": "system", "content": system_prompt}, *msgs]
    return msgs


# -- templates ----------------------------------------------------------------------------------------


def apply_chat_template_setting(tokenizer: Any, setting: str) -> list[str]:
    """Install the configured chat template on ``tokenizer``; returns special tokens that had to be added.

    ``chatml`` forces Qwen ChatML (adding ``<|im_start|>``/``<|im_end|>`` as special tokens when the
    vocabulary lacks them: the caller must then resize the model's embeddings); ``model`` keeps the
    tokenizer's own template; anything else is a path to a Jinja file.
    """
    added: list[str] = []
    if setting == "chatml":
        vocab = tokenizer.get_vocab()
        missing = [t for t in CHATML_SPECIAL_TOKENS if t not in vocab]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing})
            added = missing
        tokenizer.chat_template = CHATML_TEMPLATE
    elif setting == "model":
        if not getattr(tokenizer, "chat_template", None):
            raise CftdataError("chat_template=model, but this tokenizer has no chat template; use chatml or a "
                               ".jinja file (--set chat_template=path/to/template.jinja).")
    else:
        path = Path(setting).expanduser()
        if not path.is_file():
            raise CftdataError(f"chat_template={setting!r}: expected chatml, model, or a path to a .jinja file.")
        tokenizer.chat_template = path.read_text(encoding="utf-8")
    return added


# -- encoding ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedExample:
    """One tokenized training example."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """LLaMA-Factory's split of ``cutoff_len`` between prompt (source) and critique (target) tokens.

    A short target keeps all of itself; a short source keeps all of itself; otherwise both are cut in
    proportion to their lengths. Returns the new (source_len, target_len).
    """
    if target_len * 2 < cutoff_len:
        max_target_len = cutoff_len
    elif source_len * 2 < cutoff_len:
        max_target_len = cutoff_len - source_len
    else:
        max_target_len = int(cutoff_len * (target_len / (source_len + target_len)))
    new_target_len = min(max_target_len, target_len)
    max_source_len = max(cutoff_len - new_target_len, 0)
    new_source_len = min(max_source_len, source_len)
    return new_source_len, new_target_len


def _special_token_strings(tokenizer: Any) -> list[str]:
    specials = set()
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    for tok in decoder.values():
        if getattr(tok, "special", False):
            specials.add(str(tok))
    specials.update(t for t in getattr(tokenizer, "all_special_tokens", []) or [] if t)
    return sorted(specials, key=len, reverse=True)


def _render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def encode_chat(
    tokenizer: Any,
    messages: list[dict[str, str]],
    max_length: int,
    truncation: str = "llamafactory",
    specials: Sequence[str] | None = None,
) -> EncodedExample:
    """Tokenize a chat and mask everything but the last assistant turn and its end-of-turn token.

    Args:
        tokenizer: A transformers tokenizer with the chat template already installed.
        messages: The chat; the last message is the assistant turn to learn.
        max_length: Cutoff in tokens (the example is truncated, never dropped).
        truncation: ``llamafactory`` or ``keep_start`` (see the module docstring).
        specials: The tokenizer's special-token strings (computed when omitted).

    Raises:
        cftdata.errors.CftdataError: the template renders the prompt differently from the chat's start,
            or drops the assistant's text.
    """
    prompt_text = _render(tokenizer, messages[:-1], add_generation_prompt=True)
    full_text = _render(tokenizer, messages, add_generation_prompt=False)
    if not full_text.startswith(prompt_text):
        raise CftdataError(
            "The chat template renders the prompt with add_generation_prompt=True differently from the start "
            "of the full chat, so the critique cannot be located; use --set chat_template=chatml or a template "
            "that renders both the same way."
        )
    rest = full_text[len(prompt_text):]
    answer = messages[-1]["content"]
    start = rest.find(answer) if answer else 0
    if start < 0 and answer.strip():
        answer = answer.strip()  # templates that trim the content (Llama 3)
        start = rest.find(answer)
    if start < 0:
        raise CftdataError("The chat template does not render the assistant's text verbatim, so the critique "
                           "cannot be located for the label mask.")
    gap, after = rest[:start], rest[start + len(answer):]
    specials = _special_token_strings(tokenizer) if specials is None else specials
    hits = [(after.find(s), s) for s in specials if s and after.find(s) >= 0]
    if hits:
        pos, tok = min(hits, key=lambda h: (h[0], -len(h[1])))
        end_text, tail = after[: pos + len(tok)], after[pos + len(tok):]
        end_ids = _ids(tokenizer, end_text)
    else:  # no end-of-turn marker in the template: learn what follows and then EOS
        end_text, tail = after, ""
        end_ids = _ids(tokenizer, end_text)
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is not None and (not end_ids or end_ids[-1] != eos):
            end_ids.append(int(eos))
    source = _ids(tokenizer, prompt_text) + _ids(tokenizer, gap)
    target = _ids(tokenizer, answer) + end_ids
    tail_ids = _ids(tokenizer, tail)
    total = len(source) + len(target) + len(tail_ids)
    truncated = total > max_length
    if truncated:
        if truncation == "llamafactory":
            src_len, tgt_len = infer_seqlen(len(source), len(target), max_length)
            source, target, tail_ids = source[:src_len], target[:tgt_len], []
        else:
            keep = max_length
            source = source[:keep]
            target = target[: max(keep - len(source), 0)]
            tail_ids = tail_ids[: max(keep - len(source) - len(target), 0)]
    input_ids = source + target + tail_ids
    labels = [IGNORE_INDEX] * len(source) + list(target) + [IGNORE_INDEX] * len(tail_ids)
    return EncodedExample(input_ids=input_ids, labels=labels, truncated=truncated)


def tokenize_dataset(ds: Any, tokenizer: Any, max_length: int, truncation: str, system_prompt: str | None,
                     num_proc: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Map a raw dataset to ``input_ids``/``labels`` columns; returns it and counts (rows, truncated)."""
    fmt = detect_format(ds.column_names)
    specials = _special_token_strings(tokenizer)

    def _encode(row: dict[str, Any]) -> dict[str, Any]:
        ex = encode_chat(tokenizer, row_to_messages(row, fmt, system_prompt), max_length, truncation, specials)
        return {"input_ids": ex.input_ids, "labels": ex.labels, "truncated": ex.truncated}

    out = ds.map(_encode, remove_columns=ds.column_names, num_proc=num_proc, desc="Tokenizing (cftdata)")
    truncated = int(sum(out["truncated"]))
    out = out.remove_columns(["truncated"])
    return out, {"rows": len(out), "truncated": truncated, "format": fmt}
