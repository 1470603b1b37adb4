"""Question-text normalization, word tokenization and n-gram hashing, per text or per column.

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

:func:`normalize_text` is the definition, one string at a time. :func:`normalize_many` computes the
same strings (byte for byte) for a whole shard at once and returns a :class:`TextBatch`: all
normalized rows in one UTF-8 buffer. Rows that are ASCII (after NFKC and quote folding) are
normalized by a few numpy passes over that buffer; the LaTeX rules run as three regex passes
over the joined column; other rows go through :func:`normalize_text`. A :class:`TextBatch`
gives the rows' token hashes (:meth:`TextBatch.token_hashes`), n-gram hashes
(:meth:`TextBatch.ngrams`) and exact-dedup digests (:meth:`TextBatch.digests`) without a
Python loop per row or per token.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cftdata.quality.hashing import (
    EMPTY_HASH,
    PAD,
    hash_byte_tokens,
    hash_windows,
    mix64,
    ngrams_from_tokens,
    splitmix64_sequence,
    token_hash,
)

__all__ = [
    "EMPTY_HASH",
    "ShingleUnit",
    "TextBatch",
    "Tokens",
    "hash_tokens",
    "hash_windows",
    "mix64",
    "ngram_hashes",
    "ngrams_from_tokens",
    "normalize_many",
    "normalize_text",
    "splitmix64_sequence",
    "text_digest",
    "token_hashes",
    "word_tokens",
]

ShingleUnit = Literal["word", "char"]

# --- normalization --------------------------------------------------------------------------------

_QUOTES = {"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"'}


def _unicode_fold(text: str) -> str:
    """NFKC, then curly quotes to straight ones (``str.replace`` per quote present: much faster
    than ``str.translate`` with a dict on non-ASCII text)."""
    text = unicodedata.normalize("NFKC", text)
    for curly, straight in _QUOTES.items():
        if curly in text:
            text = text.replace(curly, straight)
    return text

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
        text = _unicode_fold(text)
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
    """The 64-bit digest of an (already normalized) string: the value :meth:`TextBatch.digests`
    gives that row (:func:`~cftdata.quality.hashing.token_hash` of its UTF-8 bytes)."""
    return token_hash(normalized)


# --- column-wise normalization --------------------------------------------------------------------------
#
# normalize_many computes normalize_text for a whole column: rows that are ASCII (after NFKC and
# quote folding) as bytes, the other rows as code points (uint32), each with one numpy pass per rule.
# After the LaTeX regexes and lower-casing, normalize_text is a function of each character's class:
#
# * _PUNCT: ". , ; : ! ?" become spaces unless a decimal digit is on both sides; '"' always does;
# * " ".join(split()) then _SPACE_BEFORE_SYMBOL forwards and backwards: after collapsing, a space
#   survives exactly when both its neighbours are word characters (\w minus "_"). So a plain " "
#   between two word characters stays, and every other whitespace character lies in a run of
#   whitespace with no such space in it: the run becomes one space when it lies between two word
#   characters, and disappears otherwise;
# * _LATEX_SCRIPT: "^{x}" / "_{x}" with x a \w character lose their braces (matches never overlap).

# _LATEX_TEXT for rows joined by NUL: the braced argument never crosses into the next row.
_LATEX_TEXT_ROWS = re.compile(_LATEX_TEXT.pattern.replace("[^{}]", "[^{}\\x00]"))
_SYM, _ALPHA, _DIGIT, _PUNCT_C, _QUOTE_C, _WS, _SEP = range(7)
_CLASS = bytearray([_SYM]) * 256
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _CLASS[_c] = _ALPHA
for _c in b"0123456789":
    _CLASS[_c] = _DIGIT
for _c in b".,;:!?":
    _CLASS[_c] = _PUNCT_C
_CLASS[ord('"')] = _QUOTE_C
# What str.split() and re's \s split on, in ASCII; plus "$" and "~", LaTeX noise that
# _LATEX_NOISE replaces by a space (rows with a backslash have none left when classified).
for _c in b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f $~":
    _CLASS[_c] = _WS
_CLASS[0] = _SEP
_CLASS_TABLE = bytes(_CLASS)
_CLASS_ARRAY = np.frombuffer(_CLASS_TABLE, dtype=np.uint8)
_U8 = np.uint8
_DELETE = 0xFF  # a byte that is never in ASCII text; removed by one bytearray.translate


def _char_class(ch: str) -> int:
    """Class of a non-ASCII character, by the same str predicates the regexes use."""
    if ch.isdecimal():
        return _DIGIT  # re's \d
    if ch.isalnum():
        return _ALPHA  # re's \w (besides "_")
    if ch.isspace():
        return _WS  # str.split()
    return _SYM


def _latex_rows(rows: list[str]) -> list[str]:
    """The three LaTeX regexes of normalize_text over the rows holding a backslash (NUL-joined)."""
    latex = [i for i, t in enumerate(rows) if "\\" in t]
    if not latex:
        return rows
    sub = "\x00".join([rows[i] for i in latex])
    sub = _LATEX_TEXT_ROWS.sub(lambda m: f" {m.group(1)} ", sub)
    sub = _LATEX_FRAC.sub(r"\\frac", sub)
    sub = _LATEX_NOISE.sub(" ", sub)
    rows = list(rows)
    for i, t in zip(latex, sub.split("\x00"), strict=True):
        rows[i] = t
    return rows


def _space_rules(cls: np.ndarray, is_space: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions to delete and positions that become one space, from the classes of a NUL-framed
    column (``is_space``: the character is " ")."""
    word = (cls - _U8(_ALPHA)) < _U8(2)
    ws = cls == _WS
    pq = np.flatnonzero((cls - _U8(_PUNCT_C)) < _U8(2))
    if len(pq):
        keep = (cls[pq] == _PUNCT_C) & (cls[pq - 1] == _DIGIT) & (cls[pq + 1] == _DIGIT)
        ws[pq[~keep]] = True
    plain = word[:-2] & word[2:]
    plain &= is_space[1:-1]
    special = np.flatnonzero(ws[1:-1] & ~plain) + 1
    if not len(special):
        return special, special
    new_run = np.ones(len(special), dtype=bool)
    new_run[1:] = special[1:] != special[:-1] + 1
    first = special[new_run]
    last = special[np.r_[new_run[1:], True]]
    return special, last[word[first - 1] & word[last + 1]]


