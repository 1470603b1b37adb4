"""Tests of the column-wise text path of dedup and decontamination (issue 18).

* normalize_many is normalize_text byte for byte (real questions, LaTeX, Unicode, empty, fuzz);
* the vectorized token / n-gram / digest hashes equal their one-at-a-time definitions;
* MinHash sets, signatures and pair Jaccard equal direct computations;
* Deduplicator: verification by the true Jaccard of shingle sets (never a drop below the
  threshold), long rows verified by signature, first-occurrence semantics independent of shard
  size and thread count, save/load of the new state;
* Decontaminator: hits reported from token spans, also for Unicode rows.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from cftdata.quality.decontaminate import Decontaminator
from cftdata.quality.dedup import Deduplicator, KeyIndex
from cftdata.quality.hashing import hash_windows, ngrams_from_tokens, token_hash
from cftdata.quality.minhash import pair_jaccard, permutations, shingle_sets, signatures
from cftdata.quality.normalize import (
    TextBatch,
    hash_tokens,
    normalize_many,
    normalize_text,
    text_digest,
    word_tokens,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(
    not (DATA / "math500" / "test.jsonl").is_file(), reason=f"shared data not found at {DATA}"
)

TRICKY = [
    "", "What is  $x + 1$ , if  $x=2$?", "WHAT IS \\(x+1\\) if \\(x = 2\\) ?",
    "Find $\\dfrac{1}{2}\\,\\text{cm}$.", "\\left\\{ a_{n} \\right\\}", "\\dfrac\\dfrac\\tfrac{3}",
    "\\textbf {bold} and \\mathrm{d}x", "\\bigg( \\Big| \\leftarrow \\quad\\qquad \\\\ \\$5",
    "1.2.3.4 and 1,000,000; 3:4! 5?6", 'say "hi" . , ;', "x^{2}^{3} _{a}_{_} ^{ b }", "a\t\nb\x0b\x0c\rc\x1cd\x1fe",
    "Ｆｉｎｄ  ｘ", "Janet’s “ducks”", "½ + ² = ﬁ", "ΣΑΣ ΟΔΟΣ", "İstanbul", "naïve café", "x × y ÷ z ≤ 3 −1",
    "\u00a0nbsp\u2003em\u3000ideographic\u2028line\x85next", "٣ + ٤", "中文 数学题", "e\u0301", "＿a‿b", "Ⅻ ①",
    "😀 emoji", "\x00nul\x00", "~tilde~ and $$ and \\~", "a.b", "3 . 5", "a_{n}", "f(x)=x^{2}",
]  # fmt: skip


def _same_as_reference(texts: list) -> None:
    batch = normalize_many(texts)
    expected = [normalize_text(t) if t else "" for t in texts]
    assert batch.tolist() == expected
    assert [batch.text(i) for i in range(len(texts))] == expected
    flat, counts = batch.token_hashes()
    tokens = [word_tokens(e, normalized=True) for e in expected]
    assert counts.tolist() == [len(t) for t in tokens]
    assert flat.tolist() == hash_tokens([t for ts in tokens for t in ts]).tolist()


@needs_data
def test_normalize_many_is_normalize_text_on_real_questions() -> None:
    texts: list[str] = []
    for f in sorted(DATA.glob("*/*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts += [row[k] for k in ("problem", "question", "solution", "answer") if isinstance(row.get(k), str)]
    assert len(texts) > 20_000
    assert sum(not t.isascii() for t in texts) > 100  # the Unicode path is exercised
    _same_as_reference(texts)


def test_normalize_many_on_latex_unicode_and_empty_strings() -> None:
    _same_as_reference([*TRICKY, None, *TRICKY[::-1]])
    _same_as_reference([t for t in TRICKY if t.isascii() and "\x00" not in t])  # all-ASCII fast path
    _same_as_reference([])
    _same_as_reference([None, ""])


def test_normalize_many_fuzz() -> None:
    pieces = list("abcXYZ019 _\t\n.,;:!?\"'$~\\{}^()[]+-=/*<>|") + [
        "\\left", "\\right", "\\dfrac", "\\frac", "\\text{", "\\quad", "\\\\", "\\$", "\\,", "\\ ",
        "\\(", "\\)", "x^{2}", "_{n}", "3.5", "1,000", "’", "é", "×", "½", "\u00a0", "Σ", "٣", "\x00", "\x1c",
    ]  # fmt: skip
    rng = random.Random(18)
    for _ in range(60):
        batch = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))) for _ in range(100)]
        _same_as_reference(batch)


def test_token_hashes_match_their_definition() -> None:
    tokens = ["a", "ab", "abcdefg", "abcdefgh", "abcdefghi", "x" * 17, "é", "中文数学", "3.5", "1,000", "a\x00b"]
    assert hash_tokens(tokens).tolist() == [token_hash(t) for t in tokens]
    assert len(set(hash_tokens(tokens).tolist())) == len(tokens)
    assert token_hash("abc") == token_hash(b"abc")


def test_digests_and_ngrams_match_their_definition() -> None:
    texts = ["a b c d e f g", "a b", "", "x y z w v u", "find x^2+3x then \\frac{1}{2}", "é × ü ö ä"]
    normalized = [normalize_text(t) for t in texts]
    batch = TextBatch.from_normalized(normalized)
    assert batch.digests().tolist() == [token_hash(s) for s in normalized] == [text_digest(s) for s in normalized]
    assert len(set(batch.digests().tolist())) == len(set(normalized))
    flat, counts = batch.token_hashes()
    starts = np.concatenate([[0], np.cumsum(counts)])
    for n in (1, 2, 5, 8):
        hashes, offsets = ngrams_from_tokens(flat, counts, n)
        for i, c in enumerate(counts.tolist()):
            got = hashes[offsets[i] : offsets[i + 1]].tolist()
            if c >= n:
                expected = hash_windows(flat, starts[i] + np.arange(c - n + 1), n).tolist()
            elif c:
                expected = hash_windows(flat, np.array([starts[i]]), c).tolist()
            else:
                expected = [0x9E3779B97F4A7C15]
            assert got == expected
        skipped, off2 = ngrams_from_tokens(flat, counts, n, short="skip")
        assert np.diff(off2).tolist() == [max(c - n + 1, 0) for c in counts.tolist()]


def test_shingle_sets_signatures_and_pair_jaccard() -> None:
    rng = np.random.default_rng(0)
    lens = [1, 5, 40, 3, 200]
    hashes = rng.integers(0, 2**63, sum(lens), dtype=np.uint64)
    hashes[5:10] = hashes[0]  # repeats within a row collapse
    offsets = np.concatenate([[0], np.cumsum(lens)])
    values, set_off = shingle_sets(hashes, offsets)
    for i in range(len(lens)):
        expected = sorted({int(h) >> 32 for h in hashes[offsets[i] : offsets[i + 1]]})
        assert values[set_off[i] : set_off[i + 1]].tolist() == expected
    perm = permutations(3, 16)
    sig = signatures(values, set_off, perm)
    for i in range(len(lens)):
        row = values[set_off[i] : set_off[i + 1]].astype(np.uint64)
        assert sig[:, i].tolist() == [int(((int(a) * row) % 2**32).min()) for a in perm]
    a_idx, b_idx = np.array([2, 4, 0, 2]), np.array([4, 2, 0, 3])
    sim = pair_jaccard(values, set_off[a_idx], np.diff(set_off)[a_idx], values, set_off[b_idx], np.diff(set_off)[b_idx])
    sets = [set(values[set_off[i] : set_off[i + 1]].tolist()) for i in range(len(lens))]
    assert sim.tolist() == [len(sets[a] & sets[b]) / len(sets[a] | sets[b]) for a, b in zip(a_idx, b_idx, strict=True)]


def test_key_index_sorted_inserts_and_merges() -> None:
    rng = np.random.default_rng(1)
    idx, truth = KeyIndex(), {}
    for step in range(12):
        keys = np.unique(rng.integers(0, 2**64 - 1, 500, dtype=np.uint64))
        keys = keys[idx.lookup(keys) < 0]
        idx.insert_sorted(keys, np.full(len(keys), step))
        truth.update(dict.fromkeys(keys.tolist(), step))
    probe = np.array(list(truth) + [1, 2, 3], dtype=np.uint64)
    assert idx.lookup(probe).tolist() == [*truth.values(), -1, -1, -1]
    assert all(np.all(np.diff(k.astype(np.float64)) > 0) for k, _ in idx.runs())
    assert len(idx) == len(truth)
    assert len(idx.runs()) <= 16 * 4  # 16 partitions; runs of similar size were merged
    again = KeyIndex.from_runs(idx.runs())
    assert again.lookup(probe).tolist() == idx.lookup(probe).tolist()


# --- Deduplicator ------------------------------------------------------------------------------------


def _words(rng: random.Random, n: int) -> list[str]:
    return [f"w{rng.randint(0, 10**9)}" for _ in range(n)]


def _edit(words: list[str], k: int, rng: random.Random) -> list[str]:
    """``k`` single-word replacements at least 6 words apart: each one changes 5 word 5-grams."""
    out = list(words)
    spots = range(6, len(words) - 6, 6) if len(words) > 12 else range(len(words))
    for p in rng.sample(spots, min(k, len(spots))):
        out[p] = f"e{rng.randint(0, 10**9)}"
    return out


def _jaccard5(a: str, b: str) -> float:
    ta, tb = word_tokens(a), word_tokens(b)
    sa = {tuple(ta[i : i + 5]) for i in range(len(ta) - 4)}
    sb = {tuple(tb[i : i + 5]) for i in range(len(tb) - 4)}
    return len(sa & sb) / len(sa | sb)


def test_verification_uses_the_true_jaccard() -> None:
    """Pairs just below the threshold are never dropped, pairs well above always are."""
    rng = random.Random(11)
    originals, below, above = [], [], []
    for _ in range(150):
        w = _words(rng, 100)  # 96 word 5-grams: k edits give J = (96 - 5k) / (96 + 5k)
        originals.append(" ".join(w))
        below.append(" ".join(_edit(w, 3, rng)))  # J = 0.73
        above.append(" ".join(_edit(w, 1, rng)))  # J = 0.90
    assert all(_jaccard5(o, b) < 0.8 for o, b in zip(originals, below, strict=True))
    assert all(_jaccard5(o, a) >= 0.89 for o, a in zip(originals, above, strict=True))
    for shards in ([originals + below + above], [originals, below, above]):  # in one shard, or across
        d = Deduplicator()
        out: list[str | None] = []
        for k, shard in enumerate(shards):
            out += d.check([f"{k}-{i}" for i in range(len(shard))], shard)
        n = len(originals)
        ids = [f"0-{i}" for i in range(n)] if len(shards) == 1 else [f"0-{i}" for i in range(n)]
        assert out[:n] == [None] * n
        assert out[n : 2 * n] == [None] * n  # J = 0.73 < 0.8: kept, whatever the bands say
        assert out[2 * n :] == ids  # J = 0.90: found, and pointing at the original
        assert d.stats()["stored_shingle_sets"] == d.stats()["lsh_rows"]


def test_recall_just_above_the_threshold() -> None:
    rng = random.Random(12)
    originals = [_words(rng, 110) for _ in range(200)]
    edited = [_edit(w, 2, rng) for w in originals]  # J = (106 - 10) / (106 + 10) = 0.83
    d = Deduplicator()
    out = d.check([str(i) for i in range(400)], [" ".join(w) for w in originals + edited])
    found = sum(o is not None for o in out[200:])
    assert found >= 190  # a pair at J = 0.83 is a candidate with probability 0.996 (18 x 7 bands)
    assert out[:200] == [None] * 200


def test_long_rows_are_verified_by_signature() -> None:
    rng = random.Random(13)
    longs = [_words(rng, 400) for _ in range(20)]  # ~396 shingles > num_perm: signature stored
    d = Deduplicator()
    assert d.check([f"a{i}" for i in range(20)], [" ".join(w) for w in longs]) == [None] * 20
    st = d.stats()
    assert st["stored_signatures"] == 20 and st["stored_shingle_sets"] == 0
    near = [" ".join(_edit(w, 2, rng)) for w in longs[:10]]  # J ~ 0.95
    far = [" ".join(_edit(w, 30, rng)) for w in longs[10:]]  # J ~ 0.45
    out = d.check([f"b{i}" for i in range(20)], near + far)
    assert out == [f"a{i}" for i in range(10)] + [None] * 10


def test_same_verdicts_whatever_the_shard_size_and_threads() -> None:
    rng = random.Random(14)
    texts: list[str] = []
    for _ in range(9000):
        r = rng.random()
        if texts and r < 0.1:
            texts.append(" ".join(_edit(rng.choice(texts).split(" "), 1, rng)))
        elif texts and r < 0.15:
            texts.append(rng.choice(texts).upper())
        else:
            texts.append(" ".join(_words(rng, rng.randint(3, 60))))
    ids = [str(i) for i in range(len(texts))]
    runs = []
    for shard, threads in ((9000, 1), (9000, 3), (1000, 2), (257, 1)):
        d = Deduplicator(threads=threads)
        out: list[str | None] = []
        for lo in range(0, len(texts), shard):
            out += d.check(ids[lo : lo + shard], texts[lo : lo + shard])
        st = d.stats()
        d.close()
        runs.append((out, st["kept"], st["exact_duplicates"], st["near_duplicates"]))
    assert all(r == runs[0] for r in runs[1:])
    assert runs[0][2] > 300 and runs[0][3] > 100


def test_in_shard_match_through_a_group_whose_first_row_is_dropped() -> None:
    """A' (dropped: a near-dup of A) heads band groups; B, far from A, is kept; C matches B."""
    rng = random.Random(15)
    a = _words(rng, 100)
    a1 = _edit(a, 1, rng)  # J(A, A') = 0.90
    b = _edit(a1, 2, rng)  # J(B, A') = 0.81, J(B, A) ~ 0.73
    c = _edit(b, 1, rng)  # J(C, B) = 0.90
    texts = [" ".join(w) for w in (a1, b, c)]
    assert _jaccard5(" ".join(a), texts[1]) < 0.8 and _jaccard5(texts[1], texts[2]) >= 0.8
    d = Deduplicator()
    assert d.check(["A"], [" ".join(a)]) == [None]
    out = d.check(["A1", "B", "C"], texts)
    assert out[0] == "A" and out[1] is None and out[2] == "B"


