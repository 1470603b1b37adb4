"""The quality stages inside real builds (no model: critiques come with the source, teacher.backend existing):
dedup, decontamination against real MATH-500, verification, teacher-verifier agreement, selection,
and that every row is accounted for (counts in = out + rejects)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from cftdata.pipeline import build
from cftdata.recipe import validate_recipe
from tests.conftest import run_cli


def _rows(shared_data):
    math500 = [json.loads(line) for line in (shared_data / "math500" / "test.jsonl").read_text().splitlines()]
    rows = []
    for i in range(12):
        a = i + 3
        rows.append({"question": f"Compute {i} plus 3, then explain your steps carefully please.",
                     "response": f"{i}+3 = \\boxed{{{a if i % 3 else a + 1}}}", "answer": str(a),
                     "critique": "x" * (10 * i + 5) + ("\nConclusion: right [END]" if i % 2 else "\nConclusion: wrong [END]")})
    # an exact duplicate (case and spacing differ) and a near duplicate of row 0
    rows.append({**rows[0], "question": "compute 0 PLUS 3, then explain   your steps carefully please."})
    rows.append({**rows[0], "question": "Compute 0 plus 3, then explain your steps carefully please!!"})
    # a contaminated question: a MATH-500 problem inside a longer prompt
    rows.append({"question": "Here is a problem. " + math500[7]["problem"], "response": "\\boxed{1}", "answer": "1",
                 "critique": "ok\nConclusion: right"})
    return rows


@pytest.fixture
def source(tmp_path, shared_data):
    p = tmp_path / "pool.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in _rows(shared_data)))
    return p


def recipe(source, tmp_path, shared_data, **extra):
    data = {"name": "q", "source": {"path": str(source), "answer": "answer", "response": "response"},
            "respond": {"mode": "existing"}, "teacher": {"backend": "existing", "model": "published"},
            "dedup": {}, "decontaminate": {"data_dir": str(shared_data), "benchmarks": ["math500", "gsm8k"]},
            "verify": {"answer_rule": "boxed", "workers": 1}, "output": {"dir": str(tmp_path / "out")}}
    data.update(extra)
    return validate_recipe(data)


def test_quality_stages_in_a_build(source, tmp_path, shared_data):
    res = build(recipe(source, tmp_path, shared_data, select={"strategy": "longest_critique", "n": 4,
                                                             "params": {"trim_shortest": 2, "trim_longest": 1, "pool": 6}}))
    m = res.manifest
    c = m["counts"]
    assert c["source"]["in"] == 15
    assert c["dedup"]["rejected"] == 2 and c["decontaminate"]["rejected"] == 1
    for name, k in c.items():
        assert k["in"] == k["out"] + k["rejected"], name
    assert res.rows == 4 and res.rows + res.rejected == 15
    assert m["stages"]["decontaminate"]["removed_by_benchmark"] == {"math500": 1}
    assert m["stages"]["verify"]["statuses"] == {"correct": 8, "incorrect": 4}
    agree = m["stages"]["agreement"]
    assert agree["decided"] == 12 and sum(agree["table"].values()) == 12
    assert m["stages"]["select"]["kept"] == 4
    df = pl.read_parquet(res.output_dir / "data" / "*.parquet")
    # longest_critique: rank by critique length, skip the longest 1, keep the next 4 (rows 10, 9, 8, 7)
    lens = sorted((len(o) for o in df["output"].to_list()), reverse=True)
    all_lens = sorted((10 * i + 5 + 24 for i in range(12)), reverse=True)  # both conclusions: 24 chars
    assert lens == all_lens[1:5]
    rej = pl.read_parquet(res.output_dir / "rejects.parquet")
    assert sorted(set(rej["reason"].to_list())) == ["contaminated", "duplicate", "not_selected"]
    assert "duplicate of" in rej.filter(pl.col("reason") == "duplicate")["detail"][0]
    assert set(df["verify_status"].to_list()) <= {"correct", "incorrect"}
    card = (res.output_dir / "README.md").read_text()
    assert "verify" in card


def test_drop_contradictions_and_verify_drop(source, tmp_path, shared_data):
    res = build(recipe(source, tmp_path, shared_data, agreement={"drop_contradictions": True}))
    agree = res.manifest["stages"]["agreement"]
    contradictions = agree["table"]["right/incorrect"] + agree["table"]["wrong/correct"]
    assert res.manifest["counts"]["agreement"]["rejected"] == contradictions > 0
    df = pl.read_parquet(res.output_dir / "data" / "*.parquet")
    pairs = set(zip(df["verdict"].to_list(), df["verify_status"].to_list(), strict=True))
    assert not pairs & {("right", "incorrect"), ("wrong", "correct")}


@pytest.mark.parametrize("strategy, params", [("random", {}), ("balanced_verdict", {})])
def test_selection_is_deterministic(source, tmp_path, shared_data, strategy, params):
    ids = []
    for k in range(2):
        r = recipe(source, tmp_path, shared_data, select={"strategy": strategy, "n": 4, "params": params},
                   output={"dir": str(tmp_path / f"o{k}")})
        ids.append(pl.read_parquet(build(r).output_dir / "data" / "*.parquet")["id"].to_list())
    assert ids[0] == ids[1] and len(ids[0]) == 4


def test_length_matched_with_reference_file(source, tmp_path, shared_data):
    """The reference holds two lengths, those of pool rows 2 and 9 (in approximate tokens, characters / 4):
    two bins, two rows drawn from each, none outside the reference's range."""
    pool = _rows(shared_data)[:12]  # the rows left after dedup and decontamination

    def tokens(r: dict) -> int:
        return -(-(len(r["question"]) + len(r["response"]) + len(r["critique"])) // 4)

    lengths = [tokens(r) for r in pool]
    assert lengths == sorted(lengths) and len(set(lengths)) == 12  # longer critique, longer row
    low, high = lengths[2], lengths[9]
    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join(json.dumps({"instruction": "q" * (4 * t), "input": "", "output": ""}) + "\n"
                           for t in [low] * 25 + [high] * 25))
    r = recipe(source, tmp_path, shared_data,
               select={"strategy": "length_matched", "n": 4, "params": {"reference": str(ref), "bins": 2}})
    res = build(r)
    sel = res.manifest["stages"]["select"]
    assert sel["strategy"] == "length_matched" and sel["kept"] == 4 and res.rows == 4
    by_critique = {row["critique"]: tokens(row) for row in pool}
    picked = [by_critique[c] for c in pl.read_parquet(res.output_dir / "data" / "*.parquet")["output"].to_list()]
    mid = (low + high) / 2
    assert all(low <= t <= high for t in picked), picked
    assert sum(t < mid for t in picked) == 2 and sum(t >= mid for t in picked) == 2, picked
    assert res.rows + res.rejected == 15


