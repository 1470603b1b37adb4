"""Streaming exact + near-duplicate detection: normalized-text digests, MinHash LSH, exact verification.

A :class:`Deduplicator` is fed shards one after another (``check(ids, texts)``) and answers, for
every row, ``None`` (keep) or the id of an earlier kept row it duplicates. The rule is
**first occurrence wins**: the earliest row in input order (shard order, then order within the
shard) is kept, every later copy points at it.

How a shard is processed, column-wise (no Python loop per row except over rows that collide with
another row of the same shard). Steps 1-3 run on chunks of 4,096 rows in ``threads`` worker threads
(numpy releases the GIL); the decisions run on the whole shard, in order:

1. all texts of a chunk are normalized at once (:func:`~cftdata.quality.normalize.normalize_many`, byte for
   byte :func:`~cftdata.quality.normalize.normalize_text`) into one buffer; exact duplicates are
   found by an 8-byte digest of each normalized row;
2. the remaining rows are cut into word n-gram shingles (``shingle`` words; or characters with
   ``shingle_unit="char"``), hashed from the buffer in numpy, and reduced to per-row sorted sets
   of 32-bit shingle hashes;
3. ``num_perm`` MinHash values per row (one uint32 multiply per shingle and permutation), cut into
   ``bands`` bands of ``rows`` values, each hashed to a 64-bit key; a row sharing a band key with
   an indexed row, or with another row of the shard, has a *candidate*;
4. with ``verify=True`` (default) a candidate counts only if the two rows' **true** Jaccard
   similarity of shingle sets is at least ``threshold``. The index keeps each indexed row's
   shingle set when it has at most ``num_perm`` shingles (the common case: ~35 for a 40-word
   question, 140 bytes) and its signature otherwise; a pair whose earlier row kept only its
   signature is verified by the signature estimate (fraction of equal MinHash values).

Because verification is exact, the bands can lean to recall: the default split
(:func:`optimal_bands` with a 1 % false-positive weight: 18 x 7 for 0.8 / 128) makes a pair at
Jaccard 0.8 a candidate with probability 0.986 and at 0.85 with 0.999, while a pair below the
threshold is never dropped. With ``verify=False`` any shared band counts (14 x 9 by default: 0.87
at 0.8, 0.13 at 0.6). docs/dedup.md has the measurements.

Memory is bounded by what is kept, never by the text: per kept row the index holds an 8-byte
digest (12 bytes with its value), ``bands`` band keys (12 bytes each), the shingle set (4 bytes a
shingle, at most ``num_perm * 4`` bytes) or signature, 16 bytes of bookkeeping and the id's UTF-8
bytes; about 400 bytes for a 40-word question with the defaults. ``stats()["index_bytes"]``
reports the current figure.
"""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cftdata.quality.minhash import (
    band_keys,
    gather_ranges,
    optimal_bands,
    pair_jaccard,
    permutations,
    shingle_sets,
    signatures,
)
from cftdata.quality.normalize import ShingleUnit, normalize_many

__all__ = ["Deduplicator", "KeyIndex", "optimal_bands"]

_MISSING = -1


class _Runs:
    """Sorted ``(keys, values)`` runs with disjoint keys, merged like a log-structured tree."""

    def __init__(self) -> None:
        self.keys: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []

    def lookup(self, flat: np.ndarray, found: np.ndarray) -> None:
        """Write the values of the sorted ``flat`` keys that are present into ``found``."""
        for run_keys, run_vals in zip(self.keys, self.vals, strict=True):
            pos = np.searchsorted(run_keys, flat)
            np.minimum(pos, len(run_keys) - 1, out=pos)
            hit = run_keys[pos] == flat
            found[hit] = run_vals[pos[hit]]

    def add(self, keys: np.ndarray, vals: np.ndarray) -> None:
        self.keys.append(keys)
        self.vals.append(vals)
        while len(self.keys) > 1 and len(self.keys[-2]) <= 2 * len(self.keys[-1]):
            k2, v2 = self.keys.pop(), self.vals.pop()
            k1, v1 = self.keys.pop(), self.vals.pop()
            merged = np.concatenate([k1, k2])
            order = np.argsort(merged, kind="stable")  # timsort: one linear merge of the two runs
            self.keys.append(merged[order])
            self.vals.append(np.concatenate([v1, v2])[order])


