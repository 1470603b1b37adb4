"""The dataset card (README.md): Hub-style YAML metadata and a body saying what was built and how."""

from __future__ import annotations

from importlib import resources
from typing import Any

import jinja2
import yaml

from cftdata.prompts import CRITIQUE_PROMPTS, SOLVE_PROMPTS
from cftdata.sources.corpora import CORPORA


def size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < bound:
            return label
    return "n>10M"


def card_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    recipe = manifest["recipe"]
    corpus = CORPORA.get(recipe["source"]["corpus"]) if recipe["source"]["corpus"] in CORPORA else None
    meta: dict[str, Any] = {}
    if corpus and corpus.license:
        meta["license"] = corpus.license
    meta.update({
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["critique-fine-tuning", "cft", "math", "synthetic", "cftdata"],
        "size_categories": [size_category(manifest["rows_out"])],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
    })
    return meta


def _prompt(spec: str, registry):
    if spec in registry:
        t = registry.get(spec)
        return t.system, t.user
    return "(custom template file)", spec


def render_card(manifest: dict[str, Any]) -> str:
    recipe = manifest["recipe"]
    src = recipe["source"]
    resp, teacher = recipe["respond"], recipe["teacher"]
    stages = manifest.get("stages", {})
    verdicts = stages.get("verdict", {}).get("verdicts", {})
    t_sys, t_user = _prompt(teacher["prompt"], CRITIQUE_PROMPTS)
    solve = None
    if resp["mode"] == "generate":
        s_sys, s_user = _prompt(resp["prompt"], SOLVE_PROMPTS)
        solve = (f"System: {s_sys}\n" if s_sys else "") + f"User: {s_user}"
    cost = manifest.get("cost", {})
    total = [c["total_usd"] for c in cost.values() if c.get("total_usd") is not None]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    template = env.from_string(resources.files("cftdata").joinpath("templates/card.md.j2").read_text())
    return template.render(
        metadata=yaml.safe_dump(card_metadata(manifest), sort_keys=False),
        name=recipe["name"],
        version=manifest["cftdata_version"],
        description=recipe.get("description"),
        source=src.get("hub") or src.get("path"),
        responses=("the corpus's own answers" if resp["mode"] == "existing"
                   else f"{resp['n']} sample(s) per question from {resp['backend']}:{resp['model']} "
                        f"with `{ {k: v for k, v in resp['params'].items() if v not in (None, {})} }`"),
        teacher=f"{teacher['backend']}:{teacher['model']}",
        teacher_params={k: v for k, v in teacher["params"].items() if v not in (None, {})},
        format=recipe["output"]["format"],
        rows_out=manifest["rows_out"],
        rejected=manifest["rejected"],
        verdicts=", ".join(f"{k}: {v}" for k, v in sorted(verdicts.items())) or "n/a",
        cost=f"${sum(total):.4f}" if total else "n/a (local models or unknown prices)",
        created_at=manifest["created_at"],
        seconds=manifest["seconds"],
        counts=manifest["counts"],
        rejects_by_reason=manifest["rejects_by_reason"],
        teacher_prompt_name=teacher["prompt"],
        teacher_system=t_sys,
        teacher_user=t_user,
        solve_prompt_name=resp["prompt"],
        solve_prompt=solve,
        data_dir="data",
        recipe_yaml=yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True),
    )
