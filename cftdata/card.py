"""The dataset card (README.md): Hub-style YAML metadata and a body saying what was built and how.

:func:`render_card` renders ``templates/card.md.j2`` from a build's manifest. The metadata is what the
Hugging Face Hub accepts for a dataset repo (``license``, ``language``, ``task_categories``, ``tags``,
``size_categories``, ``pretty_name`` and ``configs`` with their ``data_files``); the body holds the
source, the models and their parameters, the exact prompts, the counts per stage, the verdicts, the
verifier agreement, cost, a ``load_dataset`` snippet and the resolved recipe.

The part of the body that describes one build sits between ``<!-- cftdata:config NAME:start -->`` and
``<!-- cftdata:config NAME:end -->`` markers, so that :mod:`cftdata.publish` can merge several builds
(named configs) into one repository card. Secrets are masked (:mod:`cftdata.publish.redact`) before
anything is rendered.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from cftdata.prompts import CRITIQUE_PROMPTS, SOLVE_PROMPTS
from cftdata.prompts.refine import REFINE_PROMPTS
from cftdata.publish.redact import known_secrets, redact, redact_text
from cftdata.sources.corpora import CORPORA

#: The Hub's size categories, smallest first.
SIZE_CATEGORIES = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B",
                   "1B<n<10B", "10B<n<100B", "100B<n<1T", "n>1T")

DEFAULT_CONFIG = "default"
BASE_TAGS = ["critique-fine-tuning", "cft", "math", "synthetic", "cftdata"]


def size_category(n: int) -> str:
    """The Hub ``size_categories`` label for ``n`` rows."""
    bound = 1_000
    for label in SIZE_CATEGORIES[:-1]:
        if n < bound:
            return label
        bound *= 10
    return SIZE_CATEGORIES[-1]


def data_files_pattern(config: str | None) -> str:
    """Where a build's data files live in a repository: ``data/`` for the default config, else ``NAME/``."""
    if not config or config == DEFAULT_CONFIG:
        return "data/train-*.parquet"
    return f"{config}/train-*.parquet"


def source_corpus(manifest: dict[str, Any]):
    """The corpus adapter of the build's source (by name, else by Hub id), or None."""
    src = manifest["recipe"]["source"]
    if src.get("corpus") in CORPORA and src["corpus"] != "generic":
        return CORPORA.get(src["corpus"])
    hub = src.get("hub")
    if hub:
        for name in CORPORA.names():
            c = CORPORA.get(name)
            if c.hub and c.hub.lower() == hub.lower():
                return c
    return None


def source_license(manifest: dict[str, Any]) -> str:
    """The license of the source corpus (``unknown`` for a local file or an unregistered Hub dataset)."""
    corpus = source_corpus(manifest)
    return corpus.license if corpus is not None and corpus.license else "unknown"


def card_metadata(manifest: dict[str, Any], config: str | None = None, pretty_name: str | None = None) -> dict[str, Any]:
    """The YAML metadata block of the card for one build (published as ``config``, default ``default``)."""
    recipe = manifest["recipe"]
    return {
        "license": source_license(manifest),
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": list(BASE_TAGS),
        "size_categories": [size_category(int(manifest.get("rows_out") or 0))],
        "pretty_name": pretty_name or recipe["name"],
        "configs": [{
            "config_name": config or DEFAULT_CONFIG,
            "data_files": [{"split": "train", "path": data_files_pattern(config)}],
        }],
    }


def _template_text(spec: str, registry, manifest: dict[str, Any], role: str) -> tuple[str, str, str]:
    """(label, system, user) of a prompt: recorded in the manifest, a built-in name, or a template file."""
    recorded = (manifest.get("prompts") or {}).get(role)
    if isinstance(recorded, dict) and isinstance(recorded.get("user"), str):
        return spec, recorded.get("system") or "", recorded["user"]
    if spec in registry:
        t = registry.get(spec)
        return spec, t.system, t.user
    candidates = [Path(spec).expanduser()]
    if manifest.get("recipe_file"):
        candidates.append(Path(manifest["recipe_file"]).parent / spec)
    for path in candidates:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and isinstance(data.get("user"), str):
            return f"{spec} (template file)", str(data.get("system") or ""), data["user"]
    return f"{spec} (template file)", "", "(the template file was not readable when this card was rendered)"


def _params(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (spec.get("params") or {}).items() if v not in (None, {}, [])}


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _hub_link(repo: str) -> str:
    return f"[{repo}](https://huggingface.co/datasets/{repo})"


def _source_text(src: dict[str, Any]) -> str:
    if src.get("hub"):
        extra = [f"{k} `{src[k]}`" for k in ("config", "split", "revision") if src.get(k)]
        return _hub_link(src["hub"]) + (f" ({', '.join(extra)})" if extra else "")
    return f"local file `{src.get('path')}`"


