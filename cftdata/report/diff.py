"""``cftdata diff``: two finished builds side by side (two teachers, two prompts, two temperatures...).

The comparison reads the manifests; only a critique length missing from a manifest is computed from the
data (one column). Recipe differences come from flattening both resolved recipes into dotted key paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cftdata.report.folder import BuildFolder, flatten, load_build
from cftdata.report.inspect_build import (
    agreement_summary,
    model_label,
    total_cost,
    verify_statuses,
)

ABSENT = "(absent)"
GROUPS = ("build", "models", "rows", "rejects", "verdicts", "critique", "usage", "cost", "agreement", "verify",
          "dedup", "decontaminate", "time")


@dataclass
class Metric:
    """One line of the comparison: a name and the value in each build (numbers stay numbers)."""

    name: str
    a: Any
    b: Any
    group: str = ""

    @property
    def differs(self) -> bool:
        return self.a != self.b

    @property
    def delta(self) -> str:
        """``b - a`` (and the relative change) for two numbers, else ``""``."""
        a, b = self.a, self.b
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b)) or a == b:
            return ""
        d = b - a
        text = f"{d:+,}" if isinstance(d, int) else f"{d:+,.4g}"
        return text + (f" ({d / a:+.0%})" if a else "")


@dataclass
class BuildDiff:
    """The comparison of build ``a`` with build ``b``."""

    a: Path
    b: Path
    labels: tuple[str, str]
    metrics: list[Metric] = field(default_factory=list)
    recipe: list[tuple[str, Any, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": str(self.a), "b": str(self.b),
            "metrics": [{"group": m.group, "metric": m.name, "a": m.a, "b": m.b, "differs": m.differs}
                        for m in self.metrics],
            "recipe_diff": [{"key": k, "a": va, "b": vb} for k, va, vb in self.recipe],
        }


def _critique_chars(folder: BuildFolder, manifest: dict[str, Any]) -> dict[str, Any]:
    out = ((manifest.get("stages") or {}).get("output") or {}).get("critique_chars")
    if out and "mean" in out and "p50" in out:
        return {"mean": out["mean"], "median": out["p50"]}
    from cftdata.report.data import Dataset, quantiles

    q = quantiles(Dataset(folder.data_files, manifest["recipe"].get("output", {}).get("format")).lengths("critique"))
    return {"mean": q["mean"], "median": q["p50"]} if q else {"mean": None, "median": None}


def summarize(folder: BuildFolder) -> dict[str, tuple[str, Any]]:
    """metric name -> (group, value) for one finished build, in display order."""
    m = folder.require_finished("diff")
    recipe = m.get("recipe") or {}
    stages = m.get("stages") or {}
    out: dict[str, tuple[str, Any]] = {}

    def put(group: str, name: str, value: Any) -> None:
        out[name] = (group, value)

    put("build", "name", recipe.get("name"))
    put("build", "created_at", m.get("created_at"))
    put("build", "status", m.get("status"))
    put("models", "generator", model_label(recipe.get("respond"), respond=True))
    put("models", "teacher", model_label(recipe.get("teacher")))
    teachers = recipe.get("teacher") or {}
    put("models", "teacher prompt", ", ".join(t.get("prompt", "?") for t in teachers) if isinstance(teachers, list)
        else teachers.get("prompt"))
    put("models", "format", (recipe.get("output") or {}).get("format"))
    put("rows", "source rows", ((m.get("counts") or {}).get("source") or {}).get("in"))
    put("rows", "rows out", m.get("rows_out"))
    put("rows", "rejected", m.get("rejected"))
    for reason, n in (m.get("rejects_by_reason") or {}).items():
        put("rejects", f"rejects {reason}", n)
    verdicts = (stages.get("verdict") or {}).get("verdicts") or {}
    for v in ("right", "wrong", "unknown"):
        put("verdicts", f"verdict {v}", int(verdicts.get(v, 0)))
    for v, n in verdicts.items():
        if v not in ("right", "wrong", "unknown"):
            put("verdicts", f"verdict {v}", n)
    right, wrong = int(verdicts.get("right", 0)), int(verdicts.get("wrong", 0))
    put("verdicts", "right ratio (right/decided)", round(right / (right + wrong), 4) if right + wrong else None)
    crit = _critique_chars(folder, m)
    put("critique", "critique chars mean", crit["mean"])
    put("critique", "critique chars median", crit["median"])
    for role, u in (m.get("usage") or {}).items():
        put("usage", f"{role} input tokens",
            int(u.get("input_tokens", 0)) + int(u.get("input_tokens_from_cache", 0)))
        put("usage", f"{role} output tokens",
            int(u.get("output_tokens", 0)) + int(u.get("output_tokens_from_cache", 0)))
        put("usage", f"{role} model calls", u.get("calls_made"))
    for role, c in (m.get("cost") or {}).items():
        put("cost", f"{role} cost usd", c.get("total_usd"))
    put("cost", "total cost usd", total_cost(m))
    put("cost", "cost this run usd", total_cost(m, "this_run_usd"))
    agree = agreement_summary(m)
    if agree:
        put("agreement", "teacher/verifier agreement", agree["value"])
        for k, n in agree["table"].items():
            put("agreement", f"agreement {k}", n)
    for status, n in verify_statuses(stages.get("verify")).items():
        put("verify", f"verify {status}", n)
    for key, fields in (("dedup", ("duplicates", "exact_duplicates", "near_duplicates")),
                        ("decontaminate", ("contaminated",))):
        s = stages.get(key)
        if isinstance(s, dict):
            for f in fields:
                if f in s:
                    put(key, f"{key} {f}", s[f])
    put("time", "seconds", m.get("seconds"))
    return out


def _labels(a: Path, b: Path) -> tuple[str, str]:
    if a.name != b.name:
        return a.name, b.name
    return str(a), str(b)


def diff_builds(path_a: str | Path, path_b: str | Path) -> BuildDiff:
    """Compare two finished builds (a :class:`~cftdata.errors.CftdataError` if either is not one)."""
    fa, fb = load_build(path_a), load_build(path_b)
    sa, sb = summarize(fa), summarize(fb)
    result = BuildDiff(fa.path, fb.path, _labels(fa.path, fb.path))
    names = list(sa) + [k for k in sb if k not in sa]
    rank = {g: i for i, g in enumerate(GROUPS)}
    names.sort(key=lambda k: rank.get((sa.get(k) or sb[k])[0], len(GROUPS)))  # stable: keeps order in a group
    for name in names:
        group = (sa.get(name) or sb.get(name))[0]
        va = sa[name][1] if name in sa else (0 if name.startswith("rejects ") else ABSENT)
        vb = sb[name][1] if name in sb else (0 if name.startswith("rejects ") else ABSENT)
        result.metrics.append(Metric(name, va, vb, group))
    ra, rb = flatten(fa.manifest["recipe"]), flatten(fb.manifest["recipe"])
    for key in list(ra) + [k for k in rb if k not in ra]:
        va, vb = ra.get(key, ABSENT), rb.get(key, ABSENT)
        if va != vb:
            result.recipe.append((key, va, vb))
    return result


def _show(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.1f}"
    return str(v)


def format_plain(d: BuildDiff) -> str:
    """A fixed-width text table (for pipes, logs and CI); ``*`` marks lines that differ."""
    la, lb = d.labels
    rows = [("", "metric", la, lb, "b - a")]
    rows += [("*" if m.differs else " ", m.name, _show(m.a), _show(m.b), m.delta) for m in d.metrics]
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f"diff  a = {d.a}  b = {d.b}", ""]
    for r in rows:
        lines.append(f"{r[0]:<{w[0]}} {r[1]:<{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}  {r[4]}".rstrip())
    lines.append("")
    if d.recipe:
        lines.append(f"recipe keys that differ ({len(d.recipe)}):")
        kw = max(len(k) for k, _, _ in d.recipe)
        for k, va, vb in d.recipe:
            lines.append(f"  {k:<{kw}}  {_show(va)}  ->  {_show(vb)}")
    else:
        lines.append("recipes: identical")
    return "\n".join(lines) + "\n"


def print_rich(d: BuildDiff, console=None) -> None:
    """The same comparison as a rich table (for a terminal)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    la, lb = d.labels
    table = Table(title=escape(f"a = {d.a}   b = {d.b}"), title_justify="left", show_lines=False)
    table.add_column("metric", style="bold", no_wrap=True)
    table.add_column(escape(la), justify="right")
    table.add_column(escape(lb), justify="right")
    table.add_column("b - a", justify="right", style="cyan")
    group = None
    for m in d.metrics:
        if group is not None and m.group != group:
            table.add_section()
        group = m.group
        style = "yellow" if m.differs else None
        table.add_row(escape(m.name), escape(_show(m.a)), escape(_show(m.b)), m.delta, style=style)
    console.print(table)
    if d.recipe:
        rt = Table(title=f"recipe keys that differ ({len(d.recipe)})", title_justify="left")
        rt.add_column("key", style="bold", no_wrap=True)
        rt.add_column(escape(la))
        rt.add_column(escape(lb))
        for k, va, vb in d.recipe:
            rt.add_row(escape(k), escape(_show(va)), escape(_show(vb)))
        console.print(rt)
    else:
        console.print("recipes: identical")
