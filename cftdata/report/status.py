"""``cftdata status``: what a build folder holds: a finished build, or one running / interrupted in ``.staging/``.

For a running or interrupted build it reads ``.staging/progress.json`` (written after every shard:
``{"status", "shards_done", "counts": {stage: {in, out, rejected, seconds}}, "updated"}``, plus any of
``recipe_file``, ``overrides``, ``limit``, ``sample``, ``recipe``, ``total``, ``pid``, ``usage``, ``cost``
when the pipeline records them) and the parquet footers of the pool files, never their data. The
request cache is opened read-only.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from cftdata.backends.cache import count_answers
from cftdata.report.folder import BuildFolder, load_build, resume_command

TOTAL_KEYS = ("total", "total_rows", "rows_total", "source_rows")
TOKEN_COLUMNS = {"respond": ("response_input_tokens", "response_output_tokens"),
                 "critique": ("critique_input_tokens", "critique_output_tokens")}
ROLE_SPEC = {"respond": "respond", "critique": "teacher"}


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _build_processes() -> list[int] | None:
    """Pids of ``cftdata build`` processes on this machine (None where /proc cannot be read)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode("utf-8", "replace") for a in argv]
        if "build" in words and any("cftdata" in w for w in words[:4]):
            pids.append(int(entry.name))
    return pids


def _liveness(folder: BuildFolder) -> tuple[str, str]:
    """(state, why): ``running`` / ``interrupted`` / ``running or interrupted``."""
    from cftdata.buildlock import LOCK_NAME, is_locked

    owner = is_locked(folder.path)
    if owner is not None:  # the build's lock is the truth (a pid in progress.json may have been reused)
        return "running", f"process {owner.get('pid', '?')} holds the folder's build lock"
    if (folder.path / LOCK_NAME).exists():
        return "interrupted", "the build that held the folder's lock is gone"
    prog = folder.progress or {}
    pid = prog.get("pid")
    if isinstance(pid, int) and Path("/proc").is_dir():
        alive = Path(f"/proc/{pid}").exists()
        return ("running", f"process {pid} is alive") if alive else ("interrupted", f"process {pid} is gone")
    pids = _build_processes()
    if pids == []:
        return "interrupted", "no `cftdata build` process runs on this machine"
    if pids:
        return "running or interrupted", f"`cftdata build` running as pid {', '.join(map(str, pids[:5]))}"
    return "running or interrupted", "cannot see processes here"


def _last_activity(staging: Path, progress: dict[str, Any]) -> float | None:
    times = [float(progress["updated"])] if isinstance(progress.get("updated"), (int, float)) else []
    try:
        for p in staging.rglob("*"):
            times.append(p.stat().st_mtime)
    except OSError:
        pass
    return max(times) if times else None


#: The column naming each row's model, per role (a build with several generators or teachers).
LABEL_COLUMNS = {"respond": "response_source", "critique": "teacher"}


