"""The critique-data family in one recipe: several generators and teachers in one build (fan-out), teacher
agreement and selection by it, per-model usage and cost, the card and the report.

Builds run for real against the loopback fault server with scripted teachers (``tests/servers/panel_critic.py``:
each teacher model's verdict on question ``i`` is known), and against the embedded SmolLM2 model (slow).
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from cftdata.errors import RecipeError
from cftdata.pipeline import build
from cftdata.recipe import load_recipe
from tests.conftest import ROOT, run_cli
from tests.servers.fault_server import serve
from tests.servers.panel_critic import verdict_for

KEY_ENV = "CFTDATA_FAMILY_TEST_KEY"
N_QUESTIONS = 6
TEACHERS = {"even": "judge-even", "three": "judge-three", "yes": "judge-right"}
PRICES = {"even": (1.0, 2.0), "three": (3.0, 6.0), "yes": (0.5, 1.0)}


def write_source(path: Path, n: int = N_QUESTIONS, truncated: int = 1) -> Path:
    """Questions ``Question i: ...`` with a boxed response and its answer; ``truncated`` more whose calls come
    back truncated (the fault server's ``[[length]]`` marker)."""
    rows = [{"question": f"Question {i}: compute {i} + {i}.", "answer": str(2 * i),
             "response": f"{i} + {i} = \\boxed{{{2 * i if i % 2 else 2 * i + 1}}}"} for i in range(n)]
    rows += [{"question": f"Question {n + k}: a long one. [[length]]", "answer": "0", "response": "\\boxed{0}"}
             for k in range(truncated)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def server_model(base_url: str, model: str, **extra) -> dict:
    return {"backend": "openai", "model": model, "base_url": base_url, "api_key_env": KEY_ENV, **extra}


def family_recipe(tmp_path: Path, base_url: str, *, generators: bool = True, **extra) -> Path:
    """Two generators (gen-a: 2 samples, gen-b: 1) and three teachers on the scripted server."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = write_source(tmp_path / "source.jsonl")
    teachers = [server_model(base_url, model, label=label, prompt="cft-paper" if label != "three" else "cft-script",
                             options={"price": {"input": PRICES[label][0], "output": PRICES[label][1]}})
                for label, model in TEACHERS.items()]
    respond = ([server_model(base_url, "gen-a", mode="generate", n=2, prompt="plain", params={"seed": 1}),
                server_model(base_url, "gen-b", mode="generate", n=1, prompt="plain")] if generators
               else {"mode": "existing"})
    recipe = {"version": 1, "name": "family", "source": {"path": str(src), "question": "question",
                                                          "answer": "answer", "response": "response"},
              "respond": respond, "teacher": teachers, "output": {"dir": str(tmp_path / "out")},
              "cache": {"dir": str(tmp_path / "cache")}, **extra}
    path = tmp_path / "family.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def question_of(row: dict) -> int:
    """The number i of "Question i" in a written row (alpaca ``input``, or the chat ``prompt``)."""
    text = row.get("input") or json.dumps(row.get("prompt"))
    return int(re.search(r"Question (\d+)", text).group(1))


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-family-test-key")
    with serve(plugins=["tests.servers.panel_critic:register"]) as (url, stats):
        yield url, stats


def test_fan_out_rows_ids_usage_card_and_rerun(tmp_path, server):
    url, stats = server
    path = family_recipe(tmp_path, url)
    res = build(load_recipe(path), recipe_file=str(path))
    m = res.manifest
    q, gens, teachers = N_QUESTIONS, 3, len(TEACHERS)  # 3 responses per question (gen-a n=2, gen-b n=1)

    # every row accounted for: the truncated question's 3 responses are rejects, the rest fans out x3 teachers
    assert m["counts"]["respond"] == {**m["counts"]["respond"], "in": (q + 1) * gens, "out": q * gens, "rejected": 3}
    assert m["counts"]["critique"]["in"] == q * gens * teachers == m["counts"]["critique"]["out"]
    assert res.rows == q * gens * teachers and res.rejected == 3
    assert m["rejects_by_reason"] == {"respond:truncated": 3}

    data = pq.read_table(res.files).to_pylist()
    rejects = pq.read_table(res.output_dir / "rejects.parquet").to_pylist()
    ids = [r["id"] for r in data] + [r["id"] for r in rejects]
    assert len(ids) == len(set(ids)) == q * gens * teachers + 3
    labels = {"openai:gen-a", "openai:gen-b"}
    for r in data:
        assert r["response_source"] in labels and r["teacher"] in TEACHERS
        sample = re.escape(r["question_id"]) + r"\.openai_gen-[ab]\.\d"
        assert re.fullmatch(sample, r["response_id"]) and r["id"] == f"{r['response_id']}.{r['teacher']}"
        assert r["verdict"] == verdict_for(TEACHERS[r["teacher"]], question_of(r))
        assert r["output"].startswith(f"Critique by {TEACHERS[r['teacher']]} of question {question_of(r)}.")

    # per model: calls, usage and cost; one caller (cache, limits) per model
    usage, cost = m["usage"], m["cost"]
    assert set(usage) == {"respond:openai:gen-a", "respond:openai:gen-b", *(f"critique:{t}" for t in TEACHERS)}
    assert usage["respond:openai:gen-a"]["calls_made"] == (q + 1) * 2
    assert usage["respond:openai:gen-b"]["calls_made"] == q + 1
    for t, (pin, pout) in PRICES.items():
        u = usage[f"critique:{t}"]
        assert u["calls_made"] == q * gens
        assert cost[f"critique:{t}"]["total_usd"] == pytest.approx((u["input_tokens"] * pin + u["output_tokens"] * pout) / 1e6,
                                                                   abs=1e-6)
    assert stats().total == (q + 1) * gens + q * gens * teachers

    # per generator x teacher: rows and verdicts
    pairs = {(p["generator"], p["teacher"]): p for p in m["stages"]["verdict"]["by_pair"]}
    assert set(pairs) == set(itertools.product(sorted(labels), TEACHERS))
    for (gen, t), p in pairs.items():
        per_q = 2 if gen.endswith("gen-a") else 1
        want = Counter(verdict_for(TEACHERS[t], i) for i in range(q) for _ in range(per_q))
        assert (p["rows"], p["right"], p["wrong"]) == (q * per_q, want["right"], want["wrong"])
        assert p["critique_usd"] > 0

    # teacher x teacher agreement over the same responses
    panel = m["stages"]["panel"]
    for p in panel["pairwise"]:
        a, b = TEACHERS[p["a"]], TEACHERS[p["b"]]
        agree = sum(verdict_for(a, i) == verdict_for(b, i) for i in range(q)) * gens
        assert (p["both_decided"], p["agree"]) == (q * gens, agree)
    assert panel["keep"] == "all" and panel["vs_verifier"] is None

    # the card names every model, the pair table, the agreement table and each teacher's prompt
    card = (res.output_dir / "README.md").read_text(encoding="utf-8")
    for text in ("### Generators and teachers", "### Per generator x teacher", "### Teacher agreement",
                 "Teacher prompt of `three` (`cft-script`)", "Teacher prompt of `even` (`cft-paper`)",
                 "| openai:gen-a | even | 12 |", "2 generators"):
        assert text in card, text
    assert "sk-family-test-key" not in card
    assert set(m["prompts"]) == {"teacher:even", "teacher:three", "teacher:yes", "respond:openai:gen-a",
                                 "respond:openai:gen-b"}

    # a rerun makes no call: every model's answers are in the cache
    before = stats().total
    again = build(load_recipe(path), recipe_file=str(path))
    assert stats().total == before
    assert all(u["calls_made"] == 0 for u in again.manifest["usage"].values())
    assert pq.read_table(again.files).to_pylist() == pq.read_table(res.files).to_pylist()


def test_dry_run_estimates_per_model(tmp_path, server):
    url, stats = server
    path = family_recipe(tmp_path, url)
    res = run_cli("build", str(path), "--dry-run", env={KEY_ENV: "sk-family-test-key"})
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "respond:openai:gen-a: 14 calls" in out and "respond:openai:gen-b: 7 calls" in out
    for t, model in TEACHERS.items():
        assert re.search(rf"critique:{t}\s+openai:{model}: {N_QUESTIONS * 3 + 3} calls", out), out
    # nothing paid: the dry run's preflight only lists models, once per endpoint (5 models on one server)
    assert stats().by_route == {"GET /v1/models": 5}


def test_panel_keep_majority_and_verifier(tmp_path, server):
    url, _ = server
    q = N_QUESTIONS
    # existing responses: verify says correct for odd i (boxed 2i), incorrect for even i (boxed 2i + 1)
    path = family_recipe(tmp_path, url, generators=False, verify={"answer_rule": "boxed", "workers": 1},
                         panel={"keep": "majority"})
    res = build(load_recipe(path))
    majority = {i: Counter(verdict_for(m, i) for m in TEACHERS.values()).most_common(1)[0][0] for i in range(q)}
    want = sum(verdict_for(m, i) == majority[i] for i in range(q) for m in TEACHERS.values())
    assert res.rows == want
    # the truncated question's 3 critiques, and the critiques against the majority
    assert res.manifest["rejects_by_reason"] == {"critique:truncated": 3, "panel:not_majority": q * 3 - want}
    assert res.rows + res.rejected == (q + 1) * 3
    data = pq.read_table(res.files).to_pylist()
    assert all(r["verdict"] == majority[question_of(r)] for r in data)
    verifier = {p["teacher"]: p for p in res.manifest["stages"]["panel"]["vs_verifier"]}
    for t, model in TEACHERS.items():
        expect = sum((verdict_for(model, i) == "right") == (i % 2 == 1) for i in range(q))
        assert (verifier[t]["decided"], verifier[t]["agree"]) == (q, expect)

    path = family_recipe(tmp_path, url, generators=False, verify={"answer_rule": "boxed", "workers": 1},
                         panel={"keep": "verifier"}, output={"dir": str(tmp_path / "out-verifier")})
    res = build(load_recipe(path))
    data = pq.read_table(res.files).to_pylist()
    assert data and all((r["verdict"] == "right") == (r["verify_status"] == "correct") for r in data)
    assert len(data) == sum(verifier[t]["agree"] for t in TEACHERS)
    assert res.manifest["rejects_by_reason"]["panel:disagrees_with_verifier"] >= 1


def test_list_recipes_validate_and_set_addresses_items(tmp_path):
    path = family_recipe(tmp_path, "http://127.0.0.1:9/v1")
    r = load_recipe(path, ["teacher.1.model=judge-even", "teacher.1.label=even2", "respond.0.n=3"])
    assert [t.model for t in r.teachers] == ["judge-even", "judge-even", "judge-right"] and r.generators[0].n == 3
    with pytest.raises(RecipeError, match=r"teacher\[0\] and teacher\[1\] are both 'even'"):
        load_recipe(path, ["teacher.1.label=even"])
    with pytest.raises(RecipeError, match=r"teacher is a list of 3; address an item"):
        load_recipe(path, ["teacher.model=x"])
    with pytest.raises(RecipeError, match=r"unknown key 'teacher\[2\]\.modle'"):
        load_recipe(path, ["teacher.2.modle=x"])
    with pytest.raises(RecipeError, match="panel.keep 'verifier' needs a verify section"):
        load_recipe(path, ["panel.keep=verifier"])
    res = run_cli("build", str(path), "--set", "teacher.1.label=even")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "distinct 'label'" in res.stderr


def test_single_mapping_keeps_its_ids_and_roles(tmp_path, server):
    url, _ = server
    path = family_recipe(tmp_path, url)
    data = yaml.safe_load(path.read_text())
    data["respond"] = data["respond"][1]
    data["teacher"] = data["teacher"][0]
    path.write_text(yaml.safe_dump(data))
    res = build(load_recipe(path))
    assert set(res.manifest["usage"]) == {"respond", "critique"} and "panel" not in res.manifest["stages"]
    rows = pq.read_table(res.files).to_pylist()
    assert all(r["id"] == f"{r['question_id']}.0" and r["teacher"] == "even" for r in rows)
    assert "response_id" not in rows[0]


@pytest.mark.slow
def test_fan_out_with_the_embedded_model(tmp_path):
    """Offline: two generators and two teachers, all the bundled SmolLM2 with different params and prompts."""
    pytest.importorskip("llama_cpp")
    short = {"max_tokens": 48, "stop": ["\n\n"], "temperature": 0.7}
    recipe = {
        "version": 1, "name": "family-local",
        "source": {"path": str(ROOT / "recipes" / "data" / "quickstart.jsonl"), "question": "problem",
                   "answer": "answer", "limit": 2},
        "respond": [{"mode": "generate", "backend": "local", "model": "smollm2-135m", "label": "cold",
                     "params": {**short, "temperature": 0.2}},
                    {"mode": "generate", "backend": "local", "model": "smollm2-135m", "label": "warm", "n": 2,
                     "params": {**short, "temperature": 1.0, "seed": 3}}],
        "teacher": [{"backend": "local", "model": "smollm2-135m", "label": "paper", "prompt": "cft-paper",
                     "params": short},
                    {"backend": "local", "model": "smollm2-135m", "label": "script", "prompt": "cft-script",
                     "params": short}],
        "output": {"dir": str(tmp_path / "out")}, "cache": {"dir": str(tmp_path / "cache")},
    }
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(recipe))
    res = build(load_recipe(path))
    m = res.manifest
    responses = m["counts"]["respond"]["out"]
    assert m["counts"]["respond"]["in"] == 2 * 3 == responses + m["counts"]["respond"]["rejected"]
    assert m["counts"]["critique"]["in"] == responses * 2
    assert res.rows + res.rejected == 2 * 3 * 2 - (6 - responses)  # rejected responses are not critiqued
    assert set(m["usage"]) == {"respond:cold", "respond:warm", "critique:paper", "critique:script"}
    data = pq.read_table(res.files).to_pylist()
    assert {(r["response_source"], r["teacher"]) for r in data} <= set(itertools.product(("cold", "warm"),
                                                                                          ("paper", "script")))
    again = build(load_recipe(path))
    assert all(u["calls_made"] == 0 for u in again.manifest["usage"].values())


# -- critique, then refine ------------------------------------------------------------------------------------


def test_refine_stage_writes_critique_refine_rows(tmp_path, server):
    url, stats = server
    path = family_recipe(tmp_path, url, generators=False, output={"dir": str(tmp_path / "out"),
                                                                  "format": "critique-refine"},
                         refine=server_model(url, "refiner-x"))
    data = yaml.safe_load(path.read_text())
    data["teacher"] = data["teacher"][0]
    path.write_text(yaml.safe_dump(data))
    res = build(load_recipe(path), recipe_file=str(path))
    m = res.manifest
    q = N_QUESTIONS
    # the truncated question's critique is a reject before the refine stage, which gets the others
    assert m["counts"]["refine"] == {**m["counts"]["refine"], "in": q, "out": q, "rejected": 0}
    assert res.rows == q and m["rejects_by_reason"] == {"critique:truncated": 1}
    assert set(m["usage"]) == {"critique", "refine"} and m["usage"]["refine"]["calls_made"] == q
    rows = pq.read_table(res.files).to_pylist()
    for r in rows:
        user = r["prompt"][-1]["content"]
        assert "Question:\nQuestion " in user and "\n\nCritique:\nCritique by judge-even" in user
        assert r["completion"] == [{"role": "assistant", "content": r["refined"]}]
        assert r["refined"].startswith("Critique by refiner-x of question") and r["refiner"] == "openai:refiner-x"
    card = (res.output_dir / "README.md").read_text(encoding="utf-8")
    assert "### Refine prompt of `openai:refiner-x` (`refine`)" in card and "Student's solution:" in card
    before = stats().total
    build(load_recipe(path))
    assert stats().total == before  # critiques and refinements come from the cache


def test_refine_needs_a_teacher(tmp_path):
    path = family_recipe(tmp_path, "http://127.0.0.1:9/v1")
    with pytest.raises(RecipeError, match="refine needs critiques"):
        load_recipe(path, ["teacher={backend: none}", "refine={backend: local, model: smollm2-135m}"])


# -- RL export ------------------------------------------------------------------------------------------------


def rl_build(tmp_path: Path, url: str, fmt: str) -> tuple:
    """Existing responses (verify: odd i correct, even i incorrect), two teachers, in RL format ``fmt``."""
    path = family_recipe(tmp_path / fmt, url, generators=False, verify={"answer_rule": "boxed", "workers": 1},
                         output={"dir": str(tmp_path / fmt / "out"), "format": fmt})
    data = yaml.safe_load(path.read_text())
    data["teacher"] = data["teacher"][:2]
    path.write_text(yaml.safe_dump(data))
    return build(load_recipe(path)), data


@pytest.mark.parametrize("fmt", ["grpo-prompts", "verl-prompts"])
def test_rl_prompt_formats_one_row_per_question(tmp_path, server, fmt):
    import datasets

    url, _ = server
    res, _ = rl_build(tmp_path, url, fmt)
    q = N_QUESTIONS
    # 6 questions x 2 teachers kept: one prompt per question, the other teacher's row is a reject
    assert res.rows == q
    assert res.manifest["rejects_by_reason"] == {"critique:truncated": 2, "format:same_prompt": q}
    assert res.manifest["counts"]["format"] == {**res.manifest["counts"]["format"], "in": 2 * q, "out": q,
                                                "rejected": q}
    ds = datasets.load_dataset("parquet", data_dir=str(res.output_dir / "data"), split="train")
    for row in ds:
        i = int(re.search(r"Question (\d+)", row["prompt"][0]["content"]).group(1))
        assert row["prompt"] == [{"role": "user", "content": f"Question {i}: compute {i} + {i}."}]
        if fmt == "grpo-prompts":
            assert row["solution"] == str(2 * i)
        else:
            assert row["data_source"] and row["ability"] == "math"
            assert row["reward_model"] == {"style": "rule", "ground_truth": str(2 * i)}
            assert row["extra_info"]["split"] == "train" and row["extra_info"]["question"] == row["prompt"][0]["content"]


@pytest.mark.parametrize("fmt", ["grpo-critique", "verl-critique"])
def test_rl_critique_formats_label_from_the_verifier(tmp_path, server, fmt):
    import datasets

    url, _ = server
    res, _ = rl_build(tmp_path, url, fmt)
    assert res.rows == N_QUESTIONS * 2
    ds = datasets.load_dataset("parquet", data_dir=str(res.output_dir / "data"), split="train")
    for row in ds:
        user = row["prompt"][0]["content"]
        i = int(re.search(r"Question (\d+)", user).group(1))
        assert user.startswith("Please critique whether the following solution to the question is correct.\n")
        label = row["label"] if fmt == "grpo-critique" else row["reward_model"]["ground_truth"]
        assert label == ("right" if i % 2 else "wrong")  # the verifier's, whatever the teacher said


def test_grpo_prompts_train_a_step_with_trl(tmp_path, server):
    """The grpo-prompts parquet goes into TRL's GRPOTrainer as is: the `solution` column reaches the reward
    functions (TRL's accuracy_reward and one that records what it gets), which score the sampled completions;
    one optimizer step on the tiny local model."""
    pytest.importorskip("trl")
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer
    from trl.data_utils import is_conversational
    from trl.rewards import accuracy_reward  # TRL's own math reward: reads the `solution` column

    from cftdata.train.tiny import build_tiny_model

    url, _ = server
    res, _ = rl_build(tmp_path, url, "grpo-prompts")
    ds = datasets.load_dataset("parquet", data_dir=str(res.output_dir / "data"), split="train")
    assert is_conversational(ds[0])
    seen: list[str] = []

    def reward(completions, solution, **kwargs):
        seen.extend(solution)
        return [float(s in c[0]["content"]) for c, s in zip(completions, solution, strict=True)]

    model_dir = build_tiny_model(tmp_path / "tiny")
    args = GRPOConfig(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2,
                      num_generations=2, max_completion_length=8, learning_rate=1e-4, report_to=[],
                      save_strategy="no", logging_steps=1, use_cpu=True, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=[accuracy_reward, reward],
                          args=args, train_dataset=ds, processing_class=AutoTokenizer.from_pretrained(model_dir))
    out = trainer.train()
    assert out.global_step == 1
    assert seen and set(seen) <= {str(2 * i) for i in range(N_QUESTIONS)}


# -- the verdict-ratio grid -----------------------------------------------------------------------------------


def test_verdict_ratio_grid_one_command(tmp_path):
    """recipes/verdict-ratio.yaml on a local pool of 12 right and 8 wrong published-style critiques: the grid
    builds one dataset per ratio at the same size."""
    src = tmp_path / "pool.jsonl"
    rows = [{"instruction": "Please critique whether the following solution to the question is correct.",
             "input": f"Question:\nWhat is {i} + {i}?\n\nSolution:\nIt is {2 * i}.",
             "output": f"Critique {i}: checked.\n\nConclusion: {'right' if i < 12 else 'wrong'} [END]"}
            for i in range(20)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "vr"
    res = run_cli("build", "recipes/verdict-ratio.yaml", "--set", "source.hub=null", "--set", f"source.path={src}",
                  "--set", "select.n=8", "--set", f"output.dir={out}", "--set", f"cache.dir={tmp_path / 'c'}",
                  "--grid", "select.params.right_share=0,0.25,0.5,1")
    assert res.returncode == 0, res.stderr
    for share, right in (("0", 0), ("0.25", 2), ("0.5", 4), ("1", 8)):
        m = json.loads((Path(f"{out}-{share}") / "manifest.json").read_text())
        data = pq.read_table(sorted((Path(f"{out}-{share}") / "data").glob("*.parquet"))).to_pylist()
        assert len(data) == 8 and Counter(r["verdict"] for r in data)["right"] == right, share
        assert m["counts"]["select"]["rejected"] == 12 and m["stages"]["select"]["params"]["right_share"] == float(share)
        assert m["stages"]["select"]["verdicts_kept"] == {k: v for k, v in (("right", right), ("wrong", 8 - right)) if v}
    # the comparison table shows the verdicts of each selected set
    table = {line.split()[0]: line.split() for line in res.stdout.splitlines() if line.startswith("select.params")}
    assert [table[f"select.params.right_share={s}"][3:5] for s in ("0", "0.25", "0.5", "1")] == \
        [["0", "8"], ["2", "6"], ["4", "4"], ["8", "0"]]


# -- the family recipes' offline variants, with the embedded model ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["one-shot-cft-offline", "critique-refine-offline", "verdict-ratio-offline"])
def test_family_offline_variants_build(tmp_path, recipe):
    pytest.importorskip("llama_cpp")
    path = f"recipes/family/{recipe}.yaml"
    out = tmp_path / recipe
    res = run_cli("build", path, "--set", f"output.dir={out}", "--set", f"cache.dir={tmp_path / 'cache'}",
                  *(["--limit", "2"] if recipe == "verdict-ratio-offline" else []))
    assert res.returncode == 0, res.stderr
    m = json.loads((out / "manifest.json").read_text())
    counts = m["counts"]
    # every row accounted for: at each stage in = out + rejected, the rejects file holds them all, and the
    # fan-out multiplies: respond x (sum of n), critique x teachers
    assert all(c["in"] == c["out"] + c["rejected"] for c in counts.values()), counts
    assert pq.read_table(out / "rejects.parquet").num_rows == m["rejected"] == sum(c["rejected"] for c in counts.values())
    assert m["rows_out"] == counts["format"]["out"]
    n, teachers = {"one-shot-cft-offline": (4, 2)}.get(recipe, (1, 1))
    assert counts["respond"]["in"] == counts["source"]["out"] * n
    before_critique = counts["verify"]["out"] if "verify" in counts else counts["respond"]["out"]
    assert counts["critique"]["in"] == before_critique * teachers
    if recipe == "one-shot-cft-offline":
        assert set(m["usage"]) == {"respond:smollm2-t0.7", "respond:smollm2-t1.0", "critique:one-shot-prompt",
                                   "critique:cft-paper-prompt"}
        assert "### Teacher agreement" in (out / "README.md").read_text()
    if recipe == "critique-refine-offline":
        assert "refine" in m["usage"]


# -- per-teacher prompts: a reference-guided critique next to a plain one ----------------------------------------


def test_reference_guided_prompt_shows_in_the_agreement_table(tmp_path, server):
    """One model, two prompts: the plain CFT prompt and a template that shows the reference answer. The scripted
    `judge-ref` believes every solution unless it sees the reference, so the agreement table shows the effect:
    the reference-guided teacher agrees with the verifier on every response, the plain one on half."""
    url, _ = server
    q = N_QUESTIONS
    template = tmp_path / "with-reference.yaml"
    template.write_text(yaml.safe_dump({"system": "Judge the solution. Conclude with 'Conclusion: right/wrong [END]'.",
                                        "user": "Question: {{ question }}\n\nSolution: {{ response }}\n\n"
                                                "Reference answer: {{ reference_answer }}"}))
    path = family_recipe(tmp_path, url, generators=False, verify={"answer_rule": "boxed", "workers": 1})
    data = yaml.safe_load(path.read_text())
    data["teacher"] = [server_model(url, "judge-ref", label="plain", prompt="cft-paper"),
                       server_model(url, "judge-ref", label="reference", prompt=str(template))]
    path.write_text(yaml.safe_dump(data))
    res = build(load_recipe(path), recipe_file=str(path))
    panel = res.manifest["stages"]["panel"]
    verifier = {v["teacher"]: (v["decided"], v["agree"]) for v in panel["vs_verifier"]}
    assert verifier == {"plain": (q, q // 2), "reference": (q, q)}
    (pair,) = panel["pairwise"]
    assert (pair["a"], pair["b"], pair["both_decided"], pair["agree"]) == ("plain", "reference", q, q // 2)
    card = (res.output_dir / "README.md").read_text(encoding="utf-8")
    assert "Teacher prompt of `reference` (`" in card and "Reference answer: {{ reference_answer }}" in card
    assert "| plain | reference | 6 | 3 | 50.0% |" in card

    # cftdata inspect shows the same tables
    out = tmp_path / "report"
    rep = run_cli("inspect", str(res.output_dir), "--out", str(out))
    assert rep.returncode == 0, rep.stderr
    html = (out / "index.html").read_text(encoding="utf-8")
    for text in ("Per generator × teacher", "Teacher agreement", "<code>plain</code>", "<code>reference</code>",
                 "agrees with the verifier"):
        assert text in html, text


# -- batch APIs per model -------------------------------------------------------------------------------------


def test_two_batch_teachers_submit_every_shard_before_waiting(tmp_path, monkeypatch):
    """An OpenAI-batch and an Anthropic-batch teacher in one build (the local server speaks both documented
    wire formats): each teacher's caller submits a batch per shard, all before the first result is downloaded,
    and each request once."""
    from tests.servers.batch_server import BatchServer

    secret = "sk-test-SECRET-abcdef0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    src = tmp_path / "source.jsonl"
    src.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "response": f"{2 * i}"}) + "\n"
                           for i in range(12)))
    opts = {"state_dir": str(tmp_path / "state"), "poll_interval_s": 0.02}
    with BatchServer(api_key=secret) as srv:
        recipe = {"version": 1, "name": "two-batch-teachers",
                  "source": {"path": str(src), "question": "question", "response": "response"},
                  "teacher": [{"backend": "openai-batch", "model": "gpt-4o-mini", "base_url": srv.openai_url,
                               "options": opts},
                              {"backend": "anthropic-batch", "model": "claude-test", "base_url": srv.anthropic_url,
                               "options": opts}],
                  "output": {"dir": str(tmp_path / "out")}, "cache": {"dir": str(tmp_path / "cache")},
                  "run": {"shard_size": 4}}
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe))
        res = build(load_recipe(path))
        kinds = [e for e, _ in srv.events]
        assert res.rows == 24 and res.rejected == 0
        assert kinds[:6] == ["create"] * 6 and kinds.count("create") == 6, srv.events
        assert srv.counts["openai_batches_created"] == srv.counts["anthropic_batches_created"] == 3
        assert srv.counts["items_submitted"] == 24 and srv.counts["duplicate_items"] == 0
        usage = res.manifest["usage"]
        assert set(usage) == {"critique:openai-batch:gpt-4o-mini", "critique:anthropic-batch:claude-test"}
        assert all(u["calls_made"] == 12 for u in usage.values())
        rows = pq.read_table(res.files).to_pylist()
        assert Counter(r["teacher"] for r in rows) == {"openai-batch:gpt-4o-mini": 12,
                                                       "anthropic-batch:claude-test": 12}


# -- cftdata status of an interrupted fan-out build ----------------------------------------------------------


def test_status_prices_pooled_tokens_per_model(tmp_path):
    """An interrupted build with two generators and two teachers: the running cost prices each model's tokens
    at its own price, and a response critiqued by both teachers counts its tokens once."""
    import subprocess
    import sys
    import time

    import pyarrow as pa

    from cftdata.report.status import build_status

    path = family_recipe(tmp_path, "http://127.0.0.1:9/v1")
    data = yaml.safe_load(path.read_text())
    data["respond"][0]["options"] = {"price": {"input": 1.0, "output": 1.0}}
    data["teacher"] = data["teacher"][:2]  # even $1/$2, three $3/$6 per M tokens
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path)
    staging = recipe.output_dir / ".staging"
    (staging / "pool").mkdir(parents=True)
    rows = [{"id": f"q.{g}.0.{t}", "response_id": f"q.{g}.0", "response_source": f"openai:gen-{g}", "teacher": t,
             "response_input_tokens": 100 if g == "a" else 200, "response_output_tokens": 10 if g == "a" else 20,
             "critique_input_tokens": 1000, "critique_output_tokens": 500}
            for g in ("a", "b") for t in ("even", "three")]
    pq.write_table(pa.Table.from_pylist(rows), staging / "pool" / "pool-00000.parquet")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (staging / "progress.json").write_text(json.dumps({
        "status": "running", "shards_done": 1, "updated": time.time(), "pid": dead.pid,
        "counts": {"source": {"in": 1, "out": 1, "rejected": 0, "seconds": 1.0}}, "recipe": recipe.resolved_dict()}))
    run = build_status(recipe.output_dir)["running"]
    # gen-a: 100 in + 10 out once at $1/$1; gen-b has no price; even: 2000/1000 at $1/$2; three: at $3/$6
    want = (110 * 1.0 + (2000 * 1 + 1000 * 2) + (2000 * 3 + 1000 * 6)) / 1e6
    assert run["cost_usd"] == pytest.approx(want, abs=1e-9)
    assert run["tokens"]["respond"] == {"input": 300, "output": 30}


# -- kill -9 in the middle of a fan-out build, then rerun ----------------------------------------------------


def _cached(cache: Path) -> int:
    """Answers stored (in SQLite or still in a writer's journal)."""
    from cftdata.backends.cache import count_answers

    return sum(count_answers(cache).values())


def test_fan_out_build_killed_then_rerun_makes_only_the_missing_calls(tmp_path, monkeypatch):
    import os
    import signal
    import subprocess
    import sys
    import time

    monkeypatch.setenv(KEY_ENV, "sk-family-test-key")
    with serve(plugins=["tests.servers.panel_critic:register"], latency_s=0.2) as (url, stats):
        path = family_recipe(tmp_path, url)
        data = yaml.safe_load(path.read_text())
        for spec in [*data["respond"], *data["teacher"]]:
            spec["concurrency"] = 2  # slow enough to be killed half way
        path.write_text(yaml.safe_dump(data))
        cache, out = tmp_path / "cache", tmp_path / "out"
        total = (N_QUESTIONS + 1) * 3 + N_QUESTIONS * 3 * len(TEACHERS)  # distinct requests of the build
        proc = subprocess.Popen([sys.executable, "-m", "cftdata.cli", "build", str(path)], cwd=ROOT,
                                env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while _cached(cache) < 25 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the build finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        done = _cached(cache)
        assert 25 <= done < total and not (out / "manifest.json").exists()
        res = build(load_recipe(path))
    # the rerun made exactly the calls that had not been answered, and every row is there once
    assert sum(u["calls_made"] for u in res.manifest["usage"].values()) == total - done
    assert res.rows == N_QUESTIONS * 3 * len(TEACHERS) and res.rejected == 3
    ids = pq.read_table(res.files).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == res.rows


def test_rl_formats_reject_rows_they_cannot_use(tmp_path, server):
    """A prompt without a reference answer, a (question, solution) pair nobody labelled: format rejects."""
    url, _ = server
    q = N_QUESTIONS
    path = family_recipe(tmp_path, url, generators=False, output={"dir": str(tmp_path / "p"), "format": "grpo-prompts"})
    data = yaml.safe_load(path.read_text())
    rows = [json.loads(x) for x in Path(data["source"]["path"]).read_text().splitlines()]
    rows[0]["answer"] = ""
    Path(data["source"]["path"]).write_text("".join(json.dumps(r) + "\n" for r in rows))
    data["teacher"] = [server_model(url, "judge-even", label="even"), server_model(url, "judge-unsure", label="unsure")]
    path.write_text(yaml.safe_dump(data))
    res = build(load_recipe(path))
    assert res.rows == q - 1  # one prompt per question that has a reference answer
    assert res.manifest["rejects_by_reason"] == {"critique:truncated": 2, "format:no_reference_answer": 2,
                                                 "format:same_prompt": q - 1}

    res = build(load_recipe(path, [f"output.dir={tmp_path / 'c'}", "output.format=grpo-critique"]))
    labels = Counter(r["label_source"] for r in pq.read_table(res.files).to_pylist())
    assert labels == {"teacher": q}  # judge-even's verdicts; judge-unsure's rows have no label
    assert res.manifest["rejects_by_reason"] == {"critique:truncated": 2, "format:no_label": q}


@pytest.mark.slow
def test_two_backends_of_the_embedded_model_as_teachers(tmp_path, llama_server):
    """Offline: the bundled model in process and behind the real llama.cpp OpenAI-compatible server, as two
    teachers of one build: each its own backend, cache entries and usage line."""
    short = {"max_tokens": 48, "stop": ["\n\n"], "temperature": 0.3}
    recipe = {
        "version": 1, "name": "two-backends",
        "source": {"path": str(ROOT / "recipes" / "data" / "quickstart.jsonl"), "question": "problem",
                   "answer": "answer", "limit": 2},
        "respond": {"mode": "generate", "backend": "local", "model": "smollm2-135m", "params": short},
        "teacher": [{"backend": "local", "model": "smollm2-135m", "params": short},
                    {"backend": "openai", "model": "smollm2-135m", "base_url": llama_server, "params": short,
                     "options": {"price": {"input": 1.0, "output": 1.0}}}],
        "output": {"dir": str(tmp_path / "out")}, "cache": {"dir": str(tmp_path / "cache")},
    }
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(recipe))
    res = build(load_recipe(path))
    m = res.manifest
    assert m["counts"]["critique"]["in"] == 2 * m["counts"]["respond"]["out"]
    assert set(m["usage"]) == {"respond", "critique:local:smollm2-135m", "critique:openai:smollm2-135m"}
    server = m["usage"]["critique:openai:smollm2-135m"]
    assert server["calls_made"] == m["counts"]["respond"]["out"] and server["input_tokens"] > 0
    assert m["cost"]["critique:openai:smollm2-135m"]["total_usd"] > 0
    assert m["cost"]["critique:local:smollm2-135m"]["total_usd"] is None