def test_sft_baseline_format_without_teacher(source, tmp_path, shared_data):
    r = validate_recipe({"name": "sft", "source": {"path": str(source), "response": "response"},
                         "teacher": {"backend": "none"}, "output": {"dir": str(tmp_path / "sft"),
                                                                    "format": "sft-alpaca"}})
    res = build(r)
    df = pl.read_parquet(res.output_dir / "data" / "*.parquet")
    assert df.height == 15 and df["instruction"][0].startswith("Compute 0 plus 3")
    assert df["output"][0] == "0+3 = \\boxed{4}" and df["input"][0] == ""
    assert "critique" not in res.manifest["stages"]


def test_unknown_selection_parameter_exits_2(source, tmp_path, shared_data):
    rp = tmp_path / "r.yaml"
    rp.write_text(json.dumps({"name": "bad", "source": {"path": str(source), "response": "response"},
                              "teacher": {"backend": "existing"}, "output": {"dir": str(tmp_path / "b")},
                              "select": {"strategy": "longest_critique", "n": 2, "params": {"pooll": 3}}}))
    res = run_cli("build", str(rp))
    assert res.returncode == 2 and "pooll" in res.stderr and "Traceback" not in res.stderr


def test_llamafactory_dataset_info_entry(source, tmp_path, shared_data):
    """Checked against LLaMA-Factory's documented dataset_info.json format (data/README.md there)."""
    res = build(recipe(source, tmp_path, shared_data))
    info = json.loads((res.output_dir / "dataset_info.json").read_text())
    entry = info["q"]
    assert entry["formatting"] == "alpaca" and entry["file_name"] == "data"
    assert entry["columns"] == {"prompt": "instruction", "query": "input", "response": "output"}
    df = pl.read_parquet(res.output_dir / entry["file_name"] / "*.parquet")
    assert set(entry["columns"].values()) <= set(df.columns)