def test_save_load_state_version(tmp_path: Path) -> None:
    rng = random.Random(16)
    texts = [" ".join(_words(rng, 50)) for _ in range(30)] + [" ".join(_words(rng, 300))]
    d = Deduplicator(seed=5)
    d.check([str(i) for i in range(31)], texts)
    d.save(tmp_path / "state.npz")
    back = Deduplicator.load(tmp_path / "state.npz")
    assert back.stats() == d.stats()
    assert back.check(["x", "y"], [texts[3].upper(), texts[-1] + " extra"]) == ["3", "30"]
    with np.load(tmp_path / "state.npz") as data:
        arrays = {k: data[k] for k in data.files}
    config = json.loads(str(arrays["config"]))
    config["version"] = 1
    arrays["config"] = np.array(json.dumps(config))
    np.savez(tmp_path / "old.npz", **arrays)
    with pytest.raises(ValueError, match="version"):
        Deduplicator.load(tmp_path / "old.npz")


# --- Decontaminator ----------------------------------------------------------------------------------


def test_decontaminator_reports_ngrams_from_token_spans() -> None:
    problem = "Let ×x be the café’s number of “apples” sold on Monday plus twenty ½ more"
    deco = Decontaminator({"bench": [problem, "too short"]}, ngram=8)
    rows = [
        "Warm-up. LET ×X BE THE CAFÉ’S number of “apples” sold on monday and so on",
        "Nothing to see here at all, friend, move along please now",
        None,
    ]
    out = deco.check(["a", "b", "c"], rows)
    tokens = word_tokens(problem)
    assert out[0] == ("bench", " ".join(tokens[:8]))
    assert out[1:] == [None, None]
    assert deco.stats()["benchmark_problems_ignored"] == 1