class KeyIndex:
    """A compact ``uint64 -> int`` map for numpy batches: sorted runs merged like a log-structured tree.

    Keys are stored once (the first value inserted for a key wins; :meth:`insert_new` skips keys
    already present). Memory is 12 bytes per key. The keys are split by their top 4 bits into 16
    partitions, each a list of sorted runs; runs of similar size are merged (total merge work
    ``O(n log n)``, and no merge copies more than a 16th of the index at once). Lookups sort the
    queries once and run ``np.searchsorted`` over each run of each partition (sorted queries walk
    a run in order: ten times faster than random ones).
    """

    _CUTS = np.array([k << 60 for k in range(1, 16)], dtype=np.uint64)

    def __init__(self) -> None:
        self._parts = [_Runs() for _ in range(16)]

    def __len__(self) -> int:
        return sum(len(k) for part in self._parts for k in part.keys)

    @property
    def nbytes(self) -> int:
        """Bytes held by the key and value arrays."""
        return sum(k.nbytes + v.nbytes for part in self._parts for k, v in zip(part.keys, part.vals, strict=True))

    def _bounds(self, sorted_keys: np.ndarray) -> list[int]:
        return [0, *np.searchsorted(sorted_keys, self._CUTS).tolist(), len(sorted_keys)]

    def lookup(self, keys: np.ndarray, *, assume_sorted: bool = False) -> np.ndarray:
        """Values for ``keys`` (any shape) as int64, ``-1`` where a key is absent.

        Pass ``assume_sorted=True`` when ``keys`` is already sorted (skips one sort).
        """
        flat = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        order = None
        if not assume_sorted and len(flat) > 1:
            order = np.argsort(flat)
            flat = flat[order]
        found = np.full(flat.shape, _MISSING, dtype=np.int64)
        bounds = self._bounds(flat)
        for part, lo, hi in zip(self._parts, bounds[:-1], bounds[1:], strict=True):
            if hi > lo and part.keys:
                part.lookup(flat[lo:hi], found[lo:hi])
        if order is not None:
            out = np.empty_like(found)
            out[order] = found
            found = out
        return found.reshape(np.shape(keys))

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
        absent = self.lookup(uniq, assume_sorted=True) == _MISSING
        self.insert_sorted(uniq[absent], values[first[absent]])
        return int(absent.sum())

    def insert_sorted(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Insert keys that are sorted, unique and not present yet (the caller knows: no checks)."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        values = np.asarray(values).astype(np.int32)
        bounds = self._bounds(keys)
        for part, lo, hi in zip(self._parts, bounds[:-1], bounds[1:], strict=True):
            if hi > lo:
                part.add(keys[lo:hi].copy(), values[lo:hi].copy())

    def runs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The sorted ``(keys, values)`` runs (for saving)."""
        return [kv for part in self._parts for kv in zip(part.keys, part.vals, strict=True)]

    @classmethod
    def from_runs(cls, runs: Sequence[tuple[np.ndarray, np.ndarray]]) -> KeyIndex:
        """Rebuild an index from :meth:`runs` output."""
        idx = cls()
        for keys, vals in runs:
            keys = np.ascontiguousarray(keys, dtype=np.uint64)
            vals = np.ascontiguousarray(vals, dtype=np.int32)
            bounds = idx._bounds(keys)
            for part, lo, hi in zip(idx._parts, bounds[:-1], bounds[1:], strict=True):
                if hi > lo:
                    part.keys.append(keys[lo:hi])
                    part.vals.append(vals[lo:hi])
        return idx


def _view(buf: array, dtype: type) -> np.ndarray:
    """A numpy copy-free view of an ``array.array`` (drop it before the array grows)."""
    return np.frombuffer(buf, dtype=dtype) if len(buf) else np.zeros(0, dtype=dtype)


class Deduplicator:
    """Streaming exact + near-duplicate detector; feed it shards in order with :meth:`check`.

    **First occurrence wins**: for each row ``check`` returns ``None`` if the row is kept, or the id
    of the earlier kept row it duplicates. "Earlier" means an earlier shard, or earlier in the same
    shard. Returned ids always name kept rows (a copy of a duplicate points at the kept original).
    Not thread-safe: feed shards from one thread, in order. :meth:`save` / :meth:`load` persist
    the index so a resumed build continues without re-reading earlier shards.

    Args:
        exact: flag rows whose :func:`~cftdata.quality.normalize.normalize_text` form equals an
            earlier row's (compared by 8-byte digests; texts are never stored).
        near: flag rows whose shingle sets have Jaccard similarity >= ``threshold`` with an
            earlier kept row (MinHash LSH candidates, verified).
        num_perm: MinHash permutations (signature length).
        shingle: shingle size: words per n-gram (``shingle_unit="word"``) or characters
            (``shingle_unit="char"``). Texts shorter than one shingle get one shingle of all tokens.
        threshold: Jaccard similarity at or above which two texts are near-duplicates.
        seed: seeds the MinHash permutations; indexes built with different seeds are incompatible.
        shingle_unit: ``"word"`` (default) or ``"char"``.
        bands: LSH bands; default: :func:`optimal_bands` (18 x 7 for the defaults; 14 x 9 with
            ``verify=False``).
        rows: signature values per band when ``bands`` is given (default ``num_perm // bands``).
        verify: confirm each LSH candidate by the two rows' Jaccard similarity: exact from the
            stored shingle sets (rows of at most ``num_perm`` shingles), else estimated from the
            signatures. Without it, any shared band means duplicate and nothing but band keys is
            stored.
        transitive: also index near-duplicates, so a row that matches a dropped near-duplicate
            is dropped too (pointing at that one's kept original). Catches chains of small edits
            (A, A', A'') at the price of indexing every non-exact row; each link is verified
            against the row it matched, not against the kept original. Default off: every
            returned id then names a kept row that the dropped row itself matched.
        threads: worker threads for the text work (normalization, hashing, MinHash, index
            lookups), chunk by chunk; numpy releases the GIL. Default ``min(4, os.cpu_count())``;
            the verdicts do not depend on it.
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
            # Verified candidates cost little and never drop a pair below the threshold, so the
            # bands lean to recall (1 % weight on false positives) when verifying.
            bands, rows = optimal_bands(min(threshold, 0.99), num_perm, 0.01 if verify else 0.1)
        else:
            if not 1 <= bands <= num_perm:
                raise ValueError(f"bands must be in [1, num_perm], got {bands}")
            rows = rows or num_perm // bands
            if bands * rows > num_perm:
                raise ValueError(f"bands * rows must be <= num_perm ({bands} * {rows} > {num_perm})")
        self.bands, self.rows = bands, rows
        self.threads = max(1, threads if threads is not None else min(4, os.cpu_count() or 1))
        self._perm = permutations(seed, num_perm)
        self._exact_index = KeyIndex()
        self._band_index = KeyIndex()
        # Indexed rows ("slots": kept rows; with transitive=True also near-duplicates).
        self._slot_rep = array("i")  # slot -> index of its kept representative
        self._slot_pos = array("q")  # slot -> start of its shingle set in _sets, or of its signature in _sigs
        self._slot_len = array("i")  # slot -> shingle set size, or -1 when the signature is stored
        self._sets = array("I")  # shingle sets of slots, end to end
        self._sigs = array("I")  # signatures of slots with more than num_perm shingles
        # Kept ids: UTF-8 bytes end to end, and where each ends.
        self._id_bytes = bytearray()
        self._id_ends = array("q")
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
        # The text work runs on chunks of the shard in parallel threads (numpy and the MinHash
        # kernel release the GIL) and keeps only compact sketches; the decisions afterwards run on
        # the whole shard, in order.
        chunks = [texts[lo : lo + _CHUNK] for lo in range(0, n, _CHUNK)]
        sketch = _Sketch.merge(self._map(self._sketch, chunks), lambda fn, items: self._map(fn, list(items)))
        base = len(self._id_ends)  # global index of the first row kept in this shard
        rep = np.full(n, _MISSING, dtype=np.int64)  # global kept index each row maps to

        # 1. Exact: digest of the normalized text vs earlier shards and earlier rows of this shard.
        uniq, first, inverse = np.unique(sketch.digests, return_index=True, return_inverse=True)
        first_row = first[inverse]  # first row of this shard with the same digest
        is_first = first_row == np.arange(n)
        if self.exact:
            prior_uniq = self._exact_index.lookup(uniq, assume_sorted=True)
            prior = prior_uniq[inverse]
            rep[prior >= 0] = prior[prior >= 0]
            todo = np.flatnonzero((prior < 0) & is_first)
            n_exact = n - len(todo)
        else:
            todo = np.flatnonzero(is_first)  # a repeat within the shard gets its first row's verdict
            n_exact = 0

        # 2. Near: the rows left (new texts) against the LSH index and each other.
        keep_mask = np.zeros(n, dtype=bool)
        if self.near and len(todo):
            rep_near, keep_mask = self._near(sketch, todo, base)
            rep[todo] = rep_near[todo]
        else:
            keep_mask[todo] = True
            rep[todo] = base + np.arange(len(todo))
        del sketch

        # Rows repeating an earlier row of this shard map to that row's representative.
        same = (rep < 0) & ~is_first
        rep[same] = rep[first_row[same]]
        self._add_ids([ids[i] for i in np.flatnonzero(keep_mask).tolist()])
        # Digest of every first occurrence -> its representative (so copies of near-dups resolve too).
        if self.exact:
            absent = prior_uniq < 0
            self._exact_index.insert_sorted(uniq[absent], rep[first[absent]])

        result: list[str | None] = [None] * n
        dropped = np.flatnonzero(~keep_mask)
        for i, target in zip(dropped.tolist(), self._ids_at(rep[dropped]), strict=True):
            result[i] = target
        n_dup = len(dropped)
        self._n_exact += n_exact
        self._n_near += n_dup - n_exact
        self._n_seen += n
        return result

    def stats(self) -> dict[str, Any]:
        """Counts so far and the memory the index holds (bytes)."""
        index_bytes = (
            self._exact_index.nbytes
            + self._band_index.nbytes
            + sum(a.itemsize * len(a) for a in (self._slot_rep, self._slot_pos, self._slot_len))
            + self._sets.itemsize * len(self._sets)
            + self._sigs.itemsize * len(self._sigs)
            + len(self._id_bytes)
            + self._id_ends.itemsize * len(self._id_ends)
        )
        stored_sigs = len(self._sigs) // self.num_perm
        return {
            "seen": self._n_seen,
            "kept": len(self._id_ends),
            "duplicates": self._n_seen - len(self._id_ends),
            "exact_duplicates": self._n_exact,
            "near_duplicates": self._n_near,
            "candidates_rejected": self._n_candidates_rejected,
            "exact_keys": len(self._exact_index),
            "band_keys": len(self._band_index),
            "lsh_rows": len(self._slot_rep),
            "stored_shingle_sets": len(self._slot_rep) - stored_sigs if self.verify else 0,
            "stored_signatures": stored_sigs,
            "bands": self.bands,
            "rows_per_band": self.rows,
            "index_bytes": index_bytes,
            "index_mb": round(index_bytes / 2**20, 1),
        }

    _STATE_VERSION = 2

    def save(self, path: str | Path) -> None:
        """Write the whole index (config, counters, digests, band keys, shingle sets, signatures,
        kept ids) to ``path`` as an uncompressed ``.npz`` (no pickle), so a resumed build can
        :meth:`load` it instead of re-feeding earlier shards."""
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
            "id_bytes": np.frombuffer(bytes(self._id_bytes), dtype=np.uint8),
            "id_ends": _view(self._id_ends, np.int64),
            "slot_rep": _view(self._slot_rep, np.int32),
            "slot_pos": _view(self._slot_pos, np.int64),
            "slot_len": _view(self._slot_len, np.int32),
            "sets": _view(self._sets, np.uint32),
            "sigs": _view(self._sigs, np.uint32),
        }
        for name, index in (("exact", self._exact_index), ("band", self._band_index)):
            for i, (keys, vals) in enumerate(index.runs()):
                arrays[f"{name}_keys_{i}"], arrays[f"{name}_vals_{i}"] = keys, vals
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> Deduplicator:
        """Restore a :class:`Deduplicator` written by :meth:`save`; it continues where it stopped."""
        with np.load(path, allow_pickle=False) as data:
            config = json.loads(str(data["config"]))
            if config.pop("version", None) != cls._STATE_VERSION:
                raise ValueError(
                    f"{path}: not a Deduplicator state of version {cls._STATE_VERSION} (written by "
                    "another cftdata version; rebuild the index from the start)"
                )
            counters = config.pop("counters")
            dedup = cls(**config, threads=threads)
            dedup._n_seen, dedup._n_exact, dedup._n_near, dedup._n_candidates_rejected = counters
            dedup._id_bytes = bytearray(data["id_bytes"].tobytes())
            for name, code in (
                ("id_ends", "q"),
                ("slot_rep", "i"),
                ("slot_pos", "q"),
                ("slot_len", "i"),
                ("sets", "I"),
                ("sigs", "I"),
            ):
                target = array(code)
                target.frombytes(data[name].tobytes())
                setattr(dedup, "_" + name, target)

            def runs(name: str) -> list[tuple[np.ndarray, np.ndarray]]:
                out, i = [], 0
                while f"{name}_keys_{i}" in data:
                    out.append((data[f"{name}_keys_{i}"], data[f"{name}_vals_{i}"]))
                    i += 1
                return out

            dedup._exact_index = KeyIndex.from_runs(runs("exact"))
            dedup._band_index = KeyIndex.from_runs(runs("band"))
        return dedup

    def close(self) -> None:
        """Stop the worker threads (the index stays usable; threads restart on demand)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    # -- internals -------------------------------------------------------------------------------

    def _add_ids(self, ids: list[str]) -> None:
        if not ids:
            return
        ids = list(map(str, ids))
        joined = "".join(ids)
        if joined.isascii():  # one encode; byte lengths are character lengths
            data, sizes = joined.encode("ascii"), map(len, ids)
        else:
            encoded = [i.encode("utf-8") for i in ids]
            data, sizes = b"".join(encoded), map(len, encoded)
        start = len(self._id_bytes)
        self._id_bytes += data
        ends = np.cumsum(np.fromiter(sizes, dtype=np.int64, count=len(ids))) + start
        self._id_ends.frombytes(ends.tobytes())

    def _ids_at(self, kept: np.ndarray) -> list[str]:
        ends = _view(self._id_ends, np.int64)
        stop = ends[kept].tolist()
        start = np.where(kept > 0, ends[np.maximum(kept - 1, 0)], 0).tolist()
        raw = self._id_bytes
        return [raw[a:b].decode("utf-8") for a, b in zip(start, stop, strict=True)]

    def _map(self, fn: Any, items: list) -> list:
        """``[fn(x) for x in items]``, on the worker threads when there are several items."""
        if len(items) == 1 or self.threads == 1:
            return [fn(x) for x in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="dedup")
        return list(self._pool.map(fn, items))

    def _sketch(self, texts: Sequence[str | None]) -> _Sketch:
        """Everything about a chunk of texts that does not depend on the other rows of the shard:
        digests, shingle sets, band keys (sorted), the indexed slots they meet (verified) and, for
        long rows only, signatures. Runs on worker threads: it only reads the index."""
        batch = normalize_many(texts)
        digests = batch.digests()
        if not self.near:
            return _Sketch(digests)
        hashes, offsets = batch.ngrams(self.shingle, unit=self.shingle_unit)
        del batch
        values, set_off = shingle_sets(hashes, offsets)
        del hashes
        sig = signatures(values, set_off, self._perm)
        flat = band_keys(sig, self.bands, self.rows, self.seed).ravel()
        # Signatures are needed later only by rows that may match a row stored by its signature
        # (more than num_perm shingles): rows of more than threshold * num_perm shingles.
        sig_rows = np.flatnonzero(np.diff(set_off) > self.threshold * self.num_perm)
        sketch = _Sketch(digests, values, set_off, sig_rows, np.ascontiguousarray(sig[:, sig_rows].T))
        del sig
        order = np.argsort(flat)
        sketch.sorted_keys = flat[order]
        sketch.sorted_rows = order // self.bands
        prior = self._band_index.lookup(sketch.sorted_keys, assume_sorted=True)
        sketch.indexed = prior >= 0
        # Every (row, indexed slot) pair met through a band key, verified; pairs sorted by (row,
        # slot): the first verified pair of a row is its earliest slot.
        hit = sketch.indexed
        pairs = np.unique((sketch.sorted_rows[hit].astype(np.uint64) << np.uint64(32)) | prior[hit].astype(np.uint64))
        rows = (pairs >> np.uint64(32)).astype(np.int64)
        slots = (pairs & np.uint64(0xFFFFFFFF)).astype(np.int64)
        ok = self._verify_indexed(sketch, rows, slots)
        sketch.rejected = int(np.count_nonzero(~ok))
        rows, slots = rows[ok], slots[ok]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = rows[1:] != rows[:-1]
        sketch.best_prior = np.full(len(digests), _MISSING, dtype=np.int64)
        sketch.best_prior[rows[first]] = slots[first]
        return sketch

    def _verify_indexed(self, sketch: _Sketch, rows: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Whether each (row of ``sketch``, indexed slot) pair reaches the threshold."""
        if not self.verify or len(rows) == 0:
            return np.ones(len(rows), dtype=bool)
        ok = np.zeros(len(rows), dtype=bool)
        slot_len = _view(self._slot_len, np.int32)[slots].astype(np.int64)
        slot_pos = _view(self._slot_pos, np.int64)[slots]
        as_set = slot_len >= 0
        if as_set.any():
            off, lens = sketch.set_off, np.diff(sketch.set_off)
            r = rows[as_set]
            sim = pair_jaccard(
                sketch.values, off[r], lens[r], _view(self._sets, np.uint32), slot_pos[as_set], slot_len[as_set]
            )
            ok[as_set] = sim >= self.threshold - 1e-12
        # Slots stored by signature (more than num_perm shingles): the estimate, for rows that are
        # long enough to reach the threshold (and so kept their signature); shorter rows cannot.
        by_sig = np.flatnonzero(~as_set)
        by_sig = by_sig[sketch.has_signature(rows[by_sig])]
        if len(by_sig):
            stored = _view(self._sigs, np.uint32)[gather_ranges(slot_pos[by_sig], np.full(len(by_sig), self.num_perm))]
            equal = np.count_nonzero(stored.reshape(-1, self.num_perm) == sketch.signature(rows[by_sig]), axis=1)
            ok[by_sig] = equal >= self.threshold * self.num_perm - 1e-9
        return ok

    def _near(self, sketch: _Sketch, todo: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray]:
        """Decide the rows ``todo`` of the shard (new texts, ascending) against the LSH index and
        each other; index the new slots. Returns, per row of the shard, the representative (global
        kept index; meaningful for ``todo``) and whether the row is kept."""
        m = len(sketch.digests)
        active = np.zeros(m, dtype=bool)
        active[todo] = True
        self._n_candidates_rejected += sketch.rejected
        cand = _Candidates(self, sketch, None if len(todo) == m else active)

        # Rows that share no band key with another row of this shard are decided on their own; the
        # others (a few percent: edits of rows of the same shard), one by one in order.
        best_prior = np.where(active, sketch.best_prior, _MISSING)  # earliest verified indexed slot
        slot_base = len(self._slot_rep)
        is_dup = (best_prior >= 0) | ~active  # (rows not to decide are neither kept nor indexed)
        dup = is_dup.tolist()
        slot = (active & (~is_dup | self.transitive)).tolist()
        match_row: dict[int, int] = {}  # row -> the earlier row of this shard it duplicates
        xs, heads, groups, verified = cand.local_pairs
        k, end = 0, len(xs)
        while k < end:
            x, first = xs[k], k
            while k < end and xs[k] == x:
                k += 1
            if dup[x]:
                continue
            # Pairs are sorted by head: the first indexed, verified head is the earliest match...
            found = next((heads[j] for j in range(first, k) if slot[heads[j]] and verified[j]), None)
            # ... unless a group's first row is not indexed: then its first indexed row before x.
            others = {cand.first_slot(groups[j], x, slot) for j in range(first, k) if not slot[heads[j]]}
            for y in sorted(y for y in others if y is not None and (found is None or y < found)):
                if cand.local_match(x, y):
                    found = y
                    break
            if found is not None:
                dup[x] = True
                match_row[x] = found
                slot[x] = self.transitive
        is_dup = np.array(dup, dtype=bool)
        is_slot = np.array(slot, dtype=bool)

        kept = ~is_dup
        rep = np.full(m, _MISSING, dtype=np.int64)  # (is_dup holds the rows not to decide)
        rep[kept] = base + np.arange(int(kept.sum()))
        from_prior = best_prior >= 0
        if from_prior.any():
            slot_rep = _view(self._slot_rep, np.int32)
            rep[from_prior] = slot_rep[best_prior[from_prior]]
            del slot_rep
        for x in sorted(match_row):  # ascending: each target is resolved first
            rep[x] = rep[match_row[x]]

        # Index the new slots: band keys (first slot wins a key), then what verification needs.
        slots = np.flatnonzero(is_slot)
        slot_id = np.full(m, _MISSING, dtype=np.int64)
        slot_id[slots] = slot_base + np.arange(len(slots))
        self._band_index.insert_sorted(*cand.new_band_entries(slot_id))
        self._slot_rep.frombytes(rep[slots].astype(np.int32).tobytes())
        if self.verify:
            self._store(slots, sketch)
        return rep, kept

    def _store(self, slots: np.ndarray, sketch: _Sketch) -> None:
        """Append the shingle set (at most num_perm shingles) or else the signature of each slot."""
        set_len = np.diff(sketch.set_off)
        as_set = set_len[slots] <= self.num_perm
        pos = np.empty(len(slots), dtype=np.int64)
        lens = np.where(as_set, set_len[slots], -1).astype(np.int32)
        set_rows = slots[as_set]
        sizes = set_len[set_rows]
        pos[as_set] = len(self._sets) + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        take = np.zeros(len(set_len), dtype=bool)
        take[set_rows] = True
        self._sets.frombytes(sketch.values[np.repeat(take, set_len)].tobytes())
        sig_rows = slots[~as_set]
        pos[~as_set] = len(self._sigs) + self.num_perm * np.arange(len(sig_rows), dtype=np.int64)
        self._sigs.frombytes(sketch.signature(sig_rows).tobytes())
        self._slot_pos.frombytes(pos.tobytes())
        self._slot_len.frombytes(lens.tobytes())


_KEY_RANGES = np.array([1 << 63], dtype=np.uint64)  # the merge of band keys runs on these ranges in parallel
_CHUNK = 4096  # rows per unit of text work (its temporaries stay in cache; ~12 per 50K-row shard)


class _Sketch:
    """What the near-duplicate search needs of a run of rows.

    ``digests`` of the normalized texts; shingle sets (flat ``values``, ``set_off``); the
    signatures ``(len(sig_rows), num_perm)`` of the rows ``sig_rows`` (those long enough to need
    one); all band keys sorted (``sorted_keys``, with their ``sorted_rows`` and whether each is
    ``indexed`` already); ``best_prior``, each row's earliest verified indexed slot (-1: none);
    ``rejected``, the candidate pairs that failed verification.
    """

    def __init__(
        self,
        digests: np.ndarray,
        values: np.ndarray | None = None,
        set_off: np.ndarray | None = None,
        sig_rows: np.ndarray | None = None,
        sigs: np.ndarray | None = None,
    ) -> None:
        n = len(digests)
        self.digests = digests
        self.values = values if values is not None else np.zeros(0, dtype=np.uint32)
        self.set_off = set_off if set_off is not None else np.zeros(n + 1, dtype=np.int64)
        self.sig_rows = sig_rows if sig_rows is not None else np.zeros(0, dtype=np.int64)
        self.sigs = sigs if sigs is not None else np.zeros((0, 1), dtype=np.uint32)
        self.sorted_keys = np.zeros(0, dtype=np.uint64)
        self.sorted_rows = np.zeros(0, dtype=np.int64)
        self.indexed = np.zeros(0, dtype=bool)
        self.best_prior = np.full(n, _MISSING, dtype=np.int64)
        self.rejected = 0

    @classmethod
    def merge(cls, parts: list[_Sketch], map_fn: Any = None) -> _Sketch:
        """The sketches of consecutive runs of rows, end to end (band keys merged in order; the
        merge is split into ranges of key values, run through ``map_fn`` (``map``-like: threads))."""
        if len(parts) == 1:
            return parts[0]
        offsets, sig_rows, rows, row0, value0 = [parts[0].set_off[:1]], [], [], 0, 0
        for p in parts:
            offsets.append(p.set_off[1:] + value0)
            sig_rows.append(p.sig_rows + row0)
            rows.append(p.sorted_rows + row0)
            row0 += len(p.digests)
            value0 += int(p.set_off[-1])
        out = cls(
            np.concatenate([p.digests for p in parts]),
            np.concatenate([p.values for p in parts]),
            np.concatenate(offsets),
            np.concatenate(sig_rows),
            np.concatenate([p.sigs for p in parts]),
        )
        cuts = [np.searchsorted(p.sorted_keys, _KEY_RANGES) for p in parts]

        def merge_range(r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            sl = [slice(0 if r == 0 else c[r - 1], len(p.sorted_keys) if r == len(_KEY_RANGES) else c[r])
                  for p, c in zip(parts, cuts, strict=True)]  # fmt: skip
            keys = np.concatenate([p.sorted_keys[i] for p, i in zip(parts, sl, strict=True)])
            order = np.argsort(keys, kind="stable")  # sorted runs: a merge
            return (
                keys[order],
                np.concatenate([rw[i] for rw, i in zip(rows, sl, strict=True)])[order],
                np.concatenate([p.indexed[i] for p, i in zip(parts, sl, strict=True)])[order],
            )

        merged = list((map_fn or map)(merge_range, range(len(_KEY_RANGES) + 1)))
        out.sorted_keys = np.concatenate([m[0] for m in merged])
        out.sorted_rows = np.concatenate([m[1] for m in merged])
        out.indexed = np.concatenate([m[2] for m in merged])
        out.best_prior = np.concatenate([p.best_prior for p in parts])
        out.rejected = sum(p.rejected for p in parts)
        return out

    def signature(self, rows: np.ndarray) -> np.ndarray:
        """Signatures of ``rows`` (each must be in ``sig_rows``), ``(len(rows), num_perm)``."""
        return self.sigs[np.searchsorted(self.sig_rows, rows)]

    def has_signature(self, rows: np.ndarray) -> np.ndarray:
        """Whether each of ``rows`` kept its signature."""
        if not len(self.sig_rows):
            return np.zeros(len(rows), dtype=bool)
        at = np.minimum(np.searchsorted(self.sig_rows, rows), len(self.sig_rows) - 1)
        return self.sig_rows[at] == rows


class _Candidates:
    """Rows of one shard's new rows that share a band key (a *group*), for the in-order pass.

    Pairs (row, first row of each group it is in) are verified at once; a pair whose first row
    turns out not indexed is replaced by the group's first indexed row, verified on demand.
    """

    def __init__(self, dedup: Deduplicator, sketch: _Sketch, active: np.ndarray | None) -> None:
        self.d = dedup
        self.sketch = sketch
        keys, rows, indexed = sketch.sorted_keys, sketch.sorted_rows, sketch.indexed
        if active is not None:  # only the rows to decide take part
            keep = active[rows]
            keys, rows, indexed = keys[keep], rows[keep], indexed[keep]
        self._keys, self._rows, self._indexed = keys, rows, indexed
        same = keys[1:] == keys[:-1]
        in_group = np.zeros(len(keys), dtype=bool)
        in_group[:-1] = same
        in_group[1:] |= same
        self._first_of_key = np.r_[True, ~same]  # where a run of equal keys starts
        at = np.flatnonzero(in_group)
        self._at = at
        g_rows = rows[at]
        new = np.ones(len(at), dtype=bool)
        new[1:] = ~same[at[1:] - 1]  # a group starts where the key differs from the previous one
        g_ids = np.cumsum(new) - 1
        self._g_rows, self._g_ids, self._g_new = g_rows, g_ids, new
        self.local_pairs: tuple[list[int], list[int], list[int], list[bool]] = ([], [], [], [])
        if len(g_rows):
            head = np.minimum.reduceat(g_rows, np.flatnonzero(new))[g_ids]
            # (row, head of a group it is in) pairs, one group kept per pair, verified at once.
            sel = g_rows != head
            pair = (g_rows[sel].astype(np.uint64) << np.uint64(32)) | head[sel].astype(np.uint64)
            pair, first = np.unique(pair, return_index=True)  # sorted by row, then head
            xs = (pair >> np.uint64(32)).astype(np.int64)
            hs = (pair & np.uint64(0xFFFFFFFF)).astype(np.int64)
            ok = self._verify(xs, hs)
            self.local_pairs = (xs.tolist(), hs.tolist(), g_ids[sel][first].tolist(), ok.tolist())

    def new_band_entries(self, slot_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Band keys to index (sorted, not indexed yet) and their slots: each key of this shard's
        new slots goes to the first slot (in row order) that has it."""
        big = np.iinfo(np.int64).max
        slot_of = slot_id[self._rows]
        slot_of[(slot_of < 0) | self._indexed] = big
        if len(self._at):  # keys shared by several rows: the first slot of each, at its first position
            group_first = np.minimum.reduceat(slot_of[self._at], np.flatnonzero(self._g_new))
            slot_of[self._at[self._g_new]] = group_first
        keep = self._first_of_key & (slot_of != big)
        return self._keys[keep], slot_of[keep]

    def first_slot(self, group: int, x: int, slot: list[bool]) -> int | None:
        """The first row of ``group`` (a band key of this shard) before ``x`` that is indexed."""
        lo, hi = np.searchsorted(self._g_ids, [group, group + 1])
        return next((r for r in sorted(self._g_rows[lo:hi].tolist()) if r < x and slot[r]), None)

    def local_match(self, x: int, y: int) -> bool:
        """Whether row ``x`` duplicates the earlier row ``y`` of this shard (verified)."""
        return bool(self._verify(np.array([x]), np.array([y]))[0])

    def _verify(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        d, sk = self.d, self.sketch
        if not d.verify or len(xs) == 0:
            return np.ones(len(xs), dtype=bool)
        off, lens = sk.set_off, np.diff(sk.set_off)
        sim = pair_jaccard(sk.values, off[xs], lens[xs], sk.values, off[ys], lens[ys])
        ok = sim >= d.threshold - 1e-12
        d._n_candidates_rejected += int(np.count_nonzero(~ok))
        return ok