def _verdicts(stages: dict[str, Any]) -> list[dict[str, Any]]:
    verdicts = (stages.get("verdict") or {}).get("verdicts") or {}
    total = sum(verdicts.values())
    order = {"right": 0, "wrong": 1, "unknown": 2}
    return [{"verdict": k, "rows": v, "share": _pct(v, total)}
            for k, v in sorted(verdicts.items(), key=lambda kv: (order.get(kv[0], 9), kv[0]))]


def parseable_text(stages: dict[str, Any]) -> str | None:
    """"P of N (x%)": critiques whose verdict the rule could read (right or wrong), of those judged."""
    v = stages.get("verdict") or {}
    total = sum((v.get("verdicts") or {}).values())
    if not total or "parseable" not in v:
        return None
    return f"{v['parseable']} of {total} ({_pct(v['parseable'], total)})"


def _agreement(stages: dict[str, Any]) -> dict[str, Any] | None:
    agr = stages.get("agreement")
    if not agr:
        return None
    table = agr.get("table") or {}
    ratio = agr.get("agreement")
    return {
        "ratio": f"{100 * ratio:.1f}%" if isinstance(ratio, (int, float)) else "n/a",
        "decided": agr.get("decided", 0),
        "undecided": agr.get("undecided", 0),
        "cells": {k: table.get(k, 0) for k in ("right/correct", "right/incorrect", "wrong/correct", "wrong/incorrect")},
        "all": agr.get("all") or {},
        "drop_contradictions": agr.get("drop_contradictions"),
    }


