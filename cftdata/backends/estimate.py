"""Estimates instead of calls, for ``cftdata build --dry-run``.

A dry run is the real build with :class:`~cftdata.backends.caller.EstimatingCaller` in place of the model
caller: every stage runs on
the real rows (dedup, decontamination, verification of existing answers, ``n`` samples, ``teacher.backend:
none``/``existing``...), so the calls it counts are exactly the calls the build would make. Answers already in
the request cache are used as they are (they cost nothing); every other request is answered with an
estimate:

* input tokens: counted with tiktoken for OpenAI models when its encoding files are available (they are
  downloaded once; offline without them), else approximated as characters / 4 (English prose and LaTeX
  average 3.5-4.5 characters per token, so expect +-20%);
* output tokens: ``options.expected_output_tokens`` when the recipe gives it, else ``params.max_tokens`` (an
  upper bound), else 512;
* text: a marker (:func:`estimate_text`) that later prompts count as that many tokens (a critique of a
  response that was not generated is priced with a response of the expected length), and that stages which
  judge text (verify) recognise with :func:`is_estimate` and let through: what they would drop is unknown.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from cftdata.backends.base import Request
from cftdata.recipe import ModelSpec

_MARK = "\u27e8dry run: ~{n} tokens not generated{tag}\u27e9"
_MARK_RE = re.compile("\u27e8dry run: ~([0-9]+) tokens not generated(?: #[0-9a-f]+)?\u27e9")

Counter = Callable[[str], int]


def estimate_text(tokens: int, tag: str = "") -> str:
    """The stand-in text of an answer that a dry run did not generate. ``tag`` (hex: the request's cache key)
    keeps the stand-ins of different requests different, so that later prompts built on them (the critiques
    of ``n`` samples, of several generators) are counted as the distinct calls the build makes."""
    return _MARK.format(n=tokens, tag=f" #{tag}" if tag else "")


def is_estimate(text: str | None) -> bool:
    """Whether ``text`` holds a stand-in for a model answer a dry run did not generate."""
    return bool(text) and _MARK_RE.search(text) is not None


@lru_cache(maxsize=8)
def _tiktoken_encoder(model: str) -> Counter | None:
    try:
        import tiktoken

        enc = tiktoken.encoding_for_model(model)
        enc.encode("probe")
    except Exception:  # not installed, unknown model, or the encoding file cannot be fetched offline
        return None
    return lambda text: len(enc.encode(text, disallowed_special=()))


def approx_tokens(text: str) -> int:
    """Characters / 4, rounded up."""
    return (len(text) + 3) // 4


def token_counter(spec: ModelSpec) -> tuple[Counter, str]:
    """(count, how it counts): tiktoken for OpenAI models where available, else characters / 4. Stand-in
    texts count as the tokens they stand for."""
    enc = _tiktoken_encoder(spec.model) if spec.backend.startswith("openai") else None
    base, how = (enc, "tiktoken") if enc is not None else (approx_tokens, "approx(chars/4)")

    def count(text: str) -> int:
        marked = [int(m) for m in _MARK_RE.findall(text)]
        return base(_MARK_RE.sub("", text) if marked else text) + sum(marked)

    return count, how


def expected_output(spec: ModelSpec) -> int:
    """Output tokens assumed per call."""
    return int(spec.options.get("expected_output_tokens") or spec.params.max_tokens or 512)


def count_request(request: Request, count: Counter) -> int:
    """Input tokens of a request: its messages' contents, or its raw prompt."""
    if request.is_raw:
        return count(request.prompt or "")
    return sum(count(c) for _, c in request.messages)
