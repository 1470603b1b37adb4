"""Deterministic 64-bit hashing on flat numpy arrays: tokens, n-gram windows, whole rows.

Everything here works on a whole shard at once: the input is one byte buffer (or one flat array of
token hashes) with per-row boundaries, and the work is a handful of numpy passes, never a Python
loop per row or per token. Hashes are the same on every machine, process and numpy version (fixed
constants from :func:`splitmix64_sequence`; Python's randomized ``hash`` is never used), so indexes
saved by one process are valid in the next.

* :func:`hash_byte_tokens`: the hash of each token ``buf[start:start+length]``, from the token's
  UTF-8 bytes read eight at a time (:func:`token_hash` is the same function for one token, in pure
  Python, as a reference).
* :func:`hash_windows` / :func:`ngrams_from_tokens`: order-sensitive hashes of ``k`` consecutive
  token hashes (word n-grams).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = [
    "EMPTY_HASH",
    "hash_byte_tokens",
    "hash_windows",
    "mix64",
    "ngrams_from_tokens",
    "splitmix64_sequence",
    "token_hash",
]

_U64 = np.uint64
_M64 = (1 << 64) - 1
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def splitmix64_sequence(seed: int, count: int) -> list[int]:
    """``count`` pseudo-random 64-bit ints from SplitMix64 in pure Python.

    Used for every constant the hashes depend on, so results never change with the numpy version.
    """
    state = seed & _M64
    out = []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & _M64
        z = state
        z = ((z ^ (z >> 30)) * _MIX1) & _M64
        z = ((z ^ (z >> 27)) * _MIX2) & _M64
        out.append(z ^ (z >> 31))
    return out


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer, vectorized: a bijection of uint64 that spreads every input bit (in place)."""
    with np.errstate(over="ignore"):
        x ^= x >> _U64(30)
        x *= _U64(_MIX1)
        x ^= x >> _U64(27)
        x *= _U64(_MIX2)
        x ^= x >> _U64(31)
    return x


def _mix64_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * _MIX1) & _M64
    z = ((z ^ (z >> 27)) * _MIX2) & _M64
    return z ^ (z >> 31)


# --- tokens -------------------------------------------------------------------------------------------

_LEN_MULT = 0xD6E8FEB86659FD93
_POS_WORD = 0xA0761D6478BD642F
# _LOW_MASK[k]: the low k bytes of a word (k = 0..8).
_LOW_MASK = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [_M64], dtype=np.uint64)
#: Bytes of zero padding a buffer given to :func:`hash_byte_tokens` needs after its last token.
PAD = 8


def token_hash(token: str | bytes) -> int:
    """The 64-bit hash of one token (pure-Python reference of :func:`hash_byte_tokens`).

    The token's UTF-8 bytes are read as little-endian 8-byte words ``w0, w1, ...`` (the last one
    zero-padded); ``h = mix64(w0 ^ len * K)``; a longer token adds its other words, each mixed
    with its position: ``h = mix64(h + sum(mix64(wk ^ k * P) for k >= 1))``.
    """
    data = token.encode("utf-8") if isinstance(token, str) else token
    length = len(data)
    padded = data + b"\x00" * (-length % 8) if length else b"\x00" * 8
    words = [int.from_bytes(padded[i : i + 8], "little") for i in range(0, len(padded), 8)]
    h = _mix64_int(words[0] ^ ((length * _LEN_MULT) & _M64))
    if len(words) > 1:
        rest = sum(_mix64_int(w ^ ((k * _POS_WORD) & _M64)) for k, w in enumerate(words) if k)
        h = _mix64_int((h + rest) & _M64)
    return h


