"""The dry-run cost of every shipped recipe, against a value computed by hand here.

A dry run is the real build with estimating callers, so these numbers follow from the fixture rows (Hub
sources are pointed at tests/fixtures, as in test_recipes_dry_run.py) and from each recipe's own settings:
which rows reach the teacher (``respond``, ``verify.drop``, ``teacher.backend: none/existing``), ``n``
samples, ``max_tokens`` (the output estimate), list prices ($/M tokens, written out below) and the batch
discount. Input tokens are the rendered prompt's characters / 4 (or tiktoken where its encoding loads),
a response that a dry run does not generate counted as ``max_tokens`` tokens.

When a recipe's numbers change (sizes, prompts, prices), update ``EXPECTED`` from the recipe file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from cftdata.dryrun import dry_run
from cftdata.prompts import CRITIQUE_PROMPTS, SOLVE_PROMPTS
from cftdata.recipe import load_recipe
from tests.conftest import FIXTURES, ROOT, SHARED_DATA, run_cli
from tests.test_recipes_dry_run import RECIPES, offline_overrides

#: (input, output) US dollars per million tokens, from the providers' price pages.
GPT4O = (2.50, 10.00)
GPT4O_MINI = (0.15, 0.60)
CLAUDE_SONNET_4 = (3.00, 15.00)
BATCH = 0.5


@dataclass
class Expect:
    """What a recipe's dry run must report: the rows (question, response) that reach the teacher, its
    prompt, model and price; for generated responses, the generator's calls."""

    fixture: str | None  # None: the recipe's own local source
    question: str = "question"
    response: str = "response"
    teacher_rows: list[int] = field(default_factory=list)  # fixture lines that get a critique
    prompt: str = "cft-paper"
    model: str = "gpt-4o-2024-11-20"
    price: tuple[float, float] | None = GPT4O
    discount: float = 1.0
    max_tokens: int = 3200
    generated: int | None = None  # a response generated with this many max_tokens (not read from the row)
    respond_calls: int = 0
    solve_prompt: str | None = None
    reference: str | None = None  # the fixture field the teacher is shown as the reference (cft-reference)


# webinstruct.yaml and the recipes extending it: the released script's prompt (cft-script)
WEBINSTRUCT = dict(fixture="webinstructsub.jsonl", question="question", response="answer", teacher_rows=[0, 1],
                   prompt="cft-script")
BATCH_CRITIQUE = dict(prompt="cft-batch", discount=BATCH)

EXPECTED: dict[str, Expect] = {
    # local SmolLM2 as generator and teacher: 20 problems, 20 responses, 20 critiques, nothing paid
    "recipes/quickstart.yaml": Expect(None, teacher_rows=list(range(20)), model="smollm2-135m", price=None,
                                      max_tokens=160, generated=256, respond_calls=20, solve_prompt="short",
                                      prompt="cft-reference", reference="answer"),
    "recipes/webinstruct.yaml": Expect(**WEBINSTRUCT),
    # existing critiques re-selected / sampled: no call
    "recipes/webinstruct-cft-reselect.yaml": Expect("webinstruct_cft.jsonl", teacher_rows=[], price=None),
    "recipes/webinstruct-4k.yaml": Expect("webinstruct_cft.jsonl", teacher_rows=[], price=None),
    # verify answer_is and agreement report only: both rows critiqued, Batch API at half price
    "recipes/metamath.yaml": Expect("metamathqa.jsonl", question="query", teacher_rows=[0, 1], **BATCH_CRITIQUE),
    "recipes/metamath-50k.yaml": Expect("metamathqa.jsonl", question="query", teacher_rows=[0, 1], **BATCH_CRITIQUE),
    "recipes/numinamath.yaml": Expect("numinamath_cot.jsonl", question="problem", response="solution",
                                      teacher_rows=[0, 1], **BATCH_CRITIQUE),
    "recipes/numinamath-50k.yaml": Expect("numinamath_cot.jsonl", question="problem", response="solution",
                                          teacher_rows=[0, 1], **BATCH_CRITIQUE),
    # verify.drop [unverifiable]: the proof (line 1, answer "proof") is dropped before the teacher
    "recipes/numinamath15.yaml": Expect("numinamath15.jsonl", question="problem", response="solution",
                                        teacher_rows=[0], **BATCH_CRITIQUE),
    "recipes/ablations/balanced-verdict.yaml": Expect(**WEBINSTRUCT),
    # self-generated responses (vLLM, not paid), each critiqued as if 2048 tokens long
    "recipes/ablations/self-generated-vllm.yaml": Expect(**{**WEBINSTRUCT, "response": "unused"}, generated=2048,
                                                         respond_calls=2, solve_prompt="qwen25-math-cot"),
    # the SFT baselines: "raw" has no teacher at all ($0), "verified" pays the teacher to pick right answers
    "recipes/ablations/sft-raw.yaml": Expect(**{**WEBINSTRUCT, "teacher_rows": []}, price=None),
    "recipes/ablations/sft-verified.yaml": Expect(**WEBINSTRUCT),
    "recipes/ablations/teacher-anthropic.yaml": Expect(**WEBINSTRUCT, model="claude-sonnet-4-20250514",
                                                       price=CLAUDE_SONNET_4),
    # the GPT-4o-mini ablation: the batch system text with the training-format input, Batch API
    "recipes/ablations/teacher-gpt4o-mini.yaml": Expect(**{**WEBINSTRUCT, "prompt": "cft-batch-alpaca"},
                                                        model="gpt-4o-mini", price=GPT4O_MINI, discount=BATCH),
}


