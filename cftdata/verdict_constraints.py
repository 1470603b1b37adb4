"""Constrained decoding of the critique's verdict line (``teacher.verdict_constraint``), by server dialect.

The teacher writes its critique freely; the constraint only makes sure the text ENDS in the CFT paper's
verdict line, ``\\nConclusion: right [END]`` or ``\\nConclusion: wrong [END]``, so the verdict rule always
finds one. The verdict is still the teacher's: the grammar allows both words and the model picks.
The critique body is capped at :func:`body_chars` characters (about 2 per token of ``params.max_tokens``),
so the verdict line fits in the token budget; a teacher that concludes on its own ends there.

The same pattern is sent in the request field each engine understands:

``gbnf``
    llama.cpp: a grammar in ``grammar`` for ``openai`` pointed at a llama.cpp server (``llama-server``,
    ``python -m llama_cpp.server``); in process (``local``), free text up to "Conclusion", then the verdict line
    under a grammar (:func:`verdict_tail`).
``vllm``
    ``structured_outputs: {regex: ...}``: vLLM >= 0.10.2 (``openai`` backend at ``vllm serve``).
``vllm-guided``
    ``guided_regex``: vLLM before 0.12 (the field was removed there).
``sglang``
    ``regex``: SGLang's OpenAI-compatible server.

This module imports nothing but the registry, so the recipe can validate the name cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cftdata.registry import Registry

__all__ = ["VERDICT_CONSTRAINTS", "VerdictConstraint", "body_chars", "verdict_gbnf", "verdict_regex", "verdict_tail"]

#: The verdict words the line may hold (the paper's "Conclusion: right/wrong [END]").
VERDICT_WORDS = ("right", "wrong")
#: Characters of critique body allowed per token of ``max_tokens`` (English prose runs ~4 per token, digit-heavy math ~2).
CHARS_PER_TOKEN = 2
#: Tokens kept for the verdict line itself.
VERDICT_LINE_TOKENS = 16
#: Body cap when the recipe sets no ``max_tokens``.
DEFAULT_BODY_CHARS = 4000


def body_chars(max_tokens: int | None) -> int:
    """The critique body's character cap for a token budget (at least 1 character)."""
    if max_tokens is None:
        return DEFAULT_BODY_CHARS
    return max(1, CHARS_PER_TOKEN * (max_tokens - VERDICT_LINE_TOKENS))


def verdict_gbnf(max_chars: int) -> str:
    """A llama.cpp GBNF grammar: up to ``max_chars`` characters, then the verdict line."""
    words = " | ".join(f'"{w}"' for w in VERDICT_WORDS)
    return (f"root ::= body \"\\nConclusion: \" verdict \" [END]\"\n"
            f"body ::= [^\\x00]{{1,{max_chars}}}\n"
            f"verdict ::= {words}\n")


def verdict_regex(max_chars: int) -> str:
    """The same pattern as a regular expression (vLLM, SGLang)."""
    return rf"[\s\S]{{1,{max_chars}}}\nConclusion: ({'|'.join(VERDICT_WORDS)}) \[END\]"


#: The verdict line alone, as a grammar (the end of a ``grammar_tail``).
VERDICT_TAIL_GBNF = f"root ::= ({' | '.join(f'{chr(34)}{w}{chr(34)}' for w in VERDICT_WORDS)}) \" [END]\"\n"


def verdict_tail() -> dict[str, Any]:
    """The in-process llama.cpp form (``local`` backend): the critique is decoded freely until the model writes
    "Conclusion" (or its budget less :data:`VERDICT_LINE_TOKENS` runs out), then "\\nConclusion: " follows and the
    verdict word is decoded under a grammar. The body ends where the model concludes (not at a character cap),
    and llama.cpp does not check the grammar against the whole vocabulary at every token of the body (that cost
    ~1.4x the time per token on the bundled model, 2 loaded cores)."""
    return {"stop": "Conclusion", "join": "\nConclusion: ", "grammar": VERDICT_TAIL_GBNF,
            "max_tokens": VERDICT_LINE_TOKENS}


@dataclass(frozen=True)
class VerdictConstraint:
    """A dialect: the request fields it adds (by backend), and the backends that can send them."""

    name: str
    fields: Callable[[int, str], dict[str, Any]]
    backends: tuple[str, ...]
    engines: str

    def request_params(self, max_tokens: int | None, backend: str = "openai") -> dict[str, Any]:
        """The fields to add to each critique request sent through ``backend``."""
        return self.fields(body_chars(max_tokens), backend)


VERDICT_CONSTRAINTS: Registry[VerdictConstraint] = Registry("verdict constraint")

for _c in (
    VerdictConstraint("gbnf", lambda n, b: {"grammar_tail": verdict_tail()} if b == "local"
                      else {"grammar": verdict_gbnf(n)}, ("local", "openai"),
                      "llama.cpp (backend local, or openai at a llama.cpp server)"),
    VerdictConstraint("vllm", lambda n, b: {"structured_outputs": {"regex": verdict_regex(n)}}, ("openai",),
                      "vLLM >= 0.10.2 (backend openai at vllm serve)"),
    VerdictConstraint("vllm-guided", lambda n, b: {"guided_regex": verdict_regex(n)}, ("openai",),
                      "vLLM < 0.12 (backend openai at vllm serve)"),
    VerdictConstraint("sglang", lambda n, b: {"regex": verdict_regex(n)}, ("openai",),
                      "SGLang (backend openai at an SGLang server)"),
):
    VERDICT_CONSTRAINTS.add(_c.name, _c)
