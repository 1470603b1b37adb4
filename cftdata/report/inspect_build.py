"""``cftdata inspect``: one self-contained HTML page (plus the PNG charts) describing a finished build."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cftdata.card import pair_rows, panel_view
from cftdata.report.folder import BuildFolder, load_build, resume_command

QUALITY_TITLES = {"dedup": "Deduplication", "decontaminate": "Decontamination"}
VERIFY_ORDER = ("correct", "incorrect", "unverifiable", "timeout", "error")


@dataclass
class InspectResult:
    """Where the report went."""

    html: Path
    images: list[Path] = field(default_factory=list)
    rows: int = 0
    samples: int = 0


def model_label(spec: dict[str, Any] | list[dict[str, Any]] | None, *, respond: bool = False) -> str:
    """``backend:model`` (or ``label``) of a recipe role; ``existing`` for a corpus's own responses, ``none``
    when off; the models of a list joined with ``, ``."""
    if isinstance(spec, list):
        return ", ".join(model_label(s, respond=respond) for s in spec) or "none"
    if not spec:
        return "none"
    if respond and spec.get("mode") == "existing":
        return "existing (the corpus's responses)"
    if spec.get("backend") in (None, "none"):
        return "none"
    return spec.get("label") or f"{spec.get('backend')}:{spec.get('model')}"


def money(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def ratio(num: float, den: float) -> str:
    return f"{num / den:.1%}" if den else "n/a"


def total_cost(manifest: dict[str, Any], key: str = "total_usd") -> float | None:
    """The sum of a cost column over roles; None when no role has a known price."""
    vals = [c.get(key) for c in (manifest.get("cost") or {}).values() if c.get(key) is not None]
    return round(sum(vals), 6) if vals else None


def total_tokens(manifest: dict[str, Any]) -> tuple[int, int]:
    """(input, output) tokens over every role, answers from the cache included."""
    tin = tout = 0
    for u in (manifest.get("usage") or {}).values():
        tin += int(u.get("input_tokens", 0)) + int(u.get("input_tokens_from_cache", 0))
        tout += int(u.get("output_tokens", 0)) + int(u.get("output_tokens_from_cache", 0))
    return tin, tout


def verify_statuses(summary: dict[str, Any] | None) -> dict[str, int]:
    """Status counts of a ``stages.verify`` summary (``{"statuses": {...}}`` or flat counts)."""
    if not summary:
        return {}
    raw = next((summary[k] for k in ("statuses", "counts") if isinstance(summary.get(k), dict)), None)
    if raw is None:
        raw = {k: summary[k] for k in VERIFY_ORDER if k in summary}
    out = {str(k): int(v) for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool)}
    rank = {k: i for i, k in enumerate(VERIFY_ORDER)}
    return dict(sorted(out.items(), key=lambda kv: (rank.get(kv[0], 99), kv[0])))


def agreement_summary(manifest: dict[str, Any], ds=None) -> dict[str, Any] | None:
    """The 2x2 teacher verdict x verifier table: from the manifest, else computed from the data columns."""
    s = (manifest.get("stages") or {}).get("agreement")
    if s and isinstance(s.get("table"), dict):
        table = {k: int(v) for k, v in s["table"].items()}
        decided = int(s.get("decided", sum(table.values())))
        every = sorted((s.get("all") or {}).items(), key=lambda kv: -kv[1])
        agree = s.get("agreement")
        return {"table": table, "decided": decided, "undecided": int(s.get("undecided") or 0),
                "ratio": f"{agree:.1%}" if isinstance(agree, (int, float)) else "n/a",
                "value": agree, "all": every, "drop": s.get("drop_contradictions"), "computed": False}
    if ds is None or not ds.has("verdict", "verify_status"):
        return None
    pairs: dict[str, int] = {}
    for verdict, counts in ds.group_counts("verdict", "verify_status"):
        for status, n in counts.items():
            pairs[f"{verdict}/{status}"] = n
    table = {f"{v}/{s}": pairs.get(f"{v}/{s}", 0) for v in ("right", "wrong") for s in ("correct", "incorrect")}
    decided = sum(table.values())
    agree = table["right/correct"] + table["wrong/incorrect"]
    value = round(agree / decided, 4) if decided else None
    return {"table": table, "decided": decided, "undecided": sum(pairs.values()) - decided,
            "ratio": ratio(agree, decided), "value": value, "all": sorted(pairs.items(), key=lambda kv: -kv[1]),
            "drop": None, "computed": True}


def _fmt_scalar(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}"
    return str(v)


def quality_sections(manifest: dict[str, Any], removed_from_rejects: dict[str, Any]) -> list[dict[str, Any]]:
    """Dedup / decontamination sections (only for stages the manifest has), whatever their summary keys."""
    out = []
    stages = manifest.get("stages") or {}
    for key, title in QUALITY_TITLES.items():
        s = stages.get(key)
        if not isinstance(s, dict):
            continue
        scalars, tables, removed = [], [], None
        for k, v in s.items():
            if k in ("removed_ids", "removed"):
                continue
            if isinstance(v, dict):
                rows = [(str(a), b) for a, b in v.items() if isinstance(b, (int, float))]
                if rows:
                    tables.append((k.replace("_", " "), sorted(rows, key=lambda r: -r[1])))
            elif isinstance(v, list):
                scalars.append((k.replace("_", " "), f"{len(v):,} items"))
            else:
                scalars.append((k.replace("_", " "), _fmt_scalar(v)))
        ids = s.get("removed_ids") if isinstance(s.get("removed_ids"), list) else None
        if ids is None and isinstance(s.get("removed"), list):
            ids = s["removed"]
        if ids is not None:
            first = [i if isinstance(i, dict) else {"id": str(i), "detail": ""} for i in ids[:20]]
            removed = {"count": len(ids), "first": first}
        elif key in removed_from_rejects:
            removed = removed_from_rejects[key]
        out.append({"key": key, "title": title, "scalars": scalars, "tables": tables, "removed": removed})
    return out


def usage_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    stages = manifest.get("stages") or {}
    for role, u in (manifest.get("usage") or {}).items():
        st = stages.get(role) or {}
        cost = (manifest.get("cost") or {}).get(role) or {}
        rows.append({
            "role": role, "model": f"{st.get('backend', '?')}:{st.get('model', '?')}",
            "requests": u.get("requests"), "calls_made": u.get("calls_made"), "cache_hits": u.get("cache_hits"),
            "input_tokens": int(u.get("input_tokens", 0)) + int(u.get("input_tokens_from_cache", 0)),
            "output_tokens": int(u.get("output_tokens", 0)) + int(u.get("output_tokens_from_cache", 0)),
            "cost_run": money(cost.get("this_run_usd")), "cost_total": money(cost.get("total_usd")),
        })
    return rows


def _sample_view(s: dict[str, Any]) -> dict[str, Any]:
    fields = dict(s["fields"])
    badges = [(k, str(fields.pop(k))) for k in ("verdict", "verify_status") if k in fields]
    order = ("id", "source", "reference_answer", "verify_pred", "verify_gold", "response_source", "teacher",
             "critique_finish_reason", "meta")
    shown = [(k, str(fields[k])) for k in order if k in fields]
    return {"index": s["index"], "question": s["question"], "response": s["response"], "critique": s["critique"],
            "badges": badges, "fields": shown}


def inspect_build(path: str | Path, out: str | Path | None = None, samples: int = 5,
                  seed: int = 0) -> InspectResult:
    """Write ``index.html`` and the charts (PNG) for the build at ``path`` into ``out`` (default
    ``<build>/report``). Raises :class:`~cftdata.errors.CftdataError` if ``path`` is no finished build."""
    folder = load_build(path)
    manifest = folder.require_finished("inspect")
    return _inspect(folder, manifest, Path(out) if out else folder.path / "report", samples, seed)


def _inspect(folder: BuildFolder, manifest: dict[str, Any], out_dir: Path, n_samples: int,
             seed: int) -> InspectResult:
    import yaml

    from cftdata.report import plots
    from cftdata.report.data import Dataset, quantiles, rejects_overview
    from cftdata.report.html import render_html

    plots._require_matplotlib()  # fail before any work when matplotlib is missing
    recipe = manifest.get("recipe") or {}
    fmt = (recipe.get("output") or {}).get("format")
    ds = Dataset(folder.data_files, fmt)
    stages = manifest.get("stages") or {}
    counts = manifest.get("counts") or {}

    crit, resp, ques = ds.lengths("critique"), ds.lengths("response"), ds.lengths("question")
    crit_tok = ds.int_column("critique_output_tokens")
    length_rows = [("critique (characters)", int(crit.size), quantiles(crit)),
                   ("response (characters)", int(resp.size), quantiles(resp)),
                   ("question (characters)", int(ques.size), quantiles(ques))]
    if crit_tok.size:
        length_rows.append(("critique (output tokens)", int(crit_tok.size), quantiles(crit_tok)))

    groups = ds.group_counts("source", "verdict")
    if not groups and stages.get("verdict", {}).get("verdicts"):
        groups = [("all (from the manifest)", {k: int(v) for k, v in stages["verdict"]["verdicts"].items()})]
    verdict_cats = [c for c in ("right", "wrong", "unknown") if any(c in g for _, g in groups)]
    verdict_cats += sorted({c for _, g in groups for c in g} - set(verdict_cats))
    verdict_groups = [{"name": name, "counts": g, "total": sum(g.values()),
                       "right_ratio": ratio(g.get("right", 0), g.get("right", 0) + g.get("wrong", 0))}
                      for name, g in groups]

    agreement = agreement_summary(manifest, ds)
    statuses = verify_statuses(stages.get("verify"))
    if not statuses and ds.has("verify_status"):
        statuses = {k: v for _, g in ds.group_counts("verify_status", "verify_status") for k, v in g.items()}
    verify = None
    if statuses:
        n = sum(statuses.values())
        extra = [(k, v) for k, v in (stages.get("verify") or {}).items() if isinstance(v, str)]
        verify = {"rows": [(k, v, ratio(v, n)) for k, v in statuses.items()], "extra": extra}

    overview = rejects_overview(folder.rejects_file)
    by_reason = {k: int(v) for k, v in (manifest.get("rejects_by_reason") or {}).items()}
    rejects = [{"reason": k, "count": v, "example": overview["examples"].get(k, "")}
               for k, v in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))]

    images: dict[str, tuple[bytes, str]] = {
        "stages": (plots.stage_funnel(counts), "Rows in, out and rejected per stage"),
        "critique_length": (plots.length_histogram(crit, "Critique length"), "Histogram of critique lengths"),
        "response_length": (plots.length_histogram(resp, "Response length"), "Histogram of response lengths"),
    }
    if groups:
        images["verdict_by_source"] = (plots.stacked_ratio(groups, "Verdict share by source"),
                                       "Teacher verdict share by source")
    if by_reason:
        images["rejects"] = (plots.bar_counts(by_reason, "Rejected rows by stage:reason"), "Rejects by reason")

    sample_rows = [_sample_view(s) for s in ds.sample(n_samples, seed)]
    src_in = (counts.get("source") or {}).get("in")
    verdicts = (stages.get("verdict") or {}).get("verdicts") or {}
    tin, tout = total_tokens(manifest)
    calls = sum(int(u.get("calls_made", 0)) for u in (manifest.get("usage") or {}).values())
    hits = sum(int(u.get("cache_hits", 0)) for u in (manifest.get("usage") or {}).values())
    kpis = [
        {"label": "rows written", "value": f"{manifest.get('rows_out', ds.rows):,}",
         "sub": f"from {src_in:,} source rows" if isinstance(src_in, int) else ""},
        {"label": "rejected", "value": f"{manifest.get('rejected', 0):,}",
         "sub": (f"top: {rejects[0]['reason']}" if rejects else "none")},
    ]
    if verdicts:
        right, wrong = int(verdicts.get("right", 0)), int(verdicts.get("wrong", 0))
        kpis.append({"label": "verdict right", "value": ratio(right, right + wrong),
                     "sub": " · ".join(f"{k} {v:,}" for k, v in verdicts.items())})
    if agreement:
        kpis.append({"label": "teacher/verifier agree", "value": agreement["ratio"],
                     "sub": f"on {agreement['decided']:,} decided rows"})
    if statuses:
        kpis.append({"label": "verified correct", "value": ratio(statuses.get("correct", 0), sum(statuses.values())),
                     "sub": f"{statuses.get('incorrect', 0):,} incorrect"})
    q = quantiles(crit)
    if q:
        kpis.append({"label": "median critique", "value": f"{q['p50']:,} chars", "sub": f"p90 {q['p90']:,}"})
    kpis += [
        {"label": "cost", "value": money(total_cost(manifest)),
         "sub": f"this run {money(total_cost(manifest, 'this_run_usd'))}"},
        {"label": "tokens", "value": f"{tin + tout:,}", "sub": f"{calls:,} calls, {hits:,} from cache"},
    ]

    status = str(manifest.get("status", "complete"))
    if folder.running:
        status += " (a newer build is running or was interrupted in .staging/)"
    context = {
        "name": folder.name, "path": str(folder.path), "description": recipe.get("description"),
        "status": status, "created_at": manifest.get("created_at"), "seconds": manifest.get("seconds"),
        "format": fmt or "?", "generator": model_label(recipe.get("respond"), respond=True),
        "teacher": model_label(recipe.get("teacher")), "version": manifest.get("cftdata_version", "?"),
        "kpis": kpis, "stage_rows": [{"name": k, **v} for k, v in counts.items()],
        "length_rows": length_rows, "verdict_groups": verdict_groups, "verdict_cats": verdict_cats,
        "agreement": agreement, "verify": verify, "rejects": rejects,
        "family": {"by_pair": pair_rows(stages), "panel": panel_view(stages)},
        "quality": quality_sections(manifest, overview["removed"]),
        "usage_rows": usage_rows(manifest), "samples": sample_rows, "rows": ds.rows, "seed": seed,
        "resume": resume_command(manifest),
        "recipe_yaml": yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True),
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    page = render_html(context, images)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (png, _alt) in images.items():
        p = out_dir / f"{name}.png"
        p.write_bytes(png)
        written.append(p)
    html_path = out_dir / "index.html"
    html_path.write_text(page, encoding="utf-8")
    return InspectResult(html=html_path, images=written, rows=ds.rows, samples=len(sample_rows))
