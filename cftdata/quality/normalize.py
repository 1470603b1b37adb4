"""Question-text normalization, word tokenization and vectorized n-gram hashing.

Everything the dedup and decontamination indexes compare goes through :func:`normalize_text`
first, so two questions that differ only in case, Unicode form, whitespace, sentence punctuation
or LaTeX spacing noise normalize to the same string::

    >>> normalize_text("What is  $x + 1$ , if  $x=2$?")
    'what is x+1 if x=2'
    >>> normalize_text("WHAT IS \\\\(x+1\\\\) if \\\\(x = 2\\\\) ?")
    'what is x+1 if x=2'

Math content is kept: operators, digits, decimal points and commas between digits survive
(``x+1`` and ``x-1`` stay different, ``3.5`` does not become ``35``).

:func:`word_tokens` splits a normalized string into words and numbers (``3.5`` is one token,
symbols are dropped), which is what the word n-grams of near-dup and decontamination are built on.

The hashing helpers (:class:`TokenHasher`, :func:`ngram_hashes`) turn a whole shard of texts into
one flat ``uint64`` array of n-gram hashes with per-text offsets, so the expensive parts run in
numpy instead of a Python loop per n-gram. Hashes are deterministic across processes and runs
(BLAKE2b for tokens, fixed constants for n-grams; Python's randomized ``hash`` is never used).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from itertools import chain
from typing import Literal

import numpy as np

__all__ = [
    "ShingleUnit",
    "TokenHasher",
    "mix64",
    "hash_windows",
    "ngram_hashes",
    "ngrams_from_tokens",
    "normalize_text",
    "splitmix64_sequence",
    "text_digest",
    "token_hashes",
    "word_tokens",
]

ShingleUnit = Literal["word", "char"]

# --- normalization --------------------------------------------------------------------------------

_QUOTES = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"'}
)
# LaTeX commands that only change spacing, sizing or style: dropped.
_LATEX_NOISE = re.compile(
    r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg|displaystyle|textstyle"
    r"|quad|qquad|enspace|thinspace|medspace|thickspace|negthinspace|limits|nolimits)(?![a-zA-Z])"
    r"|\\\\|\\\$|\\[,;:! ]|~|\$|\\\(|\\\)|\\\[|\\\]"
)
_LATEX_FRAC = re.compile(r"\\[dt]frac(?![a-zA-Z])")
# \text{cm} -> cm (one level of braces; good enough for units and words inside math).
_LATEX_TEXT = re.compile(
    r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}"
)
# x^{2} -> x^2, a_{n} -> a_n (single-character scripts only).
_LATEX_SCRIPT = re.compile(r"([\^_])\{(\w)\}")
# Sentence punctuation and double quotes, unless between two digits (3.5, 1,000, 1:2 survive).
# (Written to start with a character class, which the regex engine scans for quickly.)
_PUNCT = re.compile(r'[.,;:!?"](?!(?<=\d[.,;:!?])\d)')
# A single space before a symbol (not a word character). Applied to the string and to its reverse,
# it removes the spaces on both sides of symbols: "x + 1" == "x+1". (Faster than a lookbehind.)
_SPACE_BEFORE_SYMBOL = re.compile(r" (?=[^\w ]|_)")


def normalize_text(text: str) -> str:
    """Normalize a question for exact dedup and n-gram comparison.

    Steps, in order: Unicode NFKC (skipped for pure ASCII, which NFKC leaves unchanged); curly
    quotes to straight ones; LaTeX noise removed (``$``, ``\\(`` ``\\)`` ``\\[`` ``\\]``
    delimiters, ``\\left``/``\\right`` and sizing commands, ``\\,`` ``\\;`` ``\\quad`` and other
    spacing, ``~``, ``\\\\`` line breaks, escaped ``\\$``), ``\\dfrac``/``\\tfrac`` to ``\\frac``,
    ``\\text{..}``-style wrappers unwrapped; lower-case; sentence punctuation (``. , ; : ! ?``) and
    double quotes removed unless between two digits; whitespace collapsed and removed around
    symbols; ``x^{2}`` to ``x^2``. Idempotent on real text (not on every adversarial string).
    """
    if not text:
        return ""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    if "\\" in text or "$" in text or "~" in text:
        text = _LATEX_TEXT.sub(r" \1 ", text)
        text = _LATEX_FRAC.sub(r"\\frac", text)
        text = _LATEX_NOISE.sub(" ", text)
    text = " ".join(_PUNCT.sub(" ", text.lower()).split())
    text = _SPACE_BEFORE_SYMBOL.sub("", text)
    text = _SPACE_BEFORE_SYMBOL.sub("", text[::-1])[::-1]
    if "{" in text:
        text = _LATEX_SCRIPT.sub(r"\1\2", text)
    return text


# Symbols that separate tokens: ASCII punctuation except "." and "," (which normalization keeps only
# inside numbers: 3.5, 1,000) plus common Unicode math symbols.
_SEPARATORS = "!\"#$%&'()*+-/:;<=>?@[\\]^_`{|}~" + "×÷±∓√∞≤≥≠≈≡→←↔⇒⇔∈∉⊂⊆∪∩∑∏∫∂∇°·−′″"
_TO_SPACE = str.maketrans(dict.fromkeys(_SEPARATORS, " "))


def word_tokens(text: str, *, normalized: bool = False) -> list[str]:
    """Tokens of ``text`` after :func:`normalize_text` (pass ``normalized=True`` if it already is).

    A token is a maximal run of characters that are neither whitespace nor symbols (ASCII
    punctuation and common math symbols; ``.`` and ``,`` survive normalization only inside numbers,
    so ``3.5`` and ``1,000`` are single tokens). LaTeX commands lose their backslash.
    ``"Find $x^2+3x$, then \\frac{1}{2}."`` -> ``["find", "x", "2", "3x", "then", "frac", "1", "2"]``.
    """
    return (text if normalized else normalize_text(text)).translate(_TO_SPACE).split()


def text_digest(normalized: str) -> int:
    """An 8-byte BLAKE2b digest of an (already normalized) string, as an unsigned int."""
    return int.from_bytes(hashlib.blake2b(normalized.encode("utf-8"), digest_size=8).digest(), "little")


# --- hashing ----------------------------------------------------------------------------------------

_U64 = np.uint64
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)


def splitmix64_sequence(seed: int, count: int) -> list[int]:
    """``count`` pseudo-random 64-bit ints from SplitMix64 in pure Python.

    Used for every constant the hashes depend on, so results never change with the numpy version.
    """
    mask = (1 << 64) - 1
    state = seed & mask
    out = []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append(z ^ (z >> 31))
    return out


# Fixed odd multipliers for combining the tokens of an n-gram (position k uses _POS_MULT[k]).
_POS_MULT = np.array([v | 1 for v in splitmix64_sequence(0x5EEDC0DE, 256)], dtype=np.uint64)
_EMPTY_HASH = 0x9E3779B97F4A7C15


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer, vectorized: a bijection of uint64 that spreads every input bit (in place)."""
    with np.errstate(over="ignore"):
        x ^= x >> _U64(30)
        x *= _MIX1
        x ^= x >> _U64(27)
        x *= _MIX2
        x ^= x >> _U64(31)
    return x


