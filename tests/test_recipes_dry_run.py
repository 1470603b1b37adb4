"""Every shipped recipe passes `cftdata build --dry-run` offline: prompts render, calls and cost are estimated.
Hub sources are pointed at fixtures that follow ../shared/reference/corpora.md, and decontamination at the real
benchmark files in ../shared/data (a dry run runs the real stages). Exact costs: tests/test_dry_run_costs.py."""

from __future__ import annotations

import re

import pytest

from cftdata.dryrun import dry_run
from cftdata.recipe import load_recipe
from tests.conftest import FIXTURES, ROOT, SHARED_DATA, run_cli

FIXTURE_FOR = {
    "webinstruct": "webinstructsub.jsonl",
    "webinstruct-cft": "webinstruct_cft.jsonl",
    "metamath": "metamathqa.jsonl",
    "numinamath": "numinamath_cot.jsonl",
    "numinamath15": "numinamath15.jsonl",
}
RECIPES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "recipes").rglob("*.yaml")
                 if "prompts" not in p.relative_to(ROOT).parts)  # recipes/prompts/: prompt templates


def offline_overrides(path: str) -> list[str]:
    r = load_recipe(ROOT / path)
    out = []
    if r.source.hub is not None:
        out += [f"source.path={FIXTURES / FIXTURE_FOR[r.source.corpus]}", "source.hub=null"]
    if r.decontaminate is not None:
        out.append(f"decontaminate.data_dir={SHARED_DATA}")
    return out


@pytest.mark.parametrize("path", RECIPES)
def test_recipe_dry_run_offline(path):
    res = run_cli("build", path, "--dry-run", *sum((["--set", o] for o in offline_overrides(path)), []))
    assert res.returncode == 0, res.stderr
    assert "expected cost: $" in res.stdout
    r = load_recipe(ROOT / path)
    if any(t.backend not in ("existing", "none") for t in r.teachers):  # one teacher, or several (critique:<label>)
        assert re.search(r"--- first critique(:\S+)? prompt ---", res.stdout)
        assert "Conclusion: right/wrong [END]" in res.stdout
    if (all(t.backend in ("openai", "openai-batch", "anthropic") for t in r.teachers)
            and all(g.mode == "existing" for g in r.generators)):
        cost = float(re.search(r"expected cost: \$([0-9.]+)", res.stdout).group(1))
        assert cost > 0 or "n/a" not in res.stdout


def test_batch_discount_halves_the_estimate():
    path = ROOT / "recipes" / "numinamath.yaml"
    ov = offline_overrides("recipes/numinamath.yaml")
    batch = dry_run(load_recipe(path, ov))
    online = dry_run(load_recipe(path, [*ov, "teacher.backend=openai"]))
    b, o = batch["roles"]["critique"], online["roles"]["critique"]
    assert b["calls"] == o["calls"] == 2 and b["input_tokens"] == o["input_tokens"]
    assert b["cost_usd"] == pytest.approx(o["cost_usd"] / 2, abs=1e-6)  # costs are rounded to 6 decimals
    # gpt-4o-2024-11-20 at $2.50 / $10 per million tokens, 3200 output tokens per call (max_tokens bound)
    assert o["cost_usd"] == pytest.approx((o["input_tokens"] * 2.5 + 2 * 3200 * 10) / 1e6, abs=1e-6)


def test_dry_run_needs_no_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    res = run_cli("build", "recipes/webinstruct.yaml", "--dry-run",
                  *sum((["--set", o] for o in offline_overrides("recipes/webinstruct.yaml")), []),
                  env={"OPENAI_API_KEY": ""})
    assert res.returncode == 0 and "openai:gpt-4o-2024-11-20: 2 calls" in res.stdout


def test_price_override_in_recipe():
    path = ROOT / "recipes" / "webinstruct.yaml"
    ov = [*offline_overrides("recipes/webinstruct.yaml"), "teacher.model=my-finetune",
          "teacher.options={price: {input: 1.0, output: 2.0}}"]
    est = dry_run(load_recipe(path, ov))
    c = est["roles"]["critique"]
    assert c["cost_usd"] == pytest.approx((c["input_tokens"] * 1.0 + c["output_tokens"] * 2.0) / 1e6, abs=1e-6)


def test_grid_dry_run_lists_each_variant():
    res = run_cli("build", "recipes/quickstart.yaml", "--dry-run", "--limit", "2",
                  "--grid", "teacher.model=gpt-4o-2024-11-20,gpt-4o-mini", "--set", "teacher.backend=openai")
    assert res.returncode == 0, res.stderr
    assert "== grid: teacher.model=gpt-4o-2024-11-20" in res.stdout and "== grid: teacher.model=gpt-4o-mini" in res.stdout