def _pool_stats(staging: Path) -> dict[str, Any]:
    """Rows and token sums of the finished pool files (footers and a few columns only): per role, and per model
    (``<role>:<label>``, from the row's generator or teacher). A response critiqued by several teachers sits in
    several rows: its tokens count once (``response_id``)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted((staging / "pool").glob("pool-*.parquet"))
    rows = 0
    tokens: dict[str, list[int]] = {}
    by_model: dict[str, list[int]] = {}
    for f in files:
        try:
            pf = pq.ParquetFile(f)
            rows += pf.metadata.num_rows
            names = set(pf.schema_arrow.names)
            for role, cols in TOKEN_COLUMNS.items():
                if not set(cols) <= names:
                    continue
                label = LABEL_COLUMNS[role] if LABEL_COLUMNS[role] in names else None
                once = "response_id" if role == "respond" and "response_id" in names else None
                t = pf.read(columns=[*cols, *([label] if label else []), *([once] if once else [])])
                if once:  # one row per response: the first of its critiques
                    seen: set = set()
                    t = t.take([i for i, r in enumerate(t.column(once).to_pylist())
                                if not (r in seen or seen.add(r))])
                acc = tokens.setdefault(role, [0, 0])
                for i, c in enumerate(cols):
                    acc[i] += int(pc.sum(t.column(c)).as_py() or 0)
                if label:
                    for g in t.group_by(label).aggregate([(c, "sum") for c in cols]).to_pylist():
                        m = by_model.setdefault(f"{role}:{g[label]}", [0, 0])
                        m[0] += int(g[f"{cols[0]}_sum"] or 0)
                        m[1] += int(g[f"{cols[1]}_sum"] or 0)
        except Exception:  # a pool file being written right now
            continue
    return {"files": len(files), "rows": rows, "tokens": {r: {"input": v[0], "output": v[1]} for r, v in tokens.items()},
            "by_model": {r: {"input": v[0], "output": v[1]} for r, v in by_model.items()}}


def _recipe_from(info: dict[str, Any]):
    """A validated Recipe from a progress/manifest record (its ``recipe``, or its recipe file + overrides)."""
    try:
        if isinstance(info.get("recipe"), dict):
            from cftdata.recipe import validate_recipe

            return validate_recipe(info["recipe"], origin="progress.json")
        rf = info.get("recipe_file")
        if rf and Path(rf).is_file():
            from cftdata.recipe import load_recipe

            return load_recipe(rf, list(info.get("overrides") or []))
    except Exception:  # the recipe changed or no longer validates: no price then
        return None
    return None


def _cost_of(recipe, pool: dict[str, Any]) -> float | None:
    """Dollars of the pooled rows' tokens: per role, or per model when the recipe lists several."""
    from cftdata.backends.pricing import cost_usd
    from cftdata.recipe import model_label

    priced: list[tuple[Any, dict[str, int]]] = []
    for role, t in pool["tokens"].items():
        spec = getattr(recipe, ROLE_SPEC.get(role, role), None)
        if isinstance(spec, list):  # several models: each label's tokens at its model's price
            priced += [(s, pool.get("by_model", {}).get(f"{role}:{model_label(s)}")) for s in spec]
        elif spec is not None:
            priced.append((spec, t))
    total, known = 0.0, False
    for spec, t in priced:
        if not t:
            continue
        try:
            c = cost_usd(spec, t["input"], t["output"])
        except Exception:
            c = None
        if c is not None:
            total, known = total + c, True
    return round(total, 6) if known else None


def cache_path(*infos: dict[str, Any] | None) -> tuple[Path | None, str]:
    """The request cache file a build uses, and where that came from."""
    for info in infos:
        if not info:
            continue
        if "cache" in info and info["cache"] is None and "recipe" in info:
            return None, "the request cache was disabled for this build"
        if isinstance(info.get("cache"), str):
            return Path(info["cache"]).expanduser() / "requests.sqlite", "manifest"
        rc = ((info.get("recipe") or {}).get("cache") or {}) if isinstance(info.get("recipe"), dict) else {}
        if rc.get("enabled") is False:
            return None, "the request cache was disabled for this build"
        if rc.get("dir"):
            return Path(rc["dir"]).expanduser() / "requests.sqlite", "recipe"
    env = os.environ.get("CFTDATA_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "requests.sqlite", "$CFTDATA_CACHE_DIR"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cftdata" / "requests.sqlite", "default location"


def cache_answers(path: Path | None) -> dict[str, Any]:
    """How many answers the cache holds, per model (its table and journals; read-only, never creates it)."""
    if path is None:
        return {"path": None, "answers": None}
    out: dict[str, Any] = {"path": str(path), "answers": None}
    if not path.is_file():
        out["note"] = "does not exist yet"
        return out
    try:
        counts = count_answers(path.parent)  # the table and the journals of running (or killed) builds
    except sqlite3.Error as e:
        out["note"] = f"cannot be read ({e})"
        return out
    out["by_model"] = dict(sorted(counts.items(), key=lambda r: -r[1]))
    out["answers"] = sum(out["by_model"].values())
    return out


def _stage_rows(counts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"stage": k, "in": v.get("in", 0), "out": v.get("out", 0), "rejected": v.get("rejected", 0),
             "seconds": v.get("seconds", 0.0)} for k, v in counts.items()]