class TokenHasher:
    """Maps word tokens to deterministic 64-bit hashes (BLAKE2b), with a bounded cache.

    The cache makes hashing a shard cost one dict lookup per token: math questions reuse a small
    vocabulary. It is cleared when it reaches ``max_cache`` entries, so memory stays bounded.
    """

    def __init__(self, max_cache: int = 1_000_000) -> None:
        self.max_cache = max_cache
        self._cache: dict[str, int] = {}

    def _hash_new(self, tokens: Sequence[str]) -> None:
        cache = self._cache
        new = [t for t in dict.fromkeys(tokens) if t not in cache]
        if len(cache) + len(new) > self.max_cache:
            cache.clear()
            new = list(dict.fromkeys(tokens))
        blake = hashlib.blake2b
        for t in new:
            cache[t] = int.from_bytes(blake(t.encode("utf-8"), digest_size=8).digest(), "little")

    def hash_flat(self, tokens: Sequence[str]) -> np.ndarray:
        """Hashes of a flat token list as a ``uint64`` array of the same length."""
        self._hash_new(tokens)
        return np.fromiter(map(self._cache.__getitem__, tokens), dtype=np.uint64, count=len(tokens))

    def cache_size(self) -> int:
        """Number of cached tokens."""
        return len(self._cache)


