"""Streaming exact + near-duplicate detection (normalized-text digests and MinHash LSH, in numpy).

A :class:`Deduplicator` is fed shards one after another (``check(ids, texts)``) and answers, for
every row, ``None`` (keep) or the id of an earlier kept row it duplicates. The rule is
**first occurrence wins**: the earliest row in input order (shard order, then order within the
shard) is kept, every later copy points at it.

Memory is bounded by what is kept, never by the text: the index holds per row an 8-byte digest
of the normalized text, ``bands`` LSH band keys (12 bytes each), the row's MinHash signature
(``num_perm`` x 4 bytes, only when ``verify=True``) and its id. That is under 1 KB per kept row
with the defaults; ``stats()["index_bytes"]`` reports the current figure.

How near-duplicates are found, per shard, vectorized:

1. each text is normalized (:func:`~cftdata.quality.normalize.normalize_text`) and cut into
   word n-gram shingles (``shingle`` words; or characters with ``shingle_unit="char"``), hashed to
   64 bits;
2. ``num_perm`` MinHash values per text are computed at once with numpy (multiply-shift hashing
   ``(a_k * x mod 2**64) >> 32`` with odd random ``a_k``; the minimum is taken per text with
   ``np.minimum.reduceat``), split over threads;
3. the signature is cut into ``bands`` bands of ``rows`` values; each band is hashed to a 64-bit
   key (band number salted in); a row whose band key was seen before is a *candidate*;
4. with ``verify=True`` (default) a candidate is accepted only if the estimated Jaccard similarity
   of the two signatures (fraction of equal MinHash values) is at least ``threshold``.

``bands``/``rows`` default to the values that minimize the weighted false-positive and
false-negative probability mass around ``threshold`` (:func:`optimal_bands`): equal weights
without verification (datasketch's rule: 9 x 13 for 0.8 / 128), and recall-leaning weights
(0.1 / 0.9: 14 x 9) with verification, because verification removes the extra false candidates.
"""

from __future__ import annotations

import bisect
import json
import os
from array import array
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from cftdata.quality.normalize import (
    ShingleUnit,
    TokenHasher,
    mix64,
    ngram_hashes,
    normalize_text,
    splitmix64_sequence,
    text_digest,
)

__all__ = ["Deduplicator", "KeyIndex", "optimal_bands"]

_U64 = np.uint64
_MISSING = -1


@lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int, false_positive_weight: float = 0.5) -> tuple[int, int]:
    """``(bands, rows)`` with ``bands * rows <= num_perm`` minimizing weighted FP + FN probability mass.

    The probability that two texts of Jaccard similarity ``s`` share at least one band is
    ``1 - (1 - s**rows)**bands``; the false-positive mass is its integral over ``s < threshold``
    and the false-negative mass that of the complement over ``s >= threshold``. The error is
    ``w * FP + (1 - w) * FN`` with ``w = false_positive_weight`` (0.5: datasketch's default).
    ``optimal_bands(0.8, 128) == (9, 13)``; ``optimal_bands(0.8, 128, 0.1) == (14, 9)``.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if not 0.0 <= false_positive_weight <= 1.0:
        raise ValueError(f"false_positive_weight must be in [0, 1], got {false_positive_weight}")
    grid_lo = np.linspace(0.0, threshold, 201)
    grid_hi = np.linspace(threshold, 1.0, 201)
    best: tuple[float, int, int] | None = None
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(1 - (1 - grid_lo**r) ** b, grid_lo)
            fn = np.trapezoid((1 - grid_hi**r) ** b, grid_hi)
            err = false_positive_weight * fp + (1.0 - false_positive_weight) * fn
            if best is None or err < best[0]:
                best = (float(err), b, r)
    assert best is not None
    return best[1], best[2]


class KeyIndex:
    """A compact ``uint64 -> int`` map for numpy batches: sorted runs merged like a log-structured tree.

    Keys are stored once (the first value inserted for a key wins; :meth:`insert_new` skips keys
    already present). Memory is 12 bytes per key. Lookups are ``np.searchsorted`` over at most
    ``O(log n)`` runs; runs of similar size are merged, so the total merge work is ``O(n log n)``.
    """

    def __init__(self) -> None:
        self._keys: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(k) for k in self._keys)

    @property
    def nbytes(self) -> int:
        """Bytes held by the key and value arrays."""
        return sum(k.nbytes + v.nbytes for k, v in zip(self._keys, self._vals, strict=True))

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Values for ``keys`` (any shape) as int64, ``-1`` where a key is absent."""
        flat = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        out = np.full(flat.shape, _MISSING, dtype=np.int64)
        for run_keys, run_vals in zip(self._keys, self._vals, strict=True):
            pos = np.searchsorted(run_keys, flat)
            np.minimum(pos, len(run_keys) - 1, out=pos)
            hit = run_keys[pos] == flat
            out[hit] = run_vals[pos[hit]]
        return out.reshape(np.shape(keys))

    def insert_new(self, keys: np.ndarray, values: np.ndarray) -> int:
        """Insert the pairs whose key is not present yet (first pair wins within the batch too).

        Returns the number of keys added.
        """
        keys = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        values = np.asarray(values).ravel()
        if len(keys) == 0:
            return 0
        if np.any(values > np.iinfo(np.int32).max) or np.any(values < 0):
            raise ValueError("KeyIndex values must fit in int32 and be >= 0")
        uniq, first = np.unique(keys, return_index=True)
        absent = self.lookup(uniq) == _MISSING
        uniq, first = uniq[absent], first[absent]
        if len(uniq) == 0:
            return 0
        self._keys.append(uniq)  # np.unique output is sorted
        self._vals.append(values[first].astype(np.int32))
        self._compact()
        return len(uniq)

    def runs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The sorted ``(keys, values)`` runs (for saving)."""
        return list(zip(self._keys, self._vals, strict=True))

    @classmethod
    def from_runs(cls, runs: Sequence[tuple[np.ndarray, np.ndarray]]) -> KeyIndex:
        """Rebuild an index from :meth:`runs` output."""
        idx = cls()
        for keys, vals in runs:
            idx._keys.append(np.ascontiguousarray(keys, dtype=np.uint64))
            idx._vals.append(np.ascontiguousarray(vals, dtype=np.int32))
        return idx

    def _compact(self) -> None:
        while len(self._keys) > 1 and len(self._keys[-2]) <= 2 * len(self._keys[-1]):
            k2, v2 = self._keys.pop(), self._vals.pop()
            k1, v1 = self._keys.pop(), self._vals.pop()
            keys = np.concatenate([k1, k2])
            order = np.argsort(keys, kind="stable")
            self._keys.append(keys[order])
            self._vals.append(np.concatenate([v1, v2])[order])


class _SignatureStore:
    """MinHash signatures of kept rows, one contiguous block per shard (no regrowth copies)."""

    def __init__(self) -> None:
        self._blocks: list[np.ndarray] = []
        self._starts: list[int] = []
        self._n = 0

    def append(self, block: np.ndarray) -> None:
        if len(block):
            self._blocks.append(np.ascontiguousarray(block))
            self._starts.append(self._n)
            self._n += len(block)

    def get(self, index: int) -> np.ndarray:
        b = bisect.bisect_right(self._starts, index) - 1
        return self._blocks[b][index - self._starts[b]]

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._blocks)


class Deduplicator:
    """Streaming exact + near-duplicate detector; feed it shards in order with :meth:`check`.

    **First occurrence wins**: for each row ``check`` returns ``None`` if the row is kept, or the id
    of the earlier kept row it duplicates. "Earlier" means an earlier shard, or earlier in the same
    shard. Returned ids always name kept rows (a copy of a duplicate points at the kept original).
    Not thread-safe: feed shards from one thread, in order. :meth:`save` / :meth:`load` persist
    the index so a resumed build continues without re-reading earlier shards.

    Args:
        exact: flag rows whose :func:`~cftdata.quality.normalize.normalize_text` form equals an
            earlier row's (compared by 8-byte BLAKE2b digests; texts are never stored).
        near: flag rows whose shingle sets have estimated Jaccard similarity >= ``threshold``
            with an earlier kept row (MinHash LSH).
        num_perm: MinHash permutations (signature length).
        shingle: shingle size: words per n-gram (``shingle_unit="word"``) or characters
            (``shingle_unit="char"``). Texts shorter than one shingle get one shingle of all tokens.
        threshold: Jaccard similarity at or above which two texts are near-duplicates.
        seed: seeds the MinHash permutations; indexes built with different seeds are incompatible.
        shingle_unit: ``"word"`` (default) or ``"char"``.
        bands: LSH bands; default: :func:`optimal_bands` (14 x 9 for the defaults; 9 x 13 with
            ``verify=False``).
        rows: signature values per band when ``bands`` is given (default ``num_perm // bands``).
        verify: confirm each LSH candidate by signature similarity (stores signatures:
            ``num_perm * 4`` bytes per indexed row). Without it, any shared band means duplicate.
        transitive: also index near-duplicates, so a row that matches a dropped near-duplicate
            is dropped too (pointing at that one's kept original). Catches chains of small edits
            (A, A', A'') at the price of indexing every non-exact row; each link is verified
            against the row it matched, not against the kept original. Default off: every
            returned id then names a kept row that the dropped row itself matched.
        threads: threads for the MinHash matrix work (numpy releases the GIL); default
            ``min(4, os.cpu_count())``.
    """

    def __init__(
        self,
        exact: bool = True,
        near: bool = True,
        num_perm: int = 128,
        shingle: int = 5,
        threshold: float = 0.8,
        seed: int = 1,
        *,
        shingle_unit: ShingleUnit = "word",
        bands: int | None = None,
        rows: int | None = None,
        verify: bool = True,
        transitive: bool = False,
        threads: int | None = None,
    ) -> None:
        if not (exact or near):
            raise ValueError("Deduplicator needs exact=True or near=True (or both)")
        if num_perm < 2 or num_perm > 1024:
            raise ValueError(f"num_perm must be in [2, 1024], got {num_perm}")
        if shingle < 1:
            raise ValueError(f"shingle must be >= 1, got {shingle}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if shingle_unit not in ("word", "char"):
            raise ValueError(f"shingle_unit must be 'word' or 'char', got {shingle_unit!r}")
        self.exact = exact
        self.near = near
        self.num_perm = num_perm
        self.shingle = shingle
        self.threshold = threshold
        self.seed = seed
        self.shingle_unit: ShingleUnit = shingle_unit
        self.verify = verify
        self.transitive = transitive
        if bands is None:
            # Verified candidates cost little, so favour recall (more, shorter bands) when verifying.
            bands, rows = optimal_bands(min(threshold, 0.99), num_perm, 0.1 if verify else 0.5)
        else:
            if not 1 <= bands <= num_perm:
                raise ValueError(f"bands must be in [1, num_perm], got {bands}")
            rows = rows or num_perm // bands
            if bands * rows > num_perm:
                raise ValueError(f"bands * rows must be <= num_perm ({bands} * {rows} > {num_perm})")
        self.bands, self.rows = bands, rows
        self.threads = max(1, threads if threads is not None else min(4, os.cpu_count() or 1))
        # Permutation multipliers (odd) and band-key multipliers, from the seed; pure-Python PRNG
        # so they never depend on the numpy version.
        self._perm_a = np.array([v | 1 for v in splitmix64_sequence(seed, num_perm)], dtype=np.uint64)
        band_mult = splitmix64_sequence(seed ^ 0xB4AD5EED, bands * rows + bands)
        self._band_mult = np.array([v | 1 for v in band_mult[: bands * rows]], dtype=np.uint64).reshape(
            bands, rows
        )
        self._band_salt = np.array(band_mult[bands * rows :], dtype=np.uint64)
        self._hasher = TokenHasher()
        self._exact_index = KeyIndex()
        self._band_index = KeyIndex()
        self._sigs = _SignatureStore()  # signature of each LSH slot
        self._slot_rep = array("i")  # LSH slot -> index of its kept representative
        self._kept_ids: list[str] = []
        self._pool: ThreadPoolExecutor | None = None
        self._n_seen = 0
        self._n_exact = 0
        self._n_near = 0
        self._n_candidates_rejected = 0

    # -- public API ------------------------------------------------------------------------------

    def check(self, ids: Sequence[str], texts: Sequence[str | None]) -> list[str | None]:
        """Check one shard; returns, per row, ``None`` (keep) or the id of the kept row it duplicates.

        The first occurrence in input order is kept: rows are decided in order, against all kept
        rows of earlier shards and the kept rows before them in this shard. Kept rows are added to
        the index, so later shards see them. ``None`` texts are treated as empty strings.
        """
        if len(ids) != len(texts):
            raise ValueError(f"ids and texts differ in length ({len(ids)} vs {len(texts)})")
        n = len(texts)
        if n == 0:
            return []
        normalized = [normalize_text(t) if t else "" for t in texts]
        base = len(self._kept_ids)  # global index of the first row kept in this shard
        rep = np.full(n, _MISSING, dtype=np.int64)  # global kept index each row maps to
        result: list[str | None] = [None] * n

        # 1. Exact: digest of the normalized text vs earlier shards and earlier rows of this shard.
        digests = np.fromiter(map(text_digest, normalized), dtype=np.uint64, count=n)
        uniq, first, inverse = np.unique(digests, return_index=True, return_inverse=True)
        first_row = first[inverse]  # first row of this shard with the same digest
        if self.exact:
            prior = self._exact_index.lookup(uniq)[inverse]
            rep[prior >= 0] = prior[prior >= 0]
            todo = np.flatnonzero((prior < 0) & (first_row == np.arange(n)))
            n_exact = n - len(todo)
        else:
            todo = np.arange(n)
            n_exact = 0
        # Rows left: new texts; only these get signatures.

        # 2. Near: MinHash + LSH band keys for the rows still undecided. Rows enter the LSH index as
        #    "slots" (kept rows; with transitive=True also near-duplicates); slot -> kept index.
        keep_mask = np.zeros(n, dtype=bool)
        if self.near and len(todo):
            sig_t = self._signatures([normalized[i] for i in todo])  # (num_perm, len(todo))
            keys = self._band_keys(sig_t)  # (len(todo), bands)
            prior_band = self._band_index.lookup(keys)
            _, kinv, kcount = np.unique(keys.ravel(), return_inverse=True, return_counts=True)
            shared = (kcount[kinv] > 1).reshape(keys.shape)
            slow = (prior_band >= 0).any(axis=1) | shared.any(axis=1)
            slot_base = len(self._slot_rep)
            local: dict[int, int] = {}  # band key -> slot of a row of this shard
            new_slot_pos: list[int] = []  # position in `todo` of each slot created in this shard
            new_slot_rep: list[int] = []
            next_index = base
            for pos in range(len(todo)):
                row = int(todo[pos])
                if not self.exact and first_row[row] != row:
                    # Identical normalized text earlier in this shard: same signature, same verdict.
                    rep[row] = rep[first_row[row]]
                    continue
                if slow[pos]:
                    slot = self._near_match(
                        pos, sig_t, keys, prior_band, shared, local, new_slot_pos, slot_base
                    )
                    if slot >= 0:
                        rep[row] = (
                            self._slot_rep[slot] if slot < slot_base else new_slot_rep[slot - slot_base]
                        )
                        if not self.transitive:
                            continue
                if rep[row] < 0:
                    rep[row] = next_index
                    keep_mask[row] = True
                    next_index += 1
                if slow[pos]:
                    new_slot = slot_base + len(new_slot_pos)
                    for j in np.flatnonzero(shared[pos]):
                        local.setdefault(int(keys[pos, j]), new_slot)
                new_slot_pos.append(pos)
                new_slot_rep.append(int(rep[row]))
            slot_pos = np.asarray(new_slot_pos, dtype=np.int64)
            self._band_index.insert_new(
                keys[slot_pos], np.repeat(slot_base + np.arange(len(slot_pos)), self.bands)
            )
            self._slot_rep.extend(new_slot_rep)
            if self.verify:
                self._sigs.append(np.ascontiguousarray(sig_t[:, slot_pos].T))
        else:
            # Exact only (or nothing left): every first occurrence of a new text is kept.
            keep_mask[todo] = True
            rep[todo] = base + np.arange(len(todo))

        # Rows that repeat an earlier row of this shard map to that row's representative.
        if self.exact:
            same = (rep < 0) & (first_row != np.arange(n))
            rep[same] = rep[first_row[same]]
        kept_rows = np.flatnonzero(keep_mask)
        self._kept_ids.extend(str(ids[i]) for i in kept_rows)
        # Digest of every first occurrence -> its representative (so copies of near-dups resolve too).
        if self.exact:
            self._exact_index.insert_new(digests[first], rep[first])

        kept_ids = self._kept_ids
        for i in np.flatnonzero(~keep_mask):
            result[i] = kept_ids[int(rep[i])]
        n_dup = n - len(kept_rows)
        self._n_exact += n_exact
        self._n_near += n_dup - n_exact
        self._n_seen += n
        return result

    def stats(self) -> dict[str, Any]:
        """Counts so far and the approximate memory the index holds (bytes)."""
        # Kept ids: CPython ASCII str = 49 bytes + length, plus an 8-byte list slot.
        ids_bytes = sum(map(len, self._kept_ids)) + 57 * len(self._kept_ids)
        index_bytes = (
            self._exact_index.nbytes
            + self._band_index.nbytes
            + self._sigs.nbytes
            + self._slot_rep.itemsize * len(self._slot_rep)
            + ids_bytes
        )
        return {
            "seen": self._n_seen,
            "kept": len(self._kept_ids),
            "duplicates": self._n_seen - len(self._kept_ids),
            "exact_duplicates": self._n_exact,
            "near_duplicates": self._n_near,
            "candidates_rejected": self._n_candidates_rejected,
            "exact_keys": len(self._exact_index),
            "band_keys": len(self._band_index),
            "lsh_rows": len(self._slot_rep),
            "bands": self.bands,
            "rows_per_band": self.rows,
            "index_bytes": index_bytes,
            "index_mb": round(index_bytes / 2**20, 1),
        }

    _STATE_VERSION = 1

    def save(self, path: str | Path) -> None:
        """Write the whole index (config, counters, digests, band keys, signatures, kept ids) to
        ``path`` as an uncompressed ``.npz`` (no pickle), so a resumed build can :meth:`load` it
        instead of re-feeding earlier shards."""
        config = {
            "version": self._STATE_VERSION,
            "exact": self.exact,
            "near": self.near,
            "num_perm": self.num_perm,
            "shingle": self.shingle,
            "threshold": self.threshold,
            "seed": self.seed,
            "shingle_unit": self.shingle_unit,
            "bands": self.bands,
            "rows": self.rows,
            "verify": self.verify,
            "transitive": self.transitive,
            "counters": [self._n_seen, self._n_exact, self._n_near, self._n_candidates_rejected],
        }
        arrays: dict[str, np.ndarray] = {
            "config": np.array(json.dumps(config)),
            "kept_ids": np.array(self._kept_ids, dtype=str),
            "slot_rep": np.frombuffer(self._slot_rep, dtype=np.int32)
            if len(self._slot_rep)
            else np.zeros(0, np.int32),
        }
        for name, index in (("exact", self._exact_index), ("band", self._band_index)):
            for i, (keys, vals) in enumerate(index.runs()):
                arrays[f"{name}_keys_{i}"], arrays[f"{name}_vals_{i}"] = keys, vals
        for i, block in enumerate(self._sigs._blocks):
            arrays[f"sig_{i}"] = block
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> Deduplicator:
        """Restore a :class:`Deduplicator` written by :meth:`save`; it continues where it stopped."""
        with np.load(path, allow_pickle=False) as data:
            config = json.loads(str(data["config"]))
            if config.pop("version", None) != cls._STATE_VERSION:
                raise ValueError(f"{path}: not a Deduplicator state of version {cls._STATE_VERSION}")
            counters = config.pop("counters")
            dedup = cls(**config, threads=threads)
            dedup._n_seen, dedup._n_exact, dedup._n_near, dedup._n_candidates_rejected = counters
            dedup._kept_ids = data["kept_ids"].tolist()
            dedup._slot_rep = array("i", data["slot_rep"].astype(np.int32).tobytes())

            def runs(name: str) -> list[tuple[np.ndarray, np.ndarray]]:
                out, i = [], 0
                while f"{name}_keys_{i}" in data:
                    out.append((data[f"{name}_keys_{i}"], data[f"{name}_vals_{i}"]))
                    i += 1
                return out

            dedup._exact_index = KeyIndex.from_runs(runs("exact"))
            dedup._band_index = KeyIndex.from_runs(runs("band"))
            i = 0
            while f"sig_{i}" in data:
                dedup._sigs.append(data[f"sig_{i}"])
                i += 1
        return dedup

    def close(self) -> None:
        """Stop the worker threads (the index stays usable; threads restart on demand)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    # -- internals -------------------------------------------------------------------------------

    def _near_match(
        self,
        pos: int,
        sig_t: np.ndarray,
        keys: np.ndarray,
        prior_band: np.ndarray,
        shared: np.ndarray,
        local: dict[int, int],
        new_slot_pos: list[int],
        slot_base: int,
    ) -> int:
        """Earliest indexed slot sharing a band with row ``pos`` (and passing verification), or -1."""
        cands: set[int] = {int(g) for g in prior_band[pos] if g >= 0}
        for j in np.flatnonzero(shared[pos]):
            g = local.get(int(keys[pos, j]))
            if g is not None:
                cands.add(g)
        if not self.verify:
            return min(cands) if cands else _MISSING
        need = self.threshold * self.num_perm - 1e-9
        sig = sig_t[:, pos]
        for g in sorted(cands):
            other = self._sigs.get(g) if g < slot_base else sig_t[:, new_slot_pos[g - slot_base]]
            if np.count_nonzero(sig == other) >= need:
                return g
            self._n_candidates_rejected += 1
        return _MISSING

    def _signatures(self, normalized: list[str]) -> np.ndarray:
        """MinHash signatures, transposed: ``(num_perm, len(normalized))`` uint32."""
        shingles, offsets = ngram_hashes(
            normalized, self.shingle, unit=self.shingle_unit, hasher=self._hasher
        )
        n = len(normalized)
        out = np.empty((self.num_perm, n), dtype=np.uint32)
        # Chunks of whole texts of ~16K shingles keep the (perms x shingles) product cache-sized.
        cuts = np.searchsorted(offsets, np.arange(16384, int(offsets[-1]), 16384))
        bounds = [0, *sorted({int(c) for c in cuts if 0 < c < n}), n]
        parts = np.array_split(np.arange(self.num_perm), min(self.threads, self.num_perm))

        def work(perm_rows: np.ndarray) -> None:
            a = self._perm_a[perm_rows][:, None]
            p0, p1 = int(perm_rows[0]), int(perm_rows[-1]) + 1
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
                s0, s1 = int(offsets[lo]), int(offsets[hi])
                prod = np.multiply(a, shingles[None, s0:s1])  # wraps mod 2**64
                low = np.minimum.reduceat(prod, offsets[lo:hi] - s0, axis=1)
                low >>= _U64(32)
                out[p0:p1, lo:hi] = low

        if self.threads == 1 or n < 64:
            work(np.arange(self.num_perm))
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="minhash")
            for f in [self._pool.submit(work, p) for p in parts]:
                f.result()
        return out

    def _band_keys(self, sig_t: np.ndarray) -> np.ndarray:
        """One 64-bit key per (row, band), ``(n, bands)``: the band's values hashed, band number salted in."""
        n = sig_t.shape[1]
        keys = np.empty((self.bands, n), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(self.bands):
                acc = np.full(n, self._band_salt[j], dtype=np.uint64)
                for k in range(self.rows):
                    acc += sig_t[j * self.rows + k].astype(np.uint64) * self._band_mult[j, k]
                keys[j] = acc
        return np.ascontiguousarray(mix64(keys).T)