def build_status(path: str | Path) -> dict[str, Any]:
    """Everything ``cftdata status`` shows, as a JSON-able dict."""
    folder = load_build(path)
    now = time.time()
    status: dict[str, Any] = {"path": str(folder.path), "name": folder.name}
    m = folder.manifest
    if m is not None:
        status["finished"] = {
            "status": m.get("status", "complete"), "created_at": m.get("created_at"),
            "rows_out": m.get("rows_out"), "rejected": m.get("rejected"), "seconds": m.get("seconds"),
            "rejects_by_reason": m.get("rejects_by_reason") or {},
            "stages": _stage_rows(m.get("counts") or {}),
            "cost_usd": _sum_costs(m, "total_usd"), "cost_this_run_usd": _sum_costs(m, "this_run_usd"),
            "tokens": _tokens(m),
        }
    if folder.running:
        prog = folder.progress or {}
        state, why = _liveness(folder)
        counts = prog.get("counts") or {}
        last = _last_activity(folder.staging, prog)
        pool = _pool_stats(folder.staging)
        recipe = _recipe_from(prog)
        rows_read = int((counts.get("source") or {}).get("in", 0))
        total = next((int(prog[k]) for k in TOTAL_KEYS if isinstance(prog.get(k), int)), None)
        if total is None:
            caps = [prog.get("limit"), prog.get("sample")]
            if recipe is not None:
                caps += [recipe.source.limit, recipe.source.sample]
            caps = [int(c) for c in caps if isinstance(c, int)]
            total = min(caps) if caps else None
        shard_size = prog.get("shard_size") or (recipe.run.shard_size if recipe is not None else None)
        busy = sum(float(v.get("seconds", 0)) for v in counts.values())
        run: dict[str, Any] = {
            "state": state, "why": why,
            "progress_status": prog.get("status"),
            "last_activity": last, "last_activity_ago_s": round(now - last, 1) if last else None,
            "shards_done": int(prog.get("shards_done", 0)), "shard_size": shard_size,
            "rows_read": rows_read, "rows_pooled": pool["rows"], "stages": _stage_rows(counts),
            "total": total,
        }
        if total is not None:
            remaining = max(0, total - rows_read)
            run["remaining_rows"] = remaining
            if shard_size:
                run["remaining_shards"] = math.ceil(remaining / shard_size)
            if rows_read and busy > 0:
                run["eta_s"] = round(remaining * busy / rows_read, 1)
        if isinstance(prog.get("cost"), dict) or isinstance(prog.get("usage"), dict):
            run["cost_usd"] = _sum_costs(prog, "total_usd")
            run["tokens"] = _tokens(prog)
            run["cost_source"] = "progress.json"
        else:
            run["tokens"] = pool["tokens"]
            run["cost_usd"] = _cost_of(recipe, pool) if recipe is not None else None
            run["cost_source"] = ("from the token counts of the rows pooled so far" if recipe is not None else
                                  "progress.json records no recipe to price the tokens with")
        cmd = resume_command(prog)
        note = ""
        if cmd is None and m is not None:
            cmd = resume_command(m)
            note = "(the command of the previous finished build in this folder; use the one you started)"
        elif cmd is not None and not any(k in prog for k in ("limit", "sample")):
            note = "(add the --limit / --sample you started it with, if any)"
        if cmd is None:
            cmd = "rerun the same `cftdata build RECIPE ...` command you started it with"
            note = "(progress.json does not record the recipe file)"
        run["resume"] = {"command": cmd, "note": note}
        status["running"] = run
    elif m is not None:
        cmd = resume_command(m)
        note = "" if "limit" in m or "sample" in m else "(add the --limit / --sample you used, if any)"
        status["rebuild"] = {"command": cmd, "note": note}
    cpath, origin = cache_path(folder.progress, m)
    status["cache"] = {**cache_answers(cpath), "from": origin}
    return status


def _sum_costs(info: dict[str, Any], key: str) -> float | None:
    vals = [c.get(key) for c in (info.get("cost") or {}).values() if isinstance(c, dict) and c.get(key) is not None]
    return round(sum(vals), 6) if vals else None


def _tokens(info: dict[str, Any]) -> dict[str, dict[str, int]]:
    out = {}
    for role, u in (info.get("usage") or {}).items():
        out[role] = {"input": int(u.get("input_tokens", 0)) + int(u.get("input_tokens_from_cache", 0)),
                     "output": int(u.get("output_tokens", 0)) + int(u.get("output_tokens_from_cache", 0))}
    return out


def _money(v: float | None) -> str:
    return "n/a (local models or no known price)" if v is None else f"${v:,.4f}"


