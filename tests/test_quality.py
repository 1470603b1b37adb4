"""Tests of cftdata.quality: normalization, streaming dedup, decontamination, selection strategies."""

from __future__ import annotations

import json
import random
import sys
import types
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cftdata.errors import CftdataError
from cftdata.quality.decontaminate import BENCHMARKS, DEFAULT_BENCHMARKS, Decontaminator, load_benchmark
from cftdata.quality.dedup import Deduplicator, KeyIndex, optimal_bands
from cftdata.quality.normalize import ngram_hashes, normalize_text, word_tokens
from cftdata.quality.selectors import SELECTORS, SelectionError, select, strategy_params

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(
    not (DATA / "math500" / "test.jsonl").is_file(), reason=f"shared data not found at {DATA}"
)

_WORD_TEXT = (
    "find compute integer prime triangle circle area radius probability sequence derivative integral "
    "matrix vector polynomial root angle sum product remainder divisor slope line point ratio mean "
    "median train speed hours apples dollars students school ordered pairs distinct largest smallest"
)
_WORDS = _WORD_TEXT.split()


def make_question(rng: random.Random, n_words: int = 60) -> str:
    """A random math-flavoured question; two of them share (almost) no 5-gram."""
    words = [
        rng.choice(_WORDS) if rng.random() < 0.8 else str(rng.randint(1, 10_000)) for _ in range(n_words)
    ]
    return " ".join(words).capitalize() + "?"


def edit_words(text: str, positions: list[int], rng: random.Random) -> str:
    words = text.split(" ")
    for p in positions:
        words[p] = f"zz{rng.randint(0, 10**9)}"
    return " ".join(words)


# --- normalize ------------------------------------------------------------------------------------------


def test_normalize_removes_case_space_punct_and_latex_noise() -> None:
    a = normalize_text("What is  $x + 1$ , if  $x=2$?")
    assert a == "what is x+1 if x=2"
    assert normalize_text("WHAT IS \\(x+1\\) if \\(x = 2\\) ?") == a
    assert normalize_text("What is $\\left( x \\right)^{2}$?") == normalize_text("what is (x)^2")
    assert normalize_text("Find $\\dfrac{1}{2}\\,\\text{cm}$.") == normalize_text("find \\frac{1}{2} cm")
    assert normalize_text("Ｆｉｎｄ  ｘ") == "find x"  # NFKC: full-width forms
    assert normalize_text("Janet’s ducks") == normalize_text("Janet's ducks")
    assert normalize_text("") == ""


def test_normalize_keeps_math_content() -> None:
    assert normalize_text("x+1") != normalize_text("x-1")
    assert normalize_text("Pay 3.5 dollars.") == "pay 3.5 dollars"
    assert normalize_text("1,000 items") == "1,000 items"
    assert normalize_text("3.5") != normalize_text("35")