def _script_braces(chars: np.ndarray, cls: np.ndarray | None = None) -> np.ndarray:
    """Positions of the braces _LATEX_SCRIPT removes: ``[^_]{x}`` with ``x`` a \\w character
    (``cls``: the characters' classes; ASCII classes when not given)."""
    brace = np.flatnonzero(chars == ord("{"))
    brace = brace[(brace >= 1) & (brace + 2 < len(chars))]
    hit = ((chars[brace - 1] == ord("^")) | (chars[brace - 1] == ord("_"))) & (chars[brace + 2] == ord("}"))
    brace = brace[hit]
    inner = chars[brace + 1]
    inner_cls = _CLASS_ARRAY[np.minimum(inner, 127)] if cls is None else cls[brace + 1]
    brace = brace[((inner_cls - _U8(_ALPHA)) < _U8(2)) | (inner == ord("_"))]
    return np.concatenate([brace, brace + 2])


def _normalize_ascii_rows(rows: list[str]) -> bytes:
    """:func:`normalize_text` of ASCII rows (none holding NUL) as one NUL-framed byte string
    ``\\0 row0 \\0 row1 ... \\0``; classes by ``bytes.translate``, deletions by ``bytearray.translate``."""
    framed = b"\x00" + "\x00".join(_latex_rows(rows)).encode("ascii").lower() + b"\x00"
    cls = np.frombuffer(framed.translate(_CLASS_TABLE), dtype=_U8)
    delete, space = _space_rules(cls, np.frombuffer(framed, dtype=_U8) == 32)
    out = bytearray(framed)
    if len(delete):
        view = np.frombuffer(out, dtype=_U8)
        view[delete] = _DELETE
        view[space] = 32
        del view
        out = out.translate(None, b"\xff")
    if b"{" in out:
        chars = np.frombuffer(out, dtype=_U8)
        drop = _script_braces(chars)
        del chars
        if len(drop):
            view = np.frombuffer(out, dtype=_U8)
            view[drop] = _DELETE
            del view
            out = out.translate(None, b"\xff")
    return bytes(out)


