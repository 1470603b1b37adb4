"""The shared benchmark registry: full MATH, MATH train, GPQA-diamond and MMLU-Pro read from fixtures in their
documented schemas (no downloads), seeded held-out slices, and decontamination on the same registry."""

from __future__ import annotations

import pytest

from cftdata.benchmarks import BENCHMARKS, DEFAULT_DECONTAMINATION, PAPER_TABLE, load_problems
from cftdata.errors import CftdataError
from cftdata.quality.decontaminate import Decontaminator, load_benchmark
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "benchmarks"


def test_registry_has_the_papers_benchmarks_with_real_hub_ids():
    hub = {n: (BENCHMARKS.get(n).hub, BENCHMARKS.get(n).hub_configs, BENCHMARKS.get(n).hub_split) for n in BENCHMARKS}
    assert hub["math"][0] == "EleutherAI/hendrycks_math" and len(hub["math"][1]) == 7 and hub["math"][2] == "test"
    assert hub["math_train"][2] == "train" and not BENCHMARKS.get("math_train").reported
    assert hub["gpqa_diamond"] == ("Idavidrein/gpqa", ("gpqa_diamond",), "train")
    assert hub["mmlu_pro"] == ("TIGER-Lab/MMLU-Pro", (None,), "test")
    assert [BENCHMARKS.get(b).title for b in PAPER_TABLE] == ["MATH", "Minerva", "GSM8K", "OlympiadBench",
                                                                "AIME24", "AMC23"]
    assert sum(BENCHMARKS.get(b).size for b in PAPER_TABLE) == 5000 + 272 + 1319 + 675 + 30 + 40
    assert set(DEFAULT_DECONTAMINATION) <= set(BENCHMARKS.names())


def test_full_math_and_math_train_from_the_harness_layout():
    problems, source = load_problems("math", FIXTURES)
    assert source == f"file:{FIXTURES / 'math' / 'test.jsonl'}"
    assert [p.gold for p in problems] == ["25", "\\frac{2}{3}", "2, 3", "\\dfrac{3}{8}", "2",
                                          "\\left( \\sqrt{2}, \\frac{\\pi}{4} \\right)"]
    train, source = load_problems("math_train", FIXTURES)
    assert len(train) == 12 and source.endswith("math/train.jsonl")


def test_seeded_heldout_slice():
    a, source = load_problems("math_train", FIXTURES, sample=5, seed=7)
    b, _ = load_problems("math_train", FIXTURES, sample=5, seed=7)
    c, _ = load_problems("math_train", FIXTURES, sample=5, seed=8)
    assert [p.index for p in a] == [p.index for p in b] != [p.index for p in c]
    assert [p.index for p in a] == sorted(p.index for p in a) and len({p.index for p in a}) == 5
    assert "seeded sample: 5 of 12, seed 7" in source
    with pytest.raises(CftdataError, match="fewer than the 13 asked"):
        load_problems("math_train", FIXTURES, sample=13)


def test_malformed_rows_are_one_paragraph_errors(tmp_path):
    (tmp_path / "gpqa_diamond").mkdir()
    (tmp_path / "gpqa_diamond" / "test.jsonl").write_text('{"Question": "Q?", "Correct Answer": "a"}\n')
    with pytest.raises(CftdataError, match="gpqa_diamond .* row 0: missing or malformed field"):
        load_problems("gpqa_diamond", tmp_path)
    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "test.jsonl").write_text("{not json\n")
    with pytest.raises(CftdataError, match="math/test.jsonl:1 is not JSON"):
        load_problems("math", tmp_path)


def test_decontamination_uses_the_same_registry():
    texts = load_benchmark("mmlu_pro", FIXTURES)
    assert texts[0] == "What is the derivative of x^3?"  # the bare question, no options
    deco = Decontaminator.from_benchmarks(["math", "gpqa_diamond"], data_dir=FIXTURES)
    hits = deco.check(["a", "b", "c"], [
        "Please solve: A fair coin is flipped three times. What is the probability of getting exactly two heads?",
        "Which gas makes up most of Earth's atmosphere by volume? Explain.",
        "An unrelated question about sorting a list of integers in Python.",
    ])
    assert hits[0][0] == "math" and hits[1][0] == "gpqa_diamond" and hits[2] is None
