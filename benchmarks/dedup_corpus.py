"""Synthetic GSM8K/MATH-style question corpora with planted light edits, for the dedup benchmarks.

Used by ``dedup_speed.py`` and ``dedup_compare.py`` (import it from the ``benchmarks`` folder).

Fresh questions are recombined from the sentences of the real public questions in
``../shared/data`` (GSM8K train/test and the MATH-style benchmarks: MATH-500, Minerva-Math,
OlympiadBench, TheoremQA, AIME24, AMC23), with every number redrawn, so the corpus has the
vocabulary, length, LaTeX and templated phrasing of real math questions while no two fresh rows
are copies. A fraction of rows (``edit_frac``, 15 % by default) is a *light edit* of an earlier
fresh row (so an original may have several edited siblings, but no edit is an edit of an edit),
one of the four edits of issue 18:

* ``number``: one number changed;
* ``swap``: two adjacent words swapped;
* ``drop``: one word dropped;
* ``synonym``: one word replaced by a synonym (falls back to ``drop`` if none applies).

For each planted edit the generator records the source row and the **true** Jaccard similarity of
the two texts' word 5-gram sets (the shingles :class:`cftdata.quality.dedup.Deduplicator` uses,
on :func:`cftdata.quality.normalize.word_tokens`), so recall can be measured against what a
near-duplicate is, not against what was planted. Everything is a pure function of ``seed``.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cftdata.quality.normalize import word_tokens

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"

_GSM_FILES = (("gsm8k/train.jsonl", "question"), ("gsm8k/test.jsonl", "question"))
_MATH_FILES = (
    ("math500/test.jsonl", "problem"),
    ("minerva_math/test.jsonl", "problem"),
    ("olympiadbench/test.jsonl", "question"),
    ("theoremqa/test.jsonl", "problem"),
    ("aime24/test.jsonl", "problem"),
    ("amc23/test.jsonl", "problem"),
)
_SENTENCE = re.compile(r"(?<=[.?!])\s+(?=[A-Z$\\])")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
_WORD = re.compile(r"[A-Za-z]+")
SYNONYMS = {
    "buys": "purchases", "bought": "purchased", "sells": "sold", "gets": "receives", "got": "received",
    "has": "owns", "had": "owned", "many": "numerous", "total": "overall", "each": "every",
    "find": "determine", "compute": "calculate", "calculate": "compute", "determine": "find",
    "show": "prove", "large": "big", "big": "large", "small": "little", "little": "small",
    "number": "amount", "amount": "number", "money": "cash", "store": "shop", "shop": "store",
    "car": "automobile", "house": "home", "home": "house", "friends": "pals", "kids": "children",
    "children": "kids", "fast": "quick", "quickly": "rapidly", "makes": "produces", "uses": "utilizes",
    "wants": "wishes", "needs": "requires", "half": "one-half", "twice": "two times", "value": "result",
    "smallest": "least", "largest": "greatest", "greatest": "largest", "least": "smallest",
    "integer": "whole number", "positive": "nonnegative", "equal": "identical", "begins": "starts",
    "starts": "begins", "ends": "finishes", "week": "7 days", "year": "12 months", "dollars": "bucks",
}  # fmt: skip
EDIT_KINDS = ("number", "swap", "drop", "synonym")


def shingle_set(text: str, n: int = 5) -> set[int]:
    """The set of word ``n``-gram shingles of ``text`` (as the Deduplicator forms them, hashed by
    Python's ``hash``; exact within one process)."""
    toks = word_tokens(text)
    if len(toks) < n:
        return {hash(tuple(toks))}
    return {hash(tuple(toks[i : i + n])) for i in range(len(toks) - n + 1)}


def jaccard(a: set[int], b: set[int]) -> float:
    """Jaccard similarity of two sets (1.0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _sentences(data: Path, files: tuple[tuple[str, str], ...]) -> list[str]:
    out: list[str] = []
    for rel, key in files:
        path = data / rel
        if not path.is_file():
            raise SystemExit(f"{path} is missing: pass --data pointing at the shared data folder")
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                text = json.loads(line).get(key)
                if isinstance(text, str):
                    out.extend(s for s in _SENTENCE.split(" ".join(text.split())) if len(s) > 12)
    return out


@dataclass
class Planted:
    """One planted light edit: the edited row, its source row, the edit and the true 5-gram Jaccard."""

    row: int
    source: int
    kind: str
    jaccard: float


@dataclass
class Corpus:
    """Texts in input order, plus the planted edits (row index -> :class:`Planted`)."""

    texts: list[str]
    planted: dict[int, Planted] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [f"q{i:08d}" for i in range(len(self.texts))]

    def shards(self, size: int) -> Iterator[tuple[list[str], list[str]]]:
        ids = self.ids
        for lo in range(0, len(self.texts), size):
            yield ids[lo : lo + size], self.texts[lo : lo + size]


class Generator:
    """Deterministic corpus generator; see the module docstring."""

    def __init__(self, seed: int, data: Path = DEFAULT_DATA, shingle: int = 5) -> None:
        self.rng = np.random.default_rng(seed)
        self.shingle = shingle
        gsm = _sentences(data, _GSM_FILES)
        math = _sentences(data, _MATH_FILES)
        self.gsm_q = [s for s in gsm if s.endswith("?")]
        self.gsm_s = [s for s in gsm if not s.endswith("?")]
        self.math = math

    def _number(self, m: re.Match[str]) -> str:
        if "." in m.group(0):
            return f"{self.rng.integers(1, 1000) / 10:g}"
        return str(int(self.rng.integers(1, 1000)))

    def fresh(self) -> str:
        """A new question: 1-3 GSM8K statements and a GSM8K question (70 %), or 1-3 MATH-style
        sentences (30 %); every number redrawn."""
        rng = self.rng
        if rng.random() < 0.7:
            parts = [self.gsm_s[i] for i in rng.integers(0, len(self.gsm_s), int(rng.integers(1, 4)))]
            parts.append(self.gsm_q[int(rng.integers(0, len(self.gsm_q)))])
        else:
            parts = [self.math[i] for i in rng.integers(0, len(self.math), int(rng.integers(1, 4)))]
        return _NUMBER.sub(self._number, " ".join(parts))

    def edit(self, text: str) -> tuple[str, str] | None:
        """A light edit of ``text`` and its kind, or None if the drawn edit does not apply."""
        rng = self.rng
        kind = EDIT_KINDS[int(rng.integers(0, len(EDIT_KINDS)))]
        words = text.split(" ")
        if kind == "number":
            nums = list(_NUMBER.finditer(text))
            if not nums:
                kind = "swap"
            else:
                m = nums[int(rng.integers(0, len(nums)))]
                new = str(int(m.group(0).split(".")[0]) + int(rng.integers(1, 9)))
                return text[: m.start()] + new + text[m.end() :], "number"
        if kind == "synonym":
            cands = [i for i, w in enumerate(words) if _WORD.fullmatch(w) and w.lower() in SYNONYMS]
            if cands:
                i = cands[int(rng.integers(0, len(cands)))]
                syn = SYNONYMS[words[i].lower()]
                words[i] = syn.capitalize() if words[i][0].isupper() else syn
                return " ".join(words), "synonym"
            kind = "drop"
        if len(words) < 4:
            return None
        i = int(rng.integers(0, len(words) - 1))
        if kind == "swap":
            words[i], words[i + 1] = words[i + 1], words[i]
        else:
            del words[i]
        return " ".join(words), kind

    def stream(
        self, rows: int, shard: int, edit_frac: float = 0.15, window: int = 50_000
    ) -> Iterator[tuple[int, list[str], dict[int, Planted]]]:
        """``rows`` questions in shards of ``shard``: ``(index of the first row, texts, planted edits
        of the shard)``. About ``edit_frac`` of the rows are light edits of one of the ``window``
        previous fresh rows; only those are kept in memory, so any number of rows can be streamed."""
        recent: deque[tuple[int, str]] = deque(maxlen=window)  # fresh rows that edits copy
        rng = self.rng
        for lo in range(0, rows, shard):
            texts: list[str] = []
            planted: dict[int, Planted] = {}
            for i in range(lo, min(rows, lo + shard)):
                text = None
                if recent and rng.random() < edit_frac:
                    src, src_text = recent[-1 - int(rng.integers(0, len(recent)))]
                    edited = self.edit(src_text)
                    if edited is not None and edited[0] != src_text:
                        text = edited[0]
                        j = jaccard(shingle_set(src_text, self.shingle), shingle_set(text, self.shingle))
                        planted[i] = Planted(i, src, edited[1], j)
                if text is None:
                    text = self.fresh()
                    recent.append((i, text))
                texts.append(text)
            yield lo, texts, planted

    def corpus(self, rows: int, edit_frac: float = 0.15, window: int = 50_000) -> Corpus:
        """The whole :meth:`stream` in memory."""
        corpus = Corpus([])
        for _, texts, planted in self.stream(rows, 10_000, edit_frac, window):
            corpus.texts += texts
            corpus.planted.update(planted)
        return corpus


def recall_table(
    corpus: Corpus, dropped: np.ndarray, cuts: tuple[float, ...] = (0.8, 0.85, 0.9)
) -> dict[str, float | int]:
    """Recall over planted pairs by true Jaccard: fraction of planted rows with ``J >= cut`` that
    were dropped (``dropped``: bool per row), plus the pair counts."""
    out: dict[str, float | int] = {}
    js = np.array([p.jaccard for p in corpus.planted.values()])
    rows = np.array([p.row for p in corpus.planted.values()], dtype=np.int64)
    for cut in cuts:
        sel = js >= cut
        out[f"pairs_j>={cut}"] = int(sel.sum())
        out[f"recall_j>={cut}"] = round(float(dropped[rows[sel]].mean()), 4) if sel.any() else float("nan")
    low = js < 0.6
    out["planted_j<0.6"] = int(low.sum())
    out["dropped_planted_j<0.6"] = int(dropped[rows[low]].sum())
    return out


def extra_drops(
    corpus: Corpus, dropped: np.ndarray, targets: list[int | None], shingle: int = 5, min_j: float = 0.6
) -> int:
    """Dropped rows that duplicate no earlier row at true Jaccard >= ``min_j`` (false drops).

    A drop is justified by the row it was matched to (``targets[i]``, when the contender says),
    else by an earlier member of its edit family (its source, or a sibling edit of the same
    source), else by any earlier row of the corpus (searched through an inverted index of the
    shingles of the rows still unexplained).
    """
    family = list(range(len(corpus.texts)))
    for p in corpus.planted.values():
        family[p.row] = p.source
    members: dict[int, list[int]] = {}
    for i, f in enumerate(family):
        members.setdefault(f, []).append(i)
    sets: dict[int, set[int]] = {}

    def shingles(i: int) -> set[int]:
        if i not in sets:
            sets[i] = shingle_set(corpus.texts[i], shingle)
        return sets[i]

    unexplained = []
    for i in np.flatnonzero(dropped).tolist():
        t = targets[i]
        if t is not None and jaccard(shingles(i), shingles(t)) >= min_j:
            continue
        if any(j < i and jaccard(shingles(i), shingles(j)) >= min_j for j in members[family[i]]):
            continue
        unexplained.append(i)
    if not unexplained:
        return 0
    wanted: dict[int, list[int]] = {}
    for i in unexplained:
        for h in shingles(i):
            wanted.setdefault(h, [])
    size = np.zeros(len(corpus.texts), dtype=np.int64)
    for j, text in enumerate(corpus.texts):
        sj = shingle_set(text, shingle)
        size[j] = len(sj)
        for h in sj:
            if h in wanted:
                wanted[h].append(j)
    bad = 0
    for i in unexplained:
        overlap: dict[int, int] = {}
        for h in shingles(i):
            for j in wanted[h]:
                if j < i:
                    overlap[j] = overlap.get(j, 0) + 1
        a = len(shingles(i))
        if not any(k / (a + size[j] - k) >= min_j for j, k in overlap.items()):
            bad += 1
    return bad