def _normalize_wide_rows(rows: list[str]) -> list[bytes]:
    """:func:`normalize_text` (UTF-8) of rows already NFKC- and quote-folded (any Unicode, no NUL),
    on code points; non-ASCII characters are classed by :func:`_char_class`."""
    text = "\x00" + "\x00".join(_latex_rows(rows)).lower() + "\x00"
    chars = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    cls = _CLASS_ARRAY[np.minimum(chars, 127)]
    high = np.flatnonzero(chars > 127)
    if len(high):
        uniq, inverse = np.unique(chars[high], return_inverse=True)
        cls[high] = np.array([_char_class(chr(c)) for c in uniq.tolist()], dtype=_U8)[inverse]
    delete, space = _space_rules(cls, chars == 32)
    keep = np.ones(len(chars), dtype=bool)
    keep[delete] = False
    keep[space] = True
    chars = chars.copy()
    chars[space] = 32
    chars, cls = chars[keep], cls[keep]
    if (chars == ord("{")).any():
        keep = np.ones(len(chars), dtype=bool)
        keep[_script_braces(chars, cls)] = False
        chars = chars[keep]
    out = chars.tobytes().decode("utf-32-le").split("\x00")[1:-1]
    return [t.encode("utf-8") for t in out]


def normalize_many(texts: Sequence[str | None]) -> TextBatch:
    """:func:`normalize_text` of every text of a shard, as one :class:`TextBatch` (``None`` counts
    as the empty string). The rows are byte-for-byte what :func:`normalize_text` returns."""
    n = len(texts)
    if n == 0:
        return TextBatch.from_encoded([])
    rows = [t if t else "" for t in texts]
    joined = "\x00".join(rows)
    if joined.isascii() and joined.count("\x00") == max(n - 1, 0):
        return TextBatch.from_framed(_normalize_ascii_rows(rows))
    # Mixed column: NFKC + quote folding (normalize_text's first step) for the non-ASCII rows; those
    # that become ASCII join the byte path, the others take the code-point path. Rows holding a NUL
    # (the row separator) go through normalize_text itself.
    replace: dict[int, bytes] = {}
    wide: list[int] = []
    suspects = [i for i, t in enumerate(rows) if not t.isascii()]
    if joined.count("\x00") > n - 1:
        suspects = sorted({*suspects, *(i for i, t in enumerate(rows) if "\x00" in t)})
    for i in suspects:
        t = rows[i]
        if "\x00" in t:
            replace[i] = normalize_text(t).encode("utf-8")
            rows[i] = ""
            continue
        if not t.isascii():
            t = _unicode_fold(t)
        rows[i] = t
        if not t.isascii():
            wide.append(i)
    if wide:
        replace.update(zip(wide, _normalize_wide_rows([rows[i] for i in wide]), strict=True))
        for i in wide:
            rows[i] = ""
    return TextBatch.from_framed(_normalize_ascii_rows(rows), replace)