def hash_byte_tokens(buf: bytes | np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """:func:`token_hash` of every token ``buf[starts[i] : starts[i] + lengths[i]]``, vectorized.

    ``buf`` must hold at least :data:`PAD` bytes after the end of the last token (they are read
    and masked off). Tokens are read eight bytes at a time through an unaligned ``uint64`` view;
    the words after the first (long tokens, whole rows) all at once, summed per token with
    ``np.add.reduceat``: a few numpy passes whatever the lengths.
    """
    raw = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf
    if len(starts) == 0:
        return np.zeros(0, dtype=np.uint64)
    # words[i] = the 8 bytes starting at byte i (a strided, unaligned view; no copy).
    words = np.ndarray((len(raw) - PAD + 1,), dtype="<u8", buffer=raw, strides=(1,))
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    with np.errstate(over="ignore"):
        h = words[starts] & _LOW_MASK[np.minimum(lengths, 8)]
        h ^= lengths.astype(np.uint64) * _U64(_LEN_MULT)
        mix64(h)
        long = np.flatnonzero(lengths > 8)
        if len(long):
            extra = (lengths[long] + 7) // 8 - 1  # words after the first
            first = np.zeros(len(long), dtype=np.int64)
            np.cumsum(extra[:-1], out=first[1:])
            owner = np.repeat(np.arange(len(long)), extra)
            k = np.arange(len(owner), dtype=np.int64) - first[owner] + 1  # word number, from 1
            w = words[starts[long][owner] + 8 * k] & _LOW_MASK[np.minimum(lengths[long][owner] - 8 * k, 8)]
            w ^= k.astype(np.uint64) * _U64(_POS_WORD)
            h[long] = mix64(h[long] + np.add.reduceat(mix64(w), first))
    return h


# --- n-grams ------------------------------------------------------------------------------------------

# Fixed odd multipliers for combining the tokens of an n-gram (position k uses _POS_MULT[k]).
_POS_MULT = np.array([v | 1 for v in splitmix64_sequence(0x5EEDC0DE, 256)], dtype=np.uint64)
_NGRAM_LEN = _U64(0x2545F4914F6CDD1D)
#: The shingle of an empty text.
EMPTY_HASH = 0x9E3779B97F4A7C15


def hash_windows(flat: np.ndarray, start: np.ndarray, k: int) -> np.ndarray:
    """Order-sensitive 64-bit hash of the ``k`` token hashes ``flat[s:s+k]`` for each ``s`` in ``start``.

    The n-gram hash used everywhere in this package: the same ``k`` tokens hash the same wherever
    they occur (``mix64(sum_j flat[s+j] * M_j + k * C)`` with fixed odd ``M_j``).
    """
    if k > len(_POS_MULT):
        raise ValueError(f"n-gram size {k} too large (max {len(_POS_MULT)})")
    acc = np.zeros(len(start), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            acc += flat[start + j] * _POS_MULT[j]
        acc += _U64(k) * _NGRAM_LEN
    return mix64(acc)


def _all_windows(flat: np.ndarray, k: int) -> np.ndarray:
    """:func:`hash_windows` at every start ``0 .. len(flat) - k`` (contiguous slices, no gathers)."""
    m = len(flat) - k + 1
    with np.errstate(over="ignore"):
        acc = np.full(m, _U64(k) * _NGRAM_LEN, dtype=np.uint64)
        tmp = np.empty(m, dtype=np.uint64)
        for j in range(k):
            np.multiply(flat[j : j + m], _POS_MULT[j], out=tmp)
            acc += tmp
    return mix64(acc)


def ngrams_from_tokens(
    flat: np.ndarray, lengths: np.ndarray, n: int, *, short: Literal["whole", "skip"] = "whole"
) -> tuple[np.ndarray, np.ndarray]:
    """Hash every ``n``-gram of every row, given the rows' token hashes end to end.

    ``flat`` holds the token hashes of all rows in order and ``lengths`` the token count of each
    row. Returns ``(hashes, offsets)``: row ``i`` owns ``hashes[offsets[i]:offsets[i+1]]``, in
    order. A row with fewer than ``n`` tokens has no full n-gram: with ``short="whole"`` it gets
    one shingle, the hash of all its tokens (an empty row gets :data:`EMPTY_HASH`); with
    ``short="skip"`` it gets none.
    """
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    if n > len(_POS_MULT):
        raise ValueError(f"n-gram size {n} too large (max {len(_POS_MULT)})")
    lengths = np.asarray(lengths, dtype=np.int64)
    rows = len(lengths)
    starts = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    counts = np.maximum(lengths - n + 1, 0)
    full_off = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts, out=full_off[1:])
    total = int(full_off[-1])
    if total:
        # Window start of every full n-gram: row i contributes starts[i] .. starts[i] + counts[i] - 1.
        pos = np.arange(total, dtype=np.int64)
        pos += np.repeat(starts[:-1] - full_off[:-1], counts)
        full = _all_windows(flat, n)[pos] if total > len(flat) // 4 else hash_windows(flat, pos, n)
    else:
        full = np.zeros(0, dtype=np.uint64)
    short_rows = np.flatnonzero(counts == 0)
    if short == "skip" or len(short_rows) == 0:
        return full, full_off
    # Rows shorter than n: one shingle over all their tokens, grouped by length.
    extra = np.full(len(short_rows), _U64(EMPTY_HASH), dtype=np.uint64)
    short_len = lengths[short_rows]
    for k in np.unique(short_len[short_len > 0]).tolist():
        sel = np.flatnonzero(short_len == k)
        extra[sel] = hash_windows(flat, starts[short_rows[sel]], int(k))
    out_counts = counts.copy()
    out_counts[short_rows] = 1
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(out_counts, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint64)
    is_full = counts > 0
    dest = np.arange(total, dtype=np.int64)
    dest += np.repeat(offsets[:-1][is_full] - full_off[:-1][is_full], counts[is_full])
    out[dest] = full
    out[offsets[short_rows]] = extra
    return out, offsets