def _models(specs: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The generators or teachers of a recipe role (one mapping or a list), each with its ``label`` and params."""
    out = []
    for spec in specs if isinstance(specs, list) else [specs]:
        label = spec.get("label") or f"{spec.get('backend')}:{spec.get('model')}"
        out.append({**spec, "label": label, "params": _params(spec), "mode": spec.get("mode", "generate")})
    return out


def _prompt_entry(spec: dict[str, Any], registry, manifest: dict[str, Any], role: str, many: bool) -> dict[str, Any]:
    """A prompt section of the card: whose prompt (several models: the label), its name and its text."""
    key = f"{role}:{spec['label']}" if many else role
    label, system, user = _template_text(spec["prompt"], registry, manifest, key)
    return {"who": spec["label"] if many else None, "label": label, "system": system, "user": user}


def _refine_prompt(spec: dict[str, Any] | None, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The refine section of the card (a recipe with ``refine``), or None."""
    if not spec:
        return None
    label, system, user = _template_text(spec["prompt"], REFINE_PROMPTS, manifest, "refine")
    return {"who": f"{spec['backend']}:{spec['model']}", "label": label, "system": system, "user": user}


def pair_rows(stages: dict[str, Any]) -> list[dict[str, Any]]:
    """The generator x teacher table (a build with several of either)."""
    out = []
    for p in (stages.get("verdict") or {}).get("by_pair") or []:
        usd = p.get("critique_usd")
        out.append({**p, "share": _pct(p["right"], p["rows"]), "cost": "n/a" if usd is None else _usd(usd)})
    return out


def panel_view(stages: dict[str, Any]) -> dict[str, Any] | None:
    """The teacher x teacher agreement (and each teacher against the verifier), with percentages."""
    panel = stages.get("panel")
    if not panel:
        return None

    def pct(x: Any) -> str:
        return f"{100 * x:.1f}%" if isinstance(x, (int, float)) else "n/a"

    return {"keep": panel.get("keep"),
            "pairwise": [{**p, "agreement_pct": pct(p.get("agreement"))} for p in panel.get("pairwise") or []],
            "vs_verifier": [{**v, "agreement_pct": pct(v.get("agreement"))} for v in panel.get("vs_verifier") or []]}


def _flat(d: dict[str, Any] | None, skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Key/value rows of a stage summary (nested mappings shown inline)."""
    out = []
    for k, v in (d or {}).items():
        if k in skip:
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{a}: {b}" for a, b in v.items()) or "-"
        out.append((k, v))
    return out


def _usd(x: float) -> str:
    return f"${x:.2f}" if x >= 1 else f"${x:.4g}"


def _cost(manifest: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    usage, cost = manifest.get("usage") or {}, manifest.get("cost") or {}
    rows = []
    for role, u in usage.items():
        c = cost.get(role) or {}
        rows.append({
            "role": role, "requests": u.get("requests", 0), "calls": u.get("calls_made", 0),
            "cache_hits": u.get("cache_hits", 0),
            "input_tokens": u.get("input_tokens", 0) + u.get("input_tokens_from_cache", 0),
            "output_tokens": u.get("output_tokens", 0) + u.get("output_tokens_from_cache", 0),
            "cost": "n/a" if c.get("total_usd") is None else _usd(c["total_usd"]),
        })
    totals = [c["total_usd"] for c in cost.values() if isinstance(c, dict) and c.get("total_usd") is not None]
    if not totals:
        return "n/a (local models or unknown prices)", rows
    partial = len(totals) < len(usage)
    return _usd(sum(totals)) + (" (some roles have no price)" if partial else ""), rows


def _load_snippet(repo_id: str | None, config: str | None) -> str:
    if repo_id:
        args = f'"{repo_id}"' + (f', "{config}"' if config and config != DEFAULT_CONFIG else "")
        return f'from datasets import load_dataset\n\nds = load_dataset({args}, split="train")'
    return ('from datasets import load_dataset\n\n'
            'ds = load_dataset("parquet", data_dir="data", split="train")   # from this build folder\n'
            '# once pushed (cftdata push): load_dataset("<org>/<name>", "<config>", split="train")')


def section_markers(config: str | None) -> tuple[str, str]:
    """The HTML comments around the part of the card body that describes one config."""
    name = config or DEFAULT_CONFIG
    return f"<!-- cftdata:config {name}:start -->", f"<!-- cftdata:config {name}:end -->"


def render_card(manifest: dict[str, Any], *, repo_id: str | None = None, config: str | None = None,
                secrets: tuple[str, ...] = ()) -> str:
    """The README.md of a build: metadata plus body. ``repo_id``/``config`` say where it is published
    (a local build leaves them out); ``secrets`` are extra values to mask (e.g. the Hub token)."""
    secret_values = known_secrets(manifest, secrets)
    manifest = redact(manifest, secret_values)
    config = None if config == DEFAULT_CONFIG else config
    recipe = manifest["recipe"]
    src = recipe["source"]
    resp, teacher = recipe["respond"], recipe["teacher"]
    stages = manifest.get("stages") or {}
    title = repo_id.split("/", 1)[-1] if repo_id else recipe["name"]
    generators_all, teachers_all = _models(resp), _models(teacher)
    teacher_prompts = [_prompt_entry(t, CRITIQUE_PROMPTS, manifest, "teacher", isinstance(teacher, list))
                       for t in teachers_all if t["backend"] not in ("existing", "none")]
    solve_prompts = [_prompt_entry(g, SOLVE_PROMPTS, manifest, "respond", isinstance(resp, list))
                     for g in generators_all if g["mode"] == "generate"]
    total_cost, usage_rows = _cost(manifest)
    verdict_rows = _verdicts(stages)
    corpus = source_corpus(manifest)
    start, end = section_markers(config)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False,
                             trim_blocks=False)
    template = env.from_string(resources.files("cftdata").joinpath("templates/card.md.j2").read_text(encoding="utf-8"))
    text = template.render(
        metadata=yaml.safe_dump(card_metadata(manifest, config, title), sort_keys=False, allow_unicode=True),
        title=title,
        version=manifest["cftdata_version"],
        section_start=start,
        section_end=end,
        config=config,
        name=recipe["name"],
        description=recipe.get("description"),
        source=_source_text(src),
        corpus=src.get("corpus"),
        license=source_license(manifest),
        corpus_hub=corpus.hub if corpus is not None and corpus.hub and not src.get("hub") else None,
        respond=resp,
        respond_params=_params(resp) if isinstance(resp, dict) else {},
        teacher=teacher,
        teacher_params=_params(teacher) if isinstance(teacher, dict) else {},
        generators=generators_all if isinstance(resp, list) else [],
        teachers=teachers_all if isinstance(teacher, list) else [],
        generators_all=generators_all,
        teachers_all=teachers_all,
        by_pair=pair_rows(stages),
        panel=panel_view(stages),
        format=recipe["output"]["format"],
        rows_out=manifest["rows_out"],
        rejected=manifest["rejected"],
        verdicts=verdict_rows,
        verdict_summary=", ".join(f"{r['verdict']} {r['rows']} ({r['share']})" for r in verdict_rows) or "n/a",
        right_ratio=(stages.get("verdict") or {}).get("right_ratio"),
        parseable=parseable_text(stages),
        verdict_constraint=(stages.get("critique") or {}).get("verdict_constraint"),
        verify=stages.get("verify"),
        agreement=_agreement(stages),
        dedup=_flat(stages.get("dedup"), skip=("exact_keys", "band_keys", "lsh_rows", "index_bytes", "index_mb",
                                                "bands", "rows_per_band", "stored_shingle_sets",
                                                "stored_signatures")),
        decontaminate=_flat(stages.get("decontaminate"), skip=("index_bytes", "index_ngrams",
                                                                "benchmark_problems")),
        select=_flat(stages.get("select")),
        total_cost=total_cost,
        usage=usage_rows,
        created_at=manifest["created_at"],
        seconds=manifest["seconds"],
        counts=manifest.get("counts") or {},
        rejects_by_reason=manifest.get("rejects_by_reason") or {},
        teacher_prompts=teacher_prompts,
        solve_prompts=solve_prompts,
        refine_prompt=_refine_prompt(recipe.get("refine"), manifest),
        load_snippet=_load_snippet(repo_id, config),
        repo_id=repo_id,
        recipe_yaml=yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True),
        overrides=manifest.get("overrides") or [],
        recipe_file=manifest.get("recipe_file"),
    )
    return redact_text(text, secret_values)