def _table(rows: list[dict[str, Any]], indent: str = "  ") -> list[str]:
    head = ("stage", "in", "out", "rejected", "seconds")
    cells = [head] + [(r["stage"], f"{r['in']:,}", f"{r['out']:,}", f"{r['rejected']:,}", f"{r['seconds']:,.1f}")
                      for r in rows]
    w = [max(len(c[i]) for c in cells) for i in range(5)]
    return [indent + f"{c[0]:<{w[0]}}  " + "  ".join(f"{c[i]:>{w[i]}}" for i in range(1, 5)) for c in cells]


def _token_text(tokens: dict[str, dict[str, int]]) -> str:
    return ", ".join(f"{r} {t['input']:,} in / {t['output']:,} out" for r, t in tokens.items()) or "none"


def format_status(s: dict[str, Any]) -> str:
    """The human-readable status report."""
    lines: list[str] = []
    run, fin = s.get("running"), s.get("finished")
    if run:
        ago = run.get("last_activity_ago_s")
        when = f"; last activity {_ago(ago)} ago" if ago is not None else ""
        lines.append(f"build {s['path']}: {run['state']} ({run['why']}{when})")
        shard = f" (shard size {run['shard_size']:,})" if run.get("shard_size") else ""
        lines.append(f"  shards done: {run['shards_done']:,}{shard}")
        total = run.get("total")
        of = f" of {total:,} ({run['rows_read'] / total:.0%})" if total else ""
        lines.append(f"  source rows read: {run['rows_read']:,}{of}; rows through every stage so far: "
                     f"{run['rows_pooled']:,} (in .staging/pool)")
        if run["stages"]:
            lines += _table(run["stages"])
        if total is None:
            lines.append("  remaining: unknown (the total number of source rows is not recorded)")
        else:
            rem = f"  remaining: {run['remaining_rows']:,} source rows"
            if "remaining_shards" in run:
                rem += f" (~{run['remaining_shards']:,} shards)"
            if run.get("eta_s") is not None and run["remaining_rows"]:
                rem += f", about {_ago(run['eta_s'])} at the rate so far"
            lines.append(rem)
        cost = _money(run.get("cost_usd"))
        if run.get("cost_usd") is not None or "no recipe" in run["cost_source"]:
            cost = ("unknown" if run.get("cost_usd") is None else cost) + f" ({run['cost_source']})"
        lines.append(f"  cost so far: {cost}; tokens so far: {_token_text(run.get('tokens') or {})}")
        lines.append(f"  to resume: {run['resume']['command']} {run['resume']['note']}".rstrip())
        lines.append("    every answer received so far is in the request cache: the rerun only calls the "
                     "model for the rest, then swaps the result into place.")
        if fin:
            lines.append(f"  the previous finished build ({fin['created_at']}, {fin['rows_out']:,} rows) "
                         "stays in place until then.")
    elif fin:
        lines.append(f"build {s['path']}: {fin['status']} (built {fin['created_at']} in {fin['seconds']} s)")
        reasons = ", ".join(f"{k} {v:,}" for k, v in fin["rejects_by_reason"].items())
        lines.append(f"  rows out: {fin['rows_out']:,}; rejected: {fin['rejected']:,}"
                     + (f" ({reasons})" if reasons else ""))
        lines += _table(fin["stages"])
        cost = _money(fin["cost_usd"])
        if fin["cost_usd"] is not None:
            cost += f" (this run {_money(fin['cost_this_run_usd'])})"
        lines.append(f"  cost: {cost}; tokens: {_token_text(fin['tokens'])}")
        rb = s.get("rebuild") or {}
        lines.append("  nothing left to do.")
        if rb.get("command"):
            lines.append(f"  to rebuild (answers come from the request cache): {rb['command']} {rb['note']}".rstrip())
    c = s["cache"]
    if c.get("path") is None:
        lines.append(f"  request cache: none ({c.get('from')})")
    elif c.get("answers") is None:
        lines.append(f"  request cache: {c['path']} {c.get('note', '')}".rstrip())
    else:
        per = ", ".join(f"{k}: {v:,}" for k, v in list(c["by_model"].items())[:6])
        lines.append(f"  request cache: {c['path']} holds {c['answers']:,} answers" + (f" ({per})" if per else ""))
    return "\n".join(lines) + "\n"


def status_json(path: str | Path) -> str:
    return json.dumps(build_status(path), indent=2, default=str)