def count_tokens(text: str, model: str, backend: str) -> int:
    """tiktoken for OpenAI models when its encoding files load (offline they do not), else characters / 4."""
    if backend.startswith("openai"):
        try:
            import tiktoken

            enc = tiktoken.encoding_for_model(model)
            return len(enc.encode(text, disallowed_special=()))
        except Exception:
            pass
    return (len(text) + 3) // 4


def fixture_rows(e: Expect) -> list[dict]:
    path = FIXTURES / e.fixture if e.fixture else ROOT / "recipes" / "data" / "quickstart.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


#: The critique-data family (docs/family.md): several generators and teachers, refine. Prices written out
#: (generators on self-hosted servers carry options.price 0; the embedded model is not billed).
FAMILY_PRICES = {"gpt-4.1": (2.00, 8.00), "gpt-4o-2024-11-20": GPT4O, "gpt-4.1-mini": (0.40, 1.60),
                 "o4-mini": (1.10, 4.40), "claude-sonnet-4-20250514": CLAUDE_SONNET_4,
                 "claude-3-7-sonnet-20250219": (3.00, 15.00), "claude-3-5-haiku-20241022": (0.80, 4.00)}
FAMILY = {
    # one seed problem, 10 generators x 10 solutions (price 0), 7 teachers x 100 critiques
    "recipes/one-shot-cft.yaml": {"source_rows": 1, "generators": 10, "n": 10, "teachers": 7, "refine": False},
    # 2 fixture problems, 1 student answer each, GPT-4o critiques and refines each
    "recipes/critique-refine.yaml": {"source_rows": 2, "generators": 1, "n": 1, "teachers": 1, "refine": True},
    # reused critiques: no call
    "recipes/verdict-ratio.yaml": {"source_rows": 1, "generators": 0, "n": 0, "teachers": 0, "refine": False},
    # the embedded model: 1 seed x (2 + 2) solutions x 2 teachers; 3 quickstart rows; 20 quickstart rows
    "recipes/family/one-shot-cft-offline.yaml": {"source_rows": 1, "generators": 2, "n": 2, "teachers": 2,
                                                  "refine": False},
    "recipes/family/critique-refine-offline.yaml": {"source_rows": 3, "generators": 1, "n": 1, "teachers": 1,
                                                     "refine": True},
    "recipes/family/verdict-ratio-offline.yaml": {"source_rows": 20, "generators": 1, "n": 1, "teachers": 1,
                                                   "refine": False},
}


def test_every_shipped_recipe_has_an_expected_cost():
    assert sorted({**EXPECTED, **FAMILY}) == RECIPES


def _family_price(spec) -> tuple[float, float] | None:
    if spec.backend == "local":
        return None
    if "price" in spec.options:
        return spec.options["price"]["input"], spec.options["price"]["output"]
    return FAMILY_PRICES[spec.model]


