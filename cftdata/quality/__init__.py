"""Data-quality algorithms for CFT datasets, as a library the pipeline stages wrap.

* :mod:`~cftdata.quality.normalize`: question normalization (per text, and column-wise for a whole
  shard: :func:`~cftdata.quality.normalize.normalize_many`), word tokens, token and n-gram hashes.
* :mod:`~cftdata.quality.hashing`: the deterministic 64-bit hashes of tokens and n-grams, on flat arrays.
* :mod:`~cftdata.quality.minhash`: shingle sets, MinHash signatures, LSH band keys, exact pair Jaccard.
* :mod:`~cftdata.quality.dedup`: :class:`Deduplicator`, streaming exact + MinHash-LSH near dedup
  with candidates verified by their true Jaccard (first occurrence wins; fed shard by shard;
  bounded per-row index).
* :mod:`~cftdata.quality.decontaminate`: :class:`Decontaminator`, 8-gram overlap against benchmark
  test sets (:data:`BENCHMARKS`, the registry of :mod:`cftdata.benchmarks`; :func:`load_benchmark`).
* :mod:`~cftdata.quality.selectors`: selection strategies (:data:`SELECTORS`, :func:`select`):
  ``random``, ``longest_critique`` (the paper's), ``balanced_verdict``, ``length_matched``.

Selection lives in its submodule (``from cftdata.quality.selectors import select, SELECTORS``) so
that importing dedup/decontamination does not load polars; ``datasets`` is imported only when a
benchmark is loaded from the Hub.
"""

from __future__ import annotations

from cftdata.quality.decontaminate import (
    BENCHMARKS,
    DEFAULT_BENCHMARKS,
    Decontaminator,
    load_benchmark,
)
from cftdata.quality.dedup import Deduplicator, optimal_bands
from cftdata.quality.normalize import normalize_text, word_tokens

__all__ = [
    "BENCHMARKS",
    "DEFAULT_BENCHMARKS",
    "Decontaminator",
    "Deduplicator",
    "load_benchmark",
    "normalize_text",
    "optimal_bands",
    "word_tokens",
]