@needs_data
def test_normalize_is_idempotent_on_real_problems() -> None:
    texts = []
    for f in sorted(DATA.glob("*/test.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts += [row[k] for k in ("problem", "question") if isinstance(row.get(k), str)]
    assert len(texts) > 3_000
    assert [t for t in texts if normalize_text(normalize_text(t)) != normalize_text(t)] == []


def test_word_tokens() -> None:
    assert word_tokens("Find $x^2+3x$, then \\frac{1}{2}.") == [
        "find",
        "x",
        "2",
        "3x",
        "then",
        "frac",
        "1",
        "2",
    ]
    assert word_tokens("It costs 3.5 or 1,000") == ["it", "costs", "3.5", "or", "1,000"]


def test_ngram_hashes_offsets_and_short_texts() -> None:
    texts = [normalize_text(t) for t in ["a b c d e f g", "a b", "", "x y z w v u"]]
    hashes, offsets = ngram_hashes(texts, 5)
    assert offsets.tolist() == [0, 3, 4, 5, 7]  # 3 full 5-grams, 1 whole, 1 empty, 2 full
    skipped, off2 = ngram_hashes(texts, 5, short="skip")
    assert off2.tolist() == [0, 3, 3, 3, 5]
    # The same n-gram hashes the same in any text and position.
    h2, _ = ngram_hashes([normalize_text("q a b c d e f g")], 5)
    assert set(hashes[:3]) <= set(h2)
    again, _ = ngram_hashes(texts, 5)
    assert np.array_equal(hashes, again)


# --- dedup ----------------------------------------------------------------------------------------------


def test_exact_duplicates_first_occurrence_kept() -> None:
    rng = random.Random(0)
    q1, q2 = make_question(rng), make_question(rng)
    d = Deduplicator(near=False)
    out = d.check(["a", "b", "c", "d", "e"], [q1, q2, q1.upper(), "  " + q1.replace(" ", "   "), q2 + " ."])
    assert out == [None, None, "a", "a", "b"]
    st = d.stats()
    assert st["seen"] == 5 and st["kept"] == 2 and st["exact_duplicates"] == 3 and st["near_duplicates"] == 0


def test_near_duplicates_found_unrelated_kept() -> None:
    rng = random.Random(1)
    base = [make_question(rng, 80) for _ in range(50)]
    near = edit_words(base[7], [40], rng)  # one word changed in 80: Jaccard of 5-grams ~0.88
    d = Deduplicator()
    out = d.check([f"b{i}" for i in range(50)] + ["n"], [*base, near])
    assert out[:50] == [None] * 50  # unrelated questions are all kept
    assert out[50] == "b7"
    assert d.stats()["near_duplicates"] == 1


def test_duplicates_found_across_shards() -> None:
    rng = random.Random(2)
    qs = [make_question(rng, 80) for _ in range(30)]
    d = Deduplicator()
    assert d.check([f"s1-{i}" for i in range(30)], qs) == [None] * 30
    shard2 = [qs[3].upper(), edit_words(qs[5], [10], rng), make_question(rng, 80)]
    assert d.check(["x", "y", "z"], shard2) == ["s1-3", "s1-5", None]
    # A third shard: copies of rows kept in shard 2, and of a near-dup dropped in shard 2.
    assert d.check(["p", "q"], [shard2[2], shard2[1]]) == ["z", "s1-5"]
    st = d.stats()
    assert st["seen"] == 35 and st["kept"] == 31 and st["duplicates"] == 4
    assert st["index_bytes"] > 0 and st["band_keys"] > 0


def test_first_occurrence_wins_within_shard_and_ids_point_to_kept_rows() -> None:
    rng = random.Random(3)
    q = make_question(rng, 80)
    v0 = edit_words(q, [70], rng)
    variants = [v0, q, edit_words(v0, [20], rng), q.lower()]
    d = Deduplicator()
    out = d.check(["v0", "q", "v2", "ql"], variants)
    assert out[0] is None  # the first occurrence, although it is itself the edited copy
    assert out[1:] == ["v0", "v0", "v0"]


def test_exact_only_and_near_only_modes() -> None:
    rng = random.Random(4)
    q = make_question(rng, 80)
    near = edit_words(q, [40], rng)
    assert Deduplicator(near=False).check(["a", "b", "c"], [q, near, q.upper()]) == [None, None, "a"]
    assert Deduplicator(exact=False).check(["a", "b", "c"], [q, near, q.upper()]) == [None, "a", "a"]
    with pytest.raises(ValueError):
        Deduplicator(exact=False, near=False)


def test_short_texts_and_char_shingles() -> None:
    d = Deduplicator()
    assert d.check(["a", "b", "c", "d"], ["What is 2+2?", "what is 2 + 2", "What is 2+3?", ""]) == [
        None,
        "a",
        None,
        None,
    ]
    dc = Deduplicator(shingle=5, shingle_unit="char")
    rng = random.Random(5)
    q = make_question(rng, 60)
    assert dc.check(["a", "b"], [q, q[:-10] + "XYZ" + q[-7:]]) == [None, "a"]


def test_without_verification_and_transitive_chain() -> None:
    rng = random.Random(6)
    a = make_question(rng, 200)
    a1 = edit_words(a, [30, 130], rng)  # J(a, a1) ~ 0.90
    a2 = edit_words(a1, [80, 180], rng)  # J(a1, a2) ~ 0.90, J(a, a2) ~ 0.81
    kwargs = {"threshold": 0.86, "num_perm": 256, "seed": 3}
    plain = Deduplicator(**kwargs).check(["a", "a1", "a2"], [a, a1, a2])
    chained = Deduplicator(transitive=True, **kwargs).check(["a", "a1", "a2"], [a, a1, a2])
    assert plain == [None, "a", None]  # a2 is compared with the kept row a only
    assert chained == [None, "a", "a"]  # a2 matches the dropped a1, whose original is a
    assert Deduplicator(verify=False).check(["a", "b"], [a, a1]) == [None, "a"]


def test_dedup_is_deterministic_and_validates() -> None:
    rng = random.Random(7)
    qs = [make_question(rng, 50) for _ in range(200)]
    qs += [edit_words(q, [25], rng) for q in qs[:50]]
    ids = [str(i) for i in range(len(qs))]
    r1 = Deduplicator(seed=9, threads=1).check(ids, qs)
    r2 = Deduplicator(seed=9, threads=2).check(ids, qs)
    assert r1 == r2
    d = Deduplicator()
    assert d.check([], []) == []
    with pytest.raises(ValueError):
        d.check(["a"], ["x", "y"])
    with pytest.raises(ValueError):
        Deduplicator(threshold=0)
    assert d.check(["n"], [None]) == [None]


def test_dedup_save_and_load_resume(tmp_path: Path) -> None:
    rng = random.Random(8)
    qs = [make_question(rng, 60) for _ in range(40)]
    later = [qs[1].upper(), edit_words(qs[2], [30], rng), make_question(rng, 60)]
    ids = [f"a{i}" for i in range(40)]
    for kwargs in ({}, {"transitive": True}, {"verify": False}, {"near": False}):
        whole = Deduplicator(**kwargs)
        whole.check(ids[:20], qs[:20])
        whole.check(ids[20:], qs[20:])
        expected = whole.check(["x", "y", "z"], later)
        first = Deduplicator(**kwargs)
        first.check(ids[:20], qs[:20])
        first.save(tmp_path / "state.npz")
        resumed = Deduplicator.load(tmp_path / "state.npz")
        resumed.check(ids[20:], qs[20:])
        assert resumed.check(["x", "y", "z"], later) == expected
        assert expected == (["a1", None, None] if kwargs.get("near") is False else ["a1", "a2", None])
        assert resumed.stats() == whole.stats()


def test_optimal_bands_and_key_index() -> None:
    assert optimal_bands(0.8, 128) == (9, 13)  # datasketch's choice
    b, r = optimal_bands(0.8, 128, 0.1)
    assert b * r <= 128 and b > 9
    idx = KeyIndex()
    for start in range(0, 10_000, 1000):
        keys = np.arange(start, start + 1000, dtype=np.uint64) * np.uint64(2654435761)
        assert idx.insert_new(keys, np.arange(start, start + 1000)) == 1000
    assert idx.insert_new(np.array([0, 1], dtype=np.uint64), np.array([7, 7])) == 1  # key 0 exists
    assert len(idx) == 10_001
    got = idx.lookup(np.array([2654435761 * 5, 1, 3], dtype=np.uint64))
    assert got.tolist() == [5, 7, -1]


# --- decontamination ----------------------------------------------------------------------------------


@needs_data
def test_load_benchmark_local_files() -> None:
    counts = dict(
        math500=500, gsm8k=1319, minerva_math=272, olympiadbench=675, aime24=30, amc23=40, theoremqa=800
    )
    assert set(DEFAULT_BENCHMARKS) == set(counts) <= set(BENCHMARKS.names())
    for name, count in counts.items():
        problems = load_benchmark(name, DATA)
        assert len(problems) == count, name
        assert all(isinstance(p, str) and p for p in problems)
    # A file path and a benchmark directory work too.
    assert load_benchmark("math500", DATA / "math500" / "test.jsonl") == load_benchmark(
        "math500", DATA / "math500"
    )
    with pytest.raises(CftdataError, match="does not exist"):
        load_benchmark("math500", DATA / "nope.jsonl")
    with pytest.raises(CftdataError, match="Known benchmarks"):
        load_benchmark("mmlu", DATA)
    with pytest.raises(CftdataError, match="no gpqa_diamond/test.jsonl"):
        load_benchmark("gpqa_diamond", DATA)


def test_load_benchmark_hub_path_uses_the_shared_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub loading goes through cftdata.benchmarks (the registry eval uses): ids, configs, splits, question fields.
    datasets.load_dataset is replaced (no Hub here); a Dataset iterates as dicts, as the fake does."""
    calls: list[tuple] = []
    fields = {"openai/gsm8k": "question", "TIGER-Lab/TheoremQA": "Question", "Hothan/OlympiadBench": "question",
              "EleutherAI/hendrycks_math": "problem", "Idavidrein/gpqa": "Question"}

    def fake_load_dataset(path: str, name: str | None = None, split: str | None = None) -> list[dict]:
        calls.append((path, name, split))
        f = fields[path]
        return [{f: f"Problem one from {name or path}.", "answer": "1"}, {f: ""}, {f: None}, {f: "Problem two."}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load_dataset))
    assert load_benchmark("gsm8k") == ["Problem one from main.", "Problem two."]
    load_benchmark("theoremqa")
    load_benchmark("olympiadbench")
    assert len(load_benchmark("math")) == 14  # seven subject configs, concatenated
    assert load_benchmark("gpqa_diamond") == ["Problem one from gpqa_diamond.", "Problem two."]  # no options
    assert calls[:3] == [
        ("openai/gsm8k", "main", "test"),
        ("TIGER-Lab/TheoremQA", None, "test"),
        ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train"),
    ]
    assert [c[1] for c in calls[3:10]] == ["algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                                           "number_theory", "prealgebra", "precalculus"]
    assert calls[-1] == ("Idavidrein/gpqa", "gpqa_diamond", "train")

    def failing(*args: object, **kwargs: object) -> None:
        raise ConnectionError("offline")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=failing))
    with pytest.raises(CftdataError, match="Pass a data folder or a local JSONL file"):
        load_benchmark("math500")
    with pytest.raises(CftdataError, match="gated"):
        load_benchmark("gpqa_diamond")


@needs_data
def test_decontaminator_finds_pasted_math500_problem() -> None:
    problems = load_benchmark("math500", DATA)
    deco = Decontaminator.from_benchmarks(data_dir=DATA)
    pasted = "Solve the following and explain each step. " + problems[42] + " Give the final answer in a box."
    restyled = problems[100].upper().replace("$", " $ ")
    unrelated = [
        "A farmer has 17 goats and buys 5 more each week; after how many weeks will he own 92 goats?",
        "Tom reads twelve pages on Monday and twice as many on Tuesday. How many pages did he read?",
        "Let f be a continuous function on the closed unit interval with f(0)=0. Show that f attains a max.",
        "Write a short poem about the sea.",
    ]
    out = deco.check(["p", "r", "u1", "u2", "u3", "u4"], [pasted, restyled, *unrelated])
    assert out[0] is not None and out[0][0] == "math500"
    assert out[0][1] in " ".join(word_tokens(problems[42]))
    assert len(out[0][1].split()) == 8
    assert out[1] is not None and out[1][0] == "math500"
    assert out[2:] == [None] * 4
    st = deco.stats()
    assert st["checked"] == 6 and st["contaminated"] == 2 and st["contaminated_by_benchmark"]["math500"] == 2
    assert st["benchmark_problems"]["gsm8k"] == 1319 and st["index_ngrams"] > 100_000


def test_decontaminator_short_problems_and_validation() -> None:
    deco = Decontaminator(
        {
            "toy": [
                "Compute $\\dbinom{8}{4}$.",
                "Find x.",
                "The quick brown fox jumps over the lazy dog twice today.",
            ]
        }
    )
    out = deco.check(
        ["a", "b", "c", "d"],
        [
            "First, compute $\\dbinom{8}{4}$ and then add one.",  # short problem matched whole (4 tokens)
            "Find x and y.",  # "find x" has 2 tokens < min_short_tokens: ignored
            "the QUICK brown fox jumps over the lazy dog",  # an 8-gram of the long one
            "A quick brown fox.",
        ],
    )
    assert out[0] == ("toy", "compute dbinom 8 4")
    assert out[1] is None
    assert out[2] == ("toy", "the quick brown fox jumps over the lazy")
    assert out[3] is None
    assert deco.stats()["benchmark_problems_ignored"] == 1
    assert deco.check([], []) == []
    with pytest.raises(ValueError):
        deco.check(["a"], [])
    with pytest.raises(ValueError):
        Decontaminator({})


# --- selection ----------------------------------------------------------------------------------------


def pool_frame(n: int, seed: int = 0, shuffle: bool = True) -> pl.DataFrame:
    """n rows with distinct critique lengths: row r{k} has length k+1 (so rank from longest = n - k)."""
    rng = np.random.default_rng(seed)
    k = rng.permutation(n) if shuffle else np.arange(n)
    return pl.DataFrame(
        {
            "id": [f"r{i:07d}" for i in k],
            "critique_len": (k + 1).astype(np.int64),
            "verdict": rng.choice(["right", "wrong", "unknown"], n, p=[0.5, 0.35, 0.15]),
            "n_tokens": rng.integers(20, 3000, n),
        }
    )


def rank_of(ids: list[str], n: int) -> list[int]:
    return [n - int(i[1:]) for i in ids]  # rank 1 = longest


def test_longest_critique_paper_rule_on_600k() -> None:
    n = 600_000
    df = pool_frame(n)
    ids = select(df, "longest_critique")
    assert len(ids) == 50_000
    ranks = rank_of(ids, n)
    assert ranks == list(range(10_001, 60_001))  # longest first, exactly ranks 10,001-60,000
    assert select(df.reverse(), "longest_critique") == ids  # row order does not matter
    assert select(df, "longest_critique", n=4_000, pool=80_000) == ids[:4_000]


def test_longest_critique_small_pools_and_ties() -> None:
    df = pool_frame(60_000)  # target 50K + trims 20K > 60K: both trims scale to 5K
    assert rank_of(select(df, "longest_critique"), 60_000) == list(range(5_001, 55_001))
    small = pool_frame(30_000)  # fewer rows than n: nothing trimmed, all rows, longest first
    assert rank_of(select(small, "longest_critique"), 30_000) == list(range(1, 30_001))
    with pytest.raises(SelectionError, match="fewer than"):
        select(df, "longest_critique", strict=True)
    assert rank_of(
        select(pool_frame(1_000), "longest_critique", n=10, pool=5, trim_shortest=2, trim_longest=3), 1_000
    ) == [4, 5, 6, 7, 8]
    ties = pl.DataFrame({"id": ["d", "b", "a", "c", "e"], "critique_len": [7, 7, 7, 7, 9]})
    assert select(ties, "longest_critique", n=3, pool=3, trim_shortest=0, trim_longest=1) == ["a", "b", "c"]


def test_random_selection_deterministic() -> None:
    df = pool_frame(10_000)
    a = select(df, "random", n=500, seed=42)
    assert a == select(df.sample(fraction=1.0, shuffle=True, seed=1), "random", n=500, seed=42)
    assert len(set(a)) == 500 and set(a) <= set(df["id"])
    assert select(df, "random", n=40, seed=42) == a[:40]  # nested: a smaller sample is a prefix
    assert select(df, "random", n=500, seed=43) != a
    assert sorted(select(df.head(30), "random", n=100, seed=1)) == sorted(df.head(30)["id"].to_list())
    with pytest.raises(SelectionError, match="only 30"):
        select(df.head(30), "random", n=100, strict=True)


def test_balanced_verdict() -> None:
    df = pool_frame(10_000)
    ids = select(df, "balanced_verdict", n=2_000, seed=5)
    verdict = dict(zip(df["id"], df["verdict"], strict=True))
    got = [verdict[i] for i in ids]
    assert got.count("right") == got.count("wrong") == 1_000 and "unknown" not in got
    assert got[:4] == ["right", "wrong", "right", "wrong"]
    assert ids == select(df.reverse(), "balanced_verdict", n=2_000, seed=5)
    assert ids != select(df, "balanced_verdict", n=2_000, seed=6)
    few = pl.DataFrame(
        {"id": list("abcdef"), "verdict": ["right", "right", "right", "wrong", None, "Unknown"]}
    )
    assert select(few, "balanced_verdict", n=6, seed=0) in (["a", "d"], ["b", "d"], ["c", "d"])
    with pytest.raises(SelectionError, match="need 3 of each"):
        select(few, "balanced_verdict", n=6, strict=True)
    with pytest.raises(SelectionError, match="even"):
        select(df, "balanced_verdict", n=5)
    with pytest.raises(SelectionError, match="outside"):
        select(few.with_columns(verdict=pl.lit("maybe")), "balanced_verdict", n=2)
    as_cat = few.with_columns(pl.col("verdict").cast(pl.Categorical))
    assert select(as_cat, "balanced_verdict", n=6, seed=0) == select(few, "balanced_verdict", n=6, seed=0)


def test_length_matched() -> None:
    df = pool_frame(100_000)  # n_tokens uniform on [20, 3000)
    rng = np.random.default_rng(0)
    reference = rng.normal(400, 60, 5_000).clip(100, 700)
    ids = select(df, "length_matched", n=1_500, reference_lengths=reference.tolist(), seed=1)
    assert len(ids) == 1_500 and len(set(ids)) == 1_500
    chosen = df.filter(pl.col("id").is_in(ids))["n_tokens"].to_numpy()
    assert abs(chosen.mean() - reference.mean()) < 10
    assert abs(np.median(chosen) - np.median(reference)) < 15
    assert chosen.min() >= reference.min() and chosen.max() <= reference.max()
    assert ids == select(df.reverse(), "length_matched", n=1_500, reference_lengths=reference, seed=1)
    assert ids != select(df, "length_matched", n=1_500, reference_lengths=reference, seed=2)
    # Matching another column; a pool that cannot fill the bins returns fewer rows (or fails if strict).
    by_chars = select(
        df, "length_matched", n=100, reference_lengths=[10, 20, 30], length_column="critique_len"
    )
    # Reference mass sits in the bins [10,11), [20,21) and [29,30]; each length exists once in the pool.
    assert sorted(by_chars) == ["r0000009", "r0000019", "r0000028", "r0000029"]
    with pytest.raises(SelectionError, match="could not be matched"):
        select(
            df,
            "length_matched",
            n=100,
            reference_lengths=[10, 20, 30],
            length_column="critique_len",
            strict=True,
        )
    with pytest.raises(SelectionError, match="n_tokens"):
        select(df.drop("n_tokens"), "length_matched", n=10, reference_lengths=[1, 2])
    with pytest.raises(SelectionError, match="empty"):
        select(df, "length_matched", n=10, reference_lengths=[])


def test_select_validation() -> None:
    assert SELECTORS.names() == ["balanced_verdict", "length_matched", "longest_critique", "random", "verdict_ratio"]
    assert strategy_params("longest_critique")["pool"] == 80_000
    df = pool_frame(100)
    with pytest.raises(CftdataError, match="Known selection"):
        select(df, "shortest")
    with pytest.raises(SelectionError, match="unknown parameter"):
        select(df, "random", n=5, sed=1)
    with pytest.raises(SelectionError, match="needs parameter"):
        select(df, "random")
    for bad in ("5", 0, True, 2.5):
        with pytest.raises(SelectionError, match="'n'"):
            select(df, "random", n=bad)
    with pytest.raises(SelectionError, match="duplicate ids"):
        select(pl.concat([df, df.head(1)]), "random", n=5)
    with pytest.raises(SelectionError, match="critique_len"):
        select(df.drop("critique_len"), "longest_critique")
    with pytest.raises(SelectionError, match="null"):
        select(df.with_columns(critique_len=pl.lit(None, dtype=pl.Int64)), "longest_critique")


@needs_data
def test_local_benchmark_files_are_jsonl_objects() -> None:
    # Guard for the loader's assumption: one JSON object per line, question field per the spec.
    for name in DEFAULT_BENCHMARKS:
        spec = BENCHMARKS.get(name)
        line = (DATA / spec.local_path).read_text(encoding="utf-8").splitlines()[0]
        assert spec.question(json.loads(line))