def _splice(
    data: bytes, starts: np.ndarray, ends: np.ndarray, replace: dict[int, bytes]
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """``data`` with row ``i`` (``data[starts[i]:ends[i]]``) replaced by ``replace[i]``, and the new
    row bounds (one join of ``2 * len(replace) + 1`` pieces; the other rows are not copied one by one)."""
    rows = sorted(replace)
    parts, prev = [], 0
    for i in rows:
        parts += [data[prev : starts[i]], replace[i]]
        prev = int(ends[i])
    parts.append(data[prev:])
    delta = np.zeros(len(starts), dtype=np.int64)
    delta[rows] = [len(replace[i]) for i in rows]
    delta[rows] -= ends[rows] - starts[rows]
    shift = np.cumsum(delta) - delta  # growth of everything before each row
    return b"".join(parts), starts + shift, ends + shift + delta


@dataclass(frozen=True, eq=False)
class TextBatch:
    """Normalized texts of a shard in one buffer: ``\\0 row0 \\0 row1 \\0 ... \\0`` plus padding.

    Row ``i`` is ``data[starts[i]:ends[i]]`` (UTF-8). ``wide`` lists the rows holding non-ASCII
    bytes or NUL (their tokens need Unicode separators; the rest are tokenized on bytes).
    Build one with :func:`normalize_many` (from raw texts) or :meth:`from_normalized`.
    """

    data: bytes
    starts: np.ndarray
    ends: np.ndarray
    wide: np.ndarray

    @classmethod
    def from_framed(cls, framed: bytes, replace: dict[int, bytes] | None = None) -> TextBatch:
        """A batch from ASCII rows framed by NULs (``\\0 row0 \\0 row1 ... \\0``, no NUL inside a
        row), with rows ``i`` of ``replace`` replaced by ``replace[i]`` (any UTF-8 bytes)."""
        seps = np.flatnonzero(np.frombuffer(framed, dtype=_U8) == 0)
        data, starts, ends = framed + b"\x00" * PAD, seps[:-1] + 1, seps[1:]
        if not replace:
            return cls(data, starts, ends, np.zeros(0, dtype=np.int64))
        wide = [i for i, row in sorted(replace.items()) if not row.isascii() or b"\x00" in row]
        return cls(*_splice(data, starts, ends, replace), np.array(wide, dtype=np.int64))

    @classmethod
    def from_normalized(cls, normalized: Sequence[str]) -> TextBatch:
        """A batch of strings that are already normalized (no normalization is applied)."""
        return cls.from_encoded([s.encode("utf-8") for s in normalized])

    @classmethod
    def from_encoded(cls, rows: Sequence[bytes]) -> TextBatch:
        """A batch of UTF-8 encoded, already normalized rows."""
        n = len(rows)
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=n)
        starts = np.ones(n, dtype=np.int64)
        if n > 1:
            np.cumsum(lengths[:-1] + 1, out=starts[1:])
            starts[1:] += 1
        data = b"\x00" + b"\x00".join(rows) + b"\x00" + b"\x00" * PAD
        wide = [i for i, r in enumerate(rows) if not r.isascii() or b"\x00" in r]
        return cls(data, starts, starts + lengths, np.array(wide, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.starts)

    def text(self, i: int) -> str:
        """Normalized text of row ``i``."""
        return self.data[self.starts[i] : self.ends[i]].decode("utf-8")

    def tolist(self) -> list[str]:
        """All normalized texts."""
        if not len(self.starts):
            return []
        if not any(b"\x00" in self.row_bytes(i) for i in self.wide.tolist()):
            return self.data[int(self.starts[0]) : int(self.ends[-1])].decode("utf-8").split("\x00")
        return [self.text(i) for i in range(len(self))]

    def row_bytes(self, i: int) -> bytes:
        """Normalized UTF-8 bytes of row ``i``."""
        return self.data[self.starts[i] : self.ends[i]]

    def digests(self) -> np.ndarray:
        """64-bit digest of each normalized row: :func:`~cftdata.quality.hashing.token_hash` of its
        UTF-8 bytes, vectorized (numpy passes, no Python loop: it runs in parallel threads)."""
        return hash_byte_tokens(self.data, self.starts, self.ends - self.starts)

    def tokens(self) -> Tokens:
        """The :func:`word_tokens` of every row: hashes, counts and byte spans (:class:`Tokens`)."""
        data, starts, ends = self.data, self.starts, self.ends
        if len(self.wide):
            # Rows with non-ASCII text: Unicode separators to spaces first (as word_tokens does).
            translated = {
                i: _WIDE_SEPARATOR.sub(" ", self.row_bytes(i).decode("utf-8")).encode("utf-8")
                for i in self.wide.tolist()
            }
            data, starts, ends = _splice(data, starts, ends, translated)
        is_tok = np.frombuffer(data.translate(_TOKEN_TABLE), dtype=bool).copy()
        # Row separators and padding are never part of a token (a NUL inside a row is).
        is_tok[0] = False
        is_tok[ends] = False
        if len(ends):
            is_tok[int(ends[-1]) :] = False
        edges = np.flatnonzero(is_tok[1:] != is_tok[:-1]) + 1
        tok_start, tok_end = edges[0::2], edges[1::2]
        counts = np.searchsorted(tok_start, ends) - np.searchsorted(tok_start, starts)
        return Tokens(hash_byte_tokens(data, tok_start, tok_end - tok_start), counts, tok_start, tok_end, data)

    def token_hashes(self) -> tuple[np.ndarray, np.ndarray]:
        """Hashes of the :func:`word_tokens` of every row, end to end, and each row's token count.

        A token's hash is :func:`~cftdata.quality.hashing.token_hash` of its UTF-8 bytes.
        """
        tokens = self.tokens()
        return tokens.hashes, tokens.counts

    def ngrams(
        self, n: int, *, unit: ShingleUnit = "word", short: Literal["whole", "skip"] = "whole"
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n``-gram (shingle) hashes of every row, as :func:`ngram_hashes` computes them:
        ``(hashes, offsets)``, row ``i`` owning ``hashes[offsets[i]:offsets[i+1]]``."""
        if unit == "word":
            flat, counts = self.token_hashes()
        elif unit == "char":
            flat, counts = _char_hashes(self.tolist())
        else:
            raise ValueError(f"unknown shingle unit {unit!r}; use 'word' or 'char'")
        return ngrams_from_tokens(flat, counts, n, short=short)


@dataclass(frozen=True, eq=False)
class Tokens:
    """Word tokens of a :class:`TextBatch`, end to end: ``hashes`` (uint64), ``counts`` per row, and
    each token's bytes ``data[starts[i]:ends[i]]``."""

    hashes: np.ndarray
    counts: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    data: bytes

    def text(self, first: int, count: int) -> str:
        """Tokens ``first .. first + count - 1`` joined by single spaces."""
        data = self.data
        return " ".join(
            data[a:b].decode("utf-8")
            for a, b in zip(self.starts[first : first + count].tolist(), self.ends[first : first + count].tolist(), strict=True)
        )


# Token bytes: everything but spaces and the ASCII separators (NUL included: only the row
# separators are excluded, by position). Non-ASCII bytes belong to tokens; wide rows have their
# Unicode separators replaced first.
_TOKEN = bytearray([1]) * 256
for _c in (" " + _SEPARATORS).encode("utf-8"):
    if _c < 128:
        _TOKEN[_c] = 0
_TOKEN_TABLE = bytes(_TOKEN)
# The non-ASCII separators (the ASCII ones are handled by _TOKEN_TABLE on bytes).
_WIDE_SEPARATOR = re.compile("[" + re.escape("".join(c for c in _SEPARATORS if ord(c) > 127)) + "]")


def hash_tokens(tokens: Sequence[str]) -> np.ndarray:
    """:func:`~cftdata.quality.hashing.token_hash` of each token, vectorized."""
    encoded = [t.encode("utf-8") for t in tokens]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    starts = np.zeros(len(encoded), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return hash_byte_tokens(b"".join(encoded) + b"\x00" * PAD, starts, lengths)


# --- hashing convenience (lists of normalized strings) -------------------------------------------------


def token_hashes(normalized: Sequence[str], unit: ShingleUnit = "word") -> tuple[np.ndarray, np.ndarray]:
    """Flat ``uint64`` token hashes of all (normalized) texts and the per-text token counts.

    ``unit="word"``: the tokens of :func:`word_tokens` (:meth:`TextBatch.token_hashes`);
    ``unit="char"``: the characters (code points, mixed).
    """
    if unit == "word":
        return TextBatch.from_normalized(normalized).token_hashes()
    if unit == "char":
        return _char_hashes(normalized)
    raise ValueError(f"unknown shingle unit {unit!r}; use 'word' or 'char'")


def _char_hashes(normalized: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    joined = "".join(normalized)
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    lengths = np.fromiter(map(len, normalized), dtype=np.int64, count=len(normalized))
    codes += np.uint64(0x632BE59BD9B4E019)
    return mix64(codes), lengths


def ngram_hashes(
    normalized: Sequence[str],
    n: int,
    *,
    unit: ShingleUnit = "word",
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
    return TextBatch.from_normalized(normalized).ngrams(n, unit=unit, short=short)
