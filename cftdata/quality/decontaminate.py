"""Benchmark decontamination: word n-gram overlap between training questions and benchmark problems.

The rule follows open-r1's ``scripts/decontaminate.py``: a training question is contaminated if it
shares any word 8-gram with a benchmark problem. Texts are normalized with
:func:`~cftdata.quality.normalize.normalize_text` and tokenized with
:func:`~cftdata.quality.normalize.word_tokens` on both sides, so LaTeX spacing, case and
punctuation differences do not hide a copy. A benchmark problem shorter than ``ngram`` tokens has
no n-gram: it is matched as a whole (its full token sequence appearing contiguously in a training
question), provided it has at least ``min_short_tokens`` tokens; shorter problems are ignored
(too generic to be evidence) and counted in ``stats()["benchmark_problems_ignored"]``.

Benchmarks come from :data:`cftdata.benchmarks.BENCHMARKS`, the registry evaluation uses too (Hub id,
configs, split, question field, local file). :func:`load_benchmark` reads a local JSONL copy when
given a path, else the Hub via ``datasets.load_dataset`` (imported lazily).

The index holds only the benchmarks' n-gram hashes (8 bytes each plus a small owner array, about
200K n-grams for all seven benchmarks), so memory does not grow with the training data;
:meth:`Decontaminator.check` is stateless apart from counters and works shard by shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cftdata.benchmarks import BENCHMARKS, DEFAULT_DECONTAMINATION, read_rows
from cftdata.errors import CftdataError
from cftdata.quality.normalize import hash_windows, ngrams_from_tokens, normalize_many

__all__ = [
    "BENCHMARKS",
    "DEFAULT_BENCHMARKS",
    "Decontaminator",
    "load_benchmark",
]


#: The seven math benchmarks of the CFT paper's tables whose test sets ship with the evaluation harnesses.
DEFAULT_BENCHMARKS: tuple[str, ...] = DEFAULT_DECONTAMINATION


def load_benchmark(name: str, path: str | Path | None = None) -> list[str]:
    """The problem texts of benchmark ``name`` (a key of :data:`cftdata.benchmarks.BENCHMARKS`).

    ``path`` may be a JSONL file, a directory holding ``<name>/test.jsonl`` (a data root such as
    ``shared/data``) or one holding ``test.jsonl``. Without ``path`` the split is loaded from the
    Hugging Face Hub with ``datasets.load_dataset`` (needs network or a cache). The text is the bare
    question (multiple-choice options are not part of it); empty and missing problems are skipped.
    """
    bench = BENCHMARKS.get(name)
    rows, source = read_rows(name, path)
    problems = [t for t in (bench.question(r) for r in rows) if isinstance(t, str) and t.strip()]
    if not problems:
        raise CftdataError(f"Benchmark {name!r}: no {'/'.join(bench.question_keys)!r} field with text in {source}.")
    return problems


_FILTER_BITS = 22


@dataclass(frozen=True)
class _Table:
    """Sorted n-gram hashes of one length with their benchmark numbers, plus optional prefilters."""

    keys: np.ndarray
    owners: np.ndarray
    filter: np.ndarray | None
    first_tokens: np.ndarray | None


class Decontaminator:
    """Flags training questions that share a word n-gram with a benchmark problem.

    Build it from problem texts (``Decontaminator({"math500": [...], ...})``) or with
    :meth:`from_benchmarks`, then call :meth:`check` per shard. Each hit reports the benchmark
    (the first one, in construction order, that contains the n-gram) and the matching n-gram as
    normalized tokens joined by spaces.

    Args:
        benchmarks: benchmark name -> problem texts.
        ngram: n-gram size in words (8, as open-r1).
        min_short_tokens: benchmark problems with fewer than ``ngram`` tokens are matched whole
            if they have at least this many tokens, and ignored otherwise.
    """

    def __init__(
        self, benchmarks: Mapping[str, Iterable[str]], ngram: int = 8, min_short_tokens: int = 4
    ) -> None:
        if ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {ngram}")
        if min_short_tokens < 1:
            raise ValueError(f"min_short_tokens must be >= 1, got {min_short_tokens}")
        self.ngram = ngram
        self.min_short_tokens = min_short_tokens
        self.names: list[str] = list(benchmarks)
        if not self.names:
            raise ValueError("Decontaminator needs at least one benchmark")
        # One sorted (hash -> benchmark number) table per n-gram length: `ngram`, plus the lengths
        # of short problems matched whole.
        self._tables: dict[int, _Table] = {}
        self._problems: dict[str, int] = {}
        self._ignored = 0
        per_len: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        short_first: dict[int, list[np.ndarray]] = {}  # first token hash of the short problems, by length
        for b, name in enumerate(self.names):
            batch = normalize_many(list(benchmarks[name]))
            self._problems[name] = len(batch)
            flat, counts = batch.token_hashes()
            hashes, _ = ngrams_from_tokens(flat, counts, ngram, short="skip")
            hs, owners = per_len.setdefault(ngram, ([], []))
            hs.append(hashes)
            owners.append(np.full(len(hashes), b, dtype=np.int16))
            tok_start = np.zeros(len(counts), dtype=np.int64)
            np.cumsum(counts[:-1], out=tok_start[1:])
            short = counts < ngram
            self._ignored += int(np.count_nonzero(short & (counts < min_short_tokens)))
            short &= counts >= min_short_tokens
            for k in np.unique(counts[short]).tolist():
                starts = tok_start[short & (counts == k)]
                hs, owners = per_len.setdefault(k, ([], []))
                hs.append(hash_windows(flat, starts, k))
                owners.append(np.full(len(starts), b, dtype=np.int16))
                short_first.setdefault(k, []).append(flat[starts])
        for k, (hs, owners) in per_len.items():
            keys = np.concatenate(hs) if hs else np.zeros(0, dtype=np.uint64)
            own = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int16)
            # Keep the first benchmark (construction order) for an n-gram several of them contain.
            order = np.lexsort((own, keys))
            keys, own = keys[order], own[order]
            first = np.ones(len(keys), dtype=bool)
            first[1:] = keys[1:] != keys[:-1]
            keys, own = keys[first], own[first]
            # Large tables get a 4 MB presence filter on the hash's top bits, so most training
            # n-grams are rejected by one array read instead of a binary search.
            filt = None
            if len(keys) > 4096:
                filt = np.zeros(1 << _FILTER_BITS, dtype=bool)
                filt[keys >> np.uint64(64 - _FILTER_BITS)] = True
            firsts = np.unique(np.concatenate(short_first[k])) if k in short_first else None
            self._tables[k] = _Table(keys, own, filt, firsts)
        self._n_checked = 0
        self._n_contaminated = 0
        self._per_benchmark = dict.fromkeys(self.names, 0)

    @classmethod
    def from_benchmarks(
        cls,
        names: Sequence[str] = DEFAULT_BENCHMARKS,
        data_dir: str | Path | None = None,
        paths: Mapping[str, str | Path] | None = None,
        ngram: int = 8,
        min_short_tokens: int = 4,
    ) -> Decontaminator:
        """Load benchmarks by name: from ``paths[name]``, else from ``data_dir`` (a data root with
        ``<name>/test.jsonl``), else from the Hub (see :func:`load_benchmark`)."""
        paths = dict(paths or {})
        unknown = set(paths) - set(names)
        if unknown:
            raise CftdataError(f"Paths given for benchmarks not selected: {', '.join(sorted(unknown))}.")
        texts = {name: load_benchmark(name, paths.get(name, data_dir)) for name in names}
        return cls(texts, ngram=ngram, min_short_tokens=min_short_tokens)

    def check(self, ids: Sequence[str], texts: Sequence[str | None]) -> list[tuple[str, str] | None]:
        """Per row: ``None`` if clean, else ``(benchmark name, matching n-gram)``.

        The reported n-gram is the first matching one in the training question (normalized
        tokens joined by spaces). ``ids`` are only used to check the shard's shape; ``None`` texts
        count as empty.
        """
        if len(ids) != len(texts):
            raise ValueError(f"ids and texts differ in length ({len(ids)} vs {len(texts)})")
        n = len(texts)
        if n == 0:
            return []
        tokens = normalize_many(texts).tokens()
        flat, lengths = tokens.hashes, tokens.counts
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        # Per row: (token position, n-gram length, benchmark number) of the earliest hit.
        best_pos = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        best_len = np.zeros(n, dtype=np.int64)
        best_owner = np.full(n, -1, dtype=np.int64)
        for k, table in self._tables.items():
            if len(table.keys) == 0:
                continue
            if table.first_tokens is None:
                # Every full n-gram of every row (contiguous windows; rows shorter than k have none).
                hashes, offsets = ngrams_from_tokens(flat, lengths, k, short="skip")
                at = np.arange(len(hashes), dtype=np.int64)
                if table.filter is not None:
                    at = np.flatnonzero(table.filter[hashes >> np.uint64(64 - _FILTER_BITS)])
                    hashes = hashes[at]
                row = np.searchsorted(offsets, at, side="right") - 1
                pos = starts[row] + (at - offsets[row])  # global token index of each window
            else:  # short problems: only windows starting with one of their first tokens
                pos = np.flatnonzero(np.isin(flat, table.first_tokens))
                row = np.searchsorted(starts, pos, side="right") - 1
                ok = pos + k <= starts[row + 1]
                pos, row = pos[ok], row[ok]
                hashes = hash_windows(flat, pos, k)
            if len(pos) == 0:
                continue
            j = np.searchsorted(table.keys, hashes)
            np.minimum(j, len(table.keys) - 1, out=j)
            hit = table.keys[j] == hashes
            pos, row, j = pos[hit], row[hit], j[hit]
            if len(pos) == 0:
                continue
            # Earliest hit per row (pos is ascending, so the first per row); on a tie between
            # tables the one visited first (the full n-gram table) wins.
            first = np.ones(len(row), dtype=bool)
            first[1:] = row[1:] != row[:-1]
            row, tok_pos, j = row[first], pos[first] - starts[row[first]], j[first]
            better = tok_pos < best_pos[row]
            row, tok_pos, j = row[better], tok_pos[better], j[better]
            best_pos[row] = tok_pos
            best_len[row] = k
            best_owner[row] = table.owners[j]
        out: list[tuple[str, str] | None] = [None] * n
        hit_rows = np.flatnonzero(best_owner >= 0)
        for i, p, k, b in zip(
            hit_rows.tolist(),
            (starts[hit_rows] + best_pos[hit_rows]).tolist(),
            best_len[hit_rows].tolist(),
            best_owner[hit_rows].tolist(),
            strict=True,
        ):
            name = self.names[b]
            out[i] = (name, tokens.text(p, k))
            self._per_benchmark[name] += 1
        self._n_checked += n
        self._n_contaminated += int(np.count_nonzero(best_owner >= 0))
        return out

    def stats(self) -> dict[str, Any]:
        """Counts so far (checked, contaminated, per benchmark) and the index size."""
        index_bytes = sum(
            t.keys.nbytes + t.owners.nbytes + (t.filter.nbytes if t.filter is not None else 0)
            for t in self._tables.values()
        )
        return {
            "ngram": self.ngram,
            "checked": self._n_checked,
            "contaminated": self._n_contaminated,
            "contaminated_by_benchmark": dict(self._per_benchmark),
            "benchmark_problems": dict(self._problems),
            "benchmark_problems_ignored": self._ignored,
            "index_ngrams": sum(len(t.keys) for t in self._tables.values()),
            "index_bytes": index_bytes,
        }