def token_hashes(
    normalized: Sequence[str], unit: ShingleUnit = "word", hasher: TokenHasher | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Flat ``uint64`` token hashes of all (normalized) texts and the per-text token counts.

    ``unit="word"``: the tokens of :func:`word_tokens`; ``unit="char"``: the characters.
    """
    if unit == "word":
        toks = [s.translate(_TO_SPACE).split() for s in normalized]
        lengths = np.fromiter(map(len, toks), dtype=np.int64, count=len(toks))
        hasher = hasher or TokenHasher()
        flat = hasher.hash_flat(list(chain.from_iterable(toks)))
        return flat, lengths
    if unit == "char":
        joined = "".join(normalized)
        codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        lengths = np.fromiter(map(len, normalized), dtype=np.int64, count=len(normalized))
        codes += _U64(0x632BE59BD9B4E019)
        return mix64(codes), lengths
    raise ValueError(f"unknown shingle unit {unit!r}; use 'word' or 'char'")


def hash_windows(flat: np.ndarray, start: np.ndarray, k: int) -> np.ndarray:
    """Order-sensitive 64-bit hash of the ``k`` tokens ``flat[s:s+k]`` for each ``s`` in ``start``.

    The n-gram hash used everywhere in this package (:func:`ngram_hashes` calls it): the same
    ``k`` tokens hash the same wherever they occur.
    """
    if k > len(_POS_MULT):
        raise ValueError(f"n-gram size {k} too large (max {len(_POS_MULT)})")
    acc = np.zeros(len(start), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            acc += flat[start + j] * _POS_MULT[j]
        acc += _U64(k) * _U64(0x2545F4914F6CDD1D)
    return mix64(acc)


def ngram_hashes(
    normalized: Sequence[str],
    n: int,
    *,
    unit: ShingleUnit = "word",
    hasher: TokenHasher | None = None,
    short: Literal["whole", "skip"] = "whole",
) -> tuple[np.ndarray, np.ndarray]:
    """Hash every n-gram (shingle) of every text of a shard, vectorized.

    ``normalized`` are texts already passed through :func:`normalize_text`; ``unit`` is ``"word"``
    (tokens of :func:`word_tokens`) or ``"char"`` (characters of the normalized text). Returns
    ``(hashes, offsets)``: a flat ``uint64`` array and ``int64`` offsets of length ``len(texts)+1``
    such that text ``i`` owns ``hashes[offsets[i]:offsets[i+1]]`` in text order.

    A text with fewer than ``n`` tokens has no full n-gram: with ``short="whole"`` it gets one
    shingle, the hash of all its tokens (an empty text gets a fixed hash), so every text has at
    least one shingle; with ``short="skip"`` it gets none.
    """
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    flat, lengths = token_hashes(normalized, unit, hasher)
    return ngrams_from_tokens(flat, lengths, n, short=short)


def ngrams_from_tokens(
    flat: np.ndarray, lengths: np.ndarray, n: int, *, short: Literal["whole", "skip"] = "whole"
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ngram_hashes` from the output of :func:`token_hashes` (tokenize once, many ``n``)."""
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    counts = np.maximum(lengths - n + 1, 0)
    # Start index of every full n-gram: for text i, starts[i] .. starts[i] + counts[i] - 1.
    total = int(counts.sum())
    owner_off = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(counts, out=owner_off[1:])
    pos = np.arange(total, dtype=np.int64) - np.repeat(owner_off[:-1] - starts[:-1], counts)
    full = hash_windows(flat, pos, n) if total else np.zeros(0, dtype=np.uint64)
    short_idx = np.flatnonzero(counts == 0)
    if short == "skip" or len(short_idx) == 0:
        return full, owner_off
    # Texts shorter than n: one shingle over all their tokens.
    extra = np.empty(len(short_idx), dtype=np.uint64)
    for slot, i in enumerate(short_idx):
        k = int(lengths[i])
        extra[slot] = hash_windows(flat, np.array([starts[i]]), k)[0] if k else _U64(_EMPTY_HASH)
    out_counts = counts.copy()
    out_counts[short_idx] = 1
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(out_counts, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint64)
    is_full = counts > 0
    full_dest = np.repeat(offsets[:-1][is_full] - owner_off[:-1][is_full], counts[is_full]) + np.arange(total)
    out[full_dest] = full
    out[offsets[short_idx]] = extra
    return out, offsets