@pytest.mark.parametrize("path", sorted(FAMILY))
def test_family_dry_run_cost_per_model(path, monkeypatch):
    """Calls, tokens and dollars per generator, teacher and refiner, computed here from the source rows, the
    prompts and the written-out prices: every response is critiqued by every teacher (stand-in responses are
    distinct, as the build's responses are), a stand-in counting as its max_tokens."""
    from cftdata.prompts import resolve_prompt
    from cftdata.prompts.refine import REFINE_PROMPTS
    from cftdata.recipe import model_label

    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    e = FAMILY[path]
    recipe = load_recipe(ROOT / path, offline_overrides(path))
    est = dry_run(recipe)
    assert est["counts"]["source"]["out"] == e["source_rows"]
    # the recipe's own local file (quickstart, the seed problem), or the fixture standing for its Hub source
    src = ROOT / recipe.source.path if recipe.source.path.startswith("recipes/") else FIXTURES / "numinamath_cot.jsonl"
    rows = [json.loads(x)["problem"] for x in src.read_text().splitlines()]
    rows = rows[: e["source_rows"]]
    generate = [g for g in recipe.generators if g.mode == "generate"]
    assert len(generate) == e["generators"]
    roles = est["roles"]
    many_g, many_t = isinstance(recipe.respond, list), isinstance(recipe.teacher, list)
    total, responses = 0.0, []
    for g in generate:
        role = roles[f"respond:{model_label(g)}" if many_g else "respond"]
        tpl = resolve_prompt(g.prompt, SOLVE_PROMPTS, lambda p: ROOT / p)
        assert role["calls"] == len(rows) * e["n"] == len(rows) * g.n
        assert role["input_tokens"] == g.n * sum(count_tokens(m["content"], g.model, g.backend)
                                                 for q in rows for m in tpl.render(question=q))
        assert role["output_tokens"] == role["calls"] * g.params.max_tokens
        price = _family_price(g)
        assert role["cost_usd"] == (None if price is None else 0.0)
        responses += [(q, g.params.max_tokens) for q in rows for _ in range(g.n)]
    teachers = [t for t in recipe.teachers if t.backend not in ("existing", "none")]
    assert len(teachers) == e["teachers"]
    for t in teachers:
        role = roles[f"critique:{model_label(t)}" if many_t else "critique"]
        tpl = resolve_prompt(t.prompt, CRITIQUE_PROMPTS, lambda p: ROOT / p)
        tokens_in = sum(count_tokens(m["content"], t.model, t.backend) for q, _ in responses
                        for m in tpl.render(question=q, response="", reference_answer="", reference_solution=""))
        tokens_in += sum(k for _, k in responses)
        assert (role["calls"], role["input_tokens"]) == (len(responses), tokens_in), t.model
        assert role["output_tokens"] == len(responses) * t.params.max_tokens
        price = _family_price(t)
        if price is None:
            assert role["cost_usd"] is None
            continue
        expected = (tokens_in * price[0] + len(responses) * t.params.max_tokens * price[1]) / 1e6
        assert role["cost_usd"] == pytest.approx(expected, abs=1e-6)
        total += expected
    if e["refine"]:
        r, t = recipe.refine, teachers[0]
        role = roles["refine"]
        tpl = resolve_prompt(r.prompt, REFINE_PROMPTS)
        tokens_in = sum(count_tokens(m["content"], r.model, r.backend) for q, _ in responses
                        for m in tpl.render(question=q, response="", critique="", verdict="unknown",
                                            reference_answer="", reference_solution=""))
        tokens_in += sum(k + t.params.max_tokens for _, k in responses)
        assert (role["calls"], role["input_tokens"]) == (len(responses), tokens_in)
        price = _family_price(r)
        if price is not None:
            total += (tokens_in * price[0] + len(responses) * r.params.max_tokens * price[1]) / 1e6
    else:
        assert "refine" not in roles
    assert est["total_cost_usd"] == pytest.approx(round(total, 4), abs=1e-9)
    assert est["cost_complete"]


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_dry_run_cost_matches_the_hand_computation(path, monkeypatch):
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(key, raising=False)  # a dry run never needs a key
    e = EXPECTED[path]
    recipe = load_recipe(ROOT / path, offline_overrides(path))
    est = dry_run(recipe)
    rows = fixture_rows(e)
    question = "problem" if e.fixture is None else e.question

    if e.respond_calls:
        gen = est["roles"]["respond"]
        assert gen["calls"] == e.respond_calls and gen["cost_usd"] is None  # local / vLLM: not billed
        tpl = SOLVE_PROMPTS.get(e.solve_prompt)
        assert gen["input_tokens"] == sum(count_tokens(m["content"], gen["model"], gen["backend"])
                                          for r in rows for m in tpl.render(question=r[question]))
        assert gen["output_tokens"] == e.respond_calls * e.generated
    else:
        assert "respond" not in est["roles"]

    if not e.teacher_rows:  # teacher.backend none (no critique stage) or existing (critiques reused)
        assert "critique" not in est["roles"] and est["total_cost_usd"] == 0
        assert ("critique" in est["counts"]) == (recipe.teacher.backend == "existing")
        return
    crit = est["roles"]["critique"]
    assert crit["calls"] == len(e.teacher_rows)
    tpl = CRITIQUE_PROMPTS.get(e.prompt)
    tokens_in = 0
    for i in e.teacher_rows:
        response = "" if e.generated else rows[i][e.response]
        ref = {"reference_answer": rows[i][e.reference]} if e.reference else {}
        msgs = tpl.render(question=rows[i][question], response=response, **ref)
        tokens_in += sum(count_tokens(m["content"], e.model, crit["backend"]) for m in msgs) + (e.generated or 0)
    assert crit["input_tokens"] == tokens_in
    assert crit["output_tokens"] == len(e.teacher_rows) * e.max_tokens
    if e.price is None:
        assert crit["cost_usd"] in (None, 0) and est["total_cost_usd"] == 0
        return
    expected = (tokens_in * e.price[0] + len(e.teacher_rows) * e.max_tokens * e.price[1]) / 1e6 * e.discount
    assert crit["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert est["total_cost_usd"] == pytest.approx(round(expected, 4), abs=1e-9)
    assert est["cost_complete"]


def test_sft_raw_quotes_no_critique_on_the_command_line(tmp_path):
    """Issue 10/14: the SFT baseline said $0 in its header and the dry run quoted gpt-4o critiques."""
    out = tmp_path / "out"
    res = run_cli("build", "recipes/ablations/sft-raw.yaml", "--dry-run", "--set", f"output.dir={out}",
                  *sum((["--set", o] for o in offline_overrides("recipes/ablations/sft-raw.yaml")), []),
                  env={"OPENAI_API_KEY": ""})
    assert res.returncode == 0, res.stderr
    assert "expected cost: $0.00" in res.stdout and "no model calls" in res.stdout
    assert "critique" not in res.stdout and "gpt-4o" not in res.stdout
    assert not out.exists()  # a dry run never writes into the output folder


def test_dry_run_drops_what_the_build_drops(tmp_path):
    """Duplicates, contaminated questions and verify drops cost nothing in the quote, as in the build."""
    math500 = json.loads((SHARED_DATA / "math500" / "test.jsonl").read_text().splitlines()[7])["problem"]
    rows = [{"question": "Compute 2 plus 2 and explain every step of the sum.", "response": "\\boxed{4}", "answer": "4"},
            {"question": "compute 2 PLUS 2 and explain  every step of the sum.", "response": "\\boxed{4}", "answer": "4"},
            {"question": "Here is a problem. " + math500, "response": "\\boxed{1}", "answer": "1"},
            {"question": "A train leaves at noon at sixty miles per hour; how far has it gone by three?",
             "response": "one hundred eighty", "answer": "180"},
            {"question": "How many legs do five spiders have in total, counting each one?", "response": "\\boxed{41}",
             "answer": "40"}]
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = load_recipe(ROOT / "recipes" / "webinstruct.yaml", [
        f"source.path={src}", "source.hub=null", "source.corpus=generic", "source.response=response",
        "source.answer=answer", "dedup={}", f"decontaminate={{data_dir: {SHARED_DATA}, benchmarks: [math500]}}",
        "verify={answer_rule: boxed, drop: [unverifiable], workers: 1}", f"output.dir={tmp_path / 'out'}"])
    est = dry_run(recipe)
    c = est["counts"]
    assert (c["dedup"]["rejected"], c["decontaminate"]["rejected"], c["verify"]["rejected"]) == (1, 1, 1)
    assert est["roles"]["critique"]["calls"] == 2  # rows 0 and 4 (a wrong answer is still critiqued)
    assert est["rejects_by_reason"] == {"decontaminate:contaminated": 1, "dedup:duplicate": 1,
                                        "verify:verify_unverifiable": 1}
    assert not (tmp_path / "out").exists()


def test_a_dry_run_after_the_build_quotes_only_what_is_not_cached(tmp_path, monkeypatch):
    """The teacher is the loopback OpenAI-compatible fault server: after a real build every critique is in
    the request cache, so the dry run quotes 0 calls and $0 (a half-finished build: only the rest)."""
    from tests.servers.fault_server import serve

    monkeypatch.setenv("CFTDATA_TEST_KEY", "sk-test")
    with serve() as (base_url, stats):
        def recipe(n: int):
            return load_recipe(ROOT / "recipes" / "webinstruct.yaml", [
                *offline_overrides("recipes/webinstruct.yaml"), f"source.limit={n}", f"teacher.base_url={base_url}",
                "teacher.api_key_env=CFTDATA_TEST_KEY", "teacher.params.max_tokens=400", "select=null",
                f"output.dir={tmp_path / 'out'}"])

        before = dry_run(recipe(1))["roles"]["critique"]
        assert (before["calls"], before["cache_hits"]) == (1, 0) and before["cost_usd"] > 0
        from cftdata.pipeline import build

        build(recipe(1))
        assert stats().total == 1
        half = dry_run(recipe(2))["roles"]["critique"]
        assert (half["calls"], half["cache_hits"]) == (1, 1)
        assert stats().total == 1  # the dry runs sent nothing


def test_outputs_are_kept_out_of_a_dry_run(tmp_path):
    """No staging folder, no cache file: nothing at all is written."""
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    res = run_cli("build", "recipes/quickstart.yaml", "--dry-run", "--limit", "2", "--set", f"output.dir={out}",
                  "--set", f"cache.dir={cache}")
    assert res.returncode == 0, res.stderr
    assert not out.exists() and not cache.exists()
