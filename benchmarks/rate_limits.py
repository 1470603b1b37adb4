"""Side by side: how much of a rate limit each client uses, and at what cost (issue 11). Not a test.

Clients, each in its own process so its CPU and memory are its own:

* ``cftdata``: ``cftdata build`` of a recipe whose teacher is ``openai`` at the fault server with only
  ``teacher.requests_per_minute`` set to the limit (everything else default);
* ``sdk``: the plain ``openai`` SDK, AsyncOpenAI + a semaphore sized by hand for the case (Little's
  law at the limit and latency, +20 %): the SDK has no limiter (``benchmarks/peers/sdk_client.py``);
* ``curator``: Bespoke Curator 0.1.31 with ``max_requests_per_minute`` set to the limit
  (``benchmarks/peers/curator_client.py``). It pins an old ``datasets``, so it lives in its own
  virtualenv; create it once with

      python3 -m venv /work/venvs/curator && /work/venvs/curator/bin/pip install bespokelabs-curator==0.1.31

  (or point ``--curator-python`` / ``$CURATOR_PYTHON`` at another one). Without it, Curator is skipped
  with a message. distilabel is not run (optional; its pipeline needs a distilabel install of its own).

The server is ``tests/servers/fault_server.py`` in its own process: ``--rows`` distinct critique
prompts (the ``cft-paper`` prompt around a ~600-character question and response: ~300 tokens),
256-word answers, the given latency, 5 % HTTP 500s, and a requests-per-minute limit enforced over a
sliding window of 60 s or 1 s (3000/min over 1 s = 50 per second), with ``x-ratelimit-*`` headers.

Printed per client and case:

* ``x limit``: requests the server admitted (every answer but 429s) per minute, from the first
  arrival to the one 95 % of the way through (the last 5 % are mostly retries of the last 500s,
  sent after a backoff), over the limit: how much of the limit the client used while it ran. End to
  end, rows/min also pays process start-up, the retry tail and one latency (printed as ``e2e``, a
  fraction of the limit). A 60 s window lets a run shorter than a minute go over 1.0 legally.
* ``429s``: answers 429, and as a % of requests; ``peak`` in flight at the server;
* ``CPU ms/req``: the client process's CPU (user + system) per row, start-up excluded (a 20-row
  calibration run of the same client, at no latency, is subtracted); ``RSS MB``: its peak resident
  memory;
* ``lost``: rows without an answer at the end; ``paid 2x``: answers the server delivered twice for the
  same body.

Targets for cftdata with defaults: x limit >= 0.95, < 1 % 429s, 0 lost, 0 paid twice, < 1 ms CPU per
request, < 150 MB RSS.

    python benchmarks/rate_limits.py --quick                     # 500 ms cases, 1000 rows, cftdata + sdk
    python benchmarks/rate_limits.py                             # the full matrix (about an hour)
    python benchmarks/rate_limits.py --case 5:3000:1 --clients cftdata,curator --rows 2000

A case is ``LATENCY_S:LIMIT_PER_MIN:WINDOW_S``. The machine's load average is printed with each run:
numbers from a loaded machine understate every client.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers.fault_server import serve  # noqa: E402

PEERS = Path(__file__).resolve().parent / "peers"
KEY_ENV = "CFTDATA_BENCH_KEY"
KEY = "sk-bench-not-a-secret"
MODEL = "bench-model"
PARAMS = {"temperature": 0.3, "max_tokens": 512}
FULL = [f"{lat}:{lim}:{win}" for lat in (0.5, 5) for lim in (600, 3000) for win in (60, 1)]
QUICK = [f"0.5:{lim}:{win}" for lim in (600, 3000) for win in (60, 1)]
CALIBRATION_ROWS = 20


def default_curator_python() -> str | None:
    for cand in (os.environ.get("CURATOR_PYTHON"), "/work/venvs/curator/bin/python"):
        if cand and Path(cand).exists():
            return cand
    return None


def write_inputs(d: Path, n: int) -> tuple[Path, Path]:
    """The source JSONL for cftdata and the same rendered prompts (JSONL of messages) for the peers."""
    from cftdata.prompts import CRITIQUE_PROMPTS, resolve_prompt

    template = resolve_prompt("cft-paper", CRITIQUE_PROMPTS, lambda p: Path(p))
    src, prompts = d / "source.jsonl", d / "prompts.jsonl"
    with src.open("w") as fs, prompts.open("w") as fp:
        for i in range(n):
            q = (f"Problem {i}: a train leaves the station at {i % 97} km/h and a second one follows "
                 f"{i % 13 + 2} hours later at {i % 89 + 40} km/h. " * 3)[:600]
            r = (f"Step 1: the gap after {i % 13 + 2} hours is {(i % 97) * (i % 13 + 2)} km. Step 2: the "
                 f"closing speed is {abs(i % 89 + 40 - i % 97)} km/h. Step 3: divide; the answer is {i}. " * 3)[:600]
            fs.write(json.dumps({"question": q, "response": r}) + "\n")
            fp.write(json.dumps({"id": i, "messages": template.render(question=q, response=r)}) + "\n")
    return src, prompts


def run_child(cmd: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> dict[str, Any]:
    """Run a client process; its CPU seconds (user + system), peak RSS (MB), wall time and exit code."""
    t0 = time.perf_counter()
    with open(cwd / "client.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    tail = (cwd / "client.log").read_text(errors="replace")[-1500:]
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024, "wall_s": wall, "code": code,
            "log_tail": tail}


def client_command(client: str, d: Path, base_url: str, limit: float, latency: float, n: int,
                   src: Path, prompts: Path, curator_python: str | None) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, KEY_ENV: KEY, "PYTHONPATH": str(ROOT), "CFTDATA_CACHE_DIR": str(d / "cache"),
           "HOME": str(d / "home")}
    for k in list(env):
        if k.lower().endswith("_proxy"):
            env.pop(k)
    (d / "home").mkdir(exist_ok=True)
    if client == "cftdata":
        import yaml

        recipe = {
            "version": 1, "name": "bench", "source": {"path": str(src), "question": "question", "response": "response"},
            "teacher": {"backend": "openai", "model": MODEL, "base_url": base_url, "api_key_env": KEY_ENV,
                        "requests_per_minute": limit, "params": PARAMS},
            "output": {"dir": str(d / "out"), "format": "alpaca"},
        }
        (d / "recipe.yaml").write_text(yaml.safe_dump(recipe))
        return [sys.executable, "-m", "cftdata.cli", "build", str(d / "recipe.yaml"), "-q"], env
    cfg = {"base_url": base_url, "api_key": KEY, "model": MODEL, "prompts": str(prompts), "params": PARAMS,
           "rpm": limit, "out": str(d / "peer.json"),
           "concurrency": max(8, math.ceil(limit / 60 * max(latency, 0.05) * 1.2))}
    (d / "config.json").write_text(json.dumps(cfg))
    if client == "sdk":
        return [sys.executable, str(PEERS / "sdk_client.py"), str(d / "config.json")], env
    assert curator_python is not None
    env.pop("PYTHONPATH")
    env["CURATOR_CACHE_DIR"] = str(d / "curator-cache")
    return [curator_python, str(PEERS / "curator_client.py"), str(d / "config.json")], env


def delivered(client: str, d: Path) -> int | None:
    """Rows with an answer at the end, as the client reports them."""
    if client == "cftdata":
        m = d / "out" / "manifest.json"
        return json.loads(m.read_text())["rows_out"] if m.exists() else None
    p = d / "peer.json"
    return json.loads(p.read_text())["ok"] if p.exists() else None


def one_run(client: str, n: int, latency: float, limit: float | None, window: float, errors: float,
            curator_python: str | None, timeout_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"ratebench-{client}-") as tmp:
        d = Path(tmp)
        src, prompts = write_inputs(d, n)
        server_cfg: dict[str, Any] = {"latency_s": latency, "error_rate": errors, "completion_words": 256, "seed": 1}
        if limit:
            server_cfg.update(rpm=limit, rpm_mode="window", window_s=window)
        with serve(process=True, **server_cfg) as (base_url, stats):
            cmd, env = client_command(client, d, base_url, limit or 1e6, latency, n, src, prompts, curator_python)
            load = os.getloadavg()[0]
            proc = run_child(cmd, env, d, timeout_s)
            s = stats()
        got = delivered(client, d)
    admitted = s.total - s.status(429)
    arrivals = sorted(s.arrivals)
    # Steady state: from the first arrival to the one 95 % of the way through, so that the retries of
    # the last 500s (a second or two of backoff after everything else) do not count as idle time.
    k = max(1, int(0.95 * (len(arrivals) - 1)))
    span = arrivals[k] - arrivals[0] if len(arrivals) > 1 else float("nan")
    admitted_in_span = k * admitted / max(1, len(arrivals))
    return {
        **proc, "load": load, "rows": n, "delivered": got, "lost": n - (got or 0),
        "requests": s.total, "status": {str(k): v for k, v in s.by_status.items()},
        "r429": s.status(429), "pct429": 100 * s.status(429) / max(1, s.total),
        "peak": s.max_in_flight, "paid_twice": s.duplicates,
        "x_limit": admitted_in_span / span * 60 / limit if limit and span == span and span > 0 else None,
        "e2e_per_min": (got or 0) / proc["wall_s"] * 60,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", metavar="LAT:LIMIT:WINDOW", help="e.g. 0.5:3000:1 (repeatable)")
    ap.add_argument("--quick", action="store_true", help="the 500 ms cases, 1000 rows, cftdata and sdk")
    ap.add_argument("--clients", default=None, help="comma-separated: cftdata,sdk,curator (default: all available)")
    ap.add_argument("--rows", type=int, default=None, help="prompts per run (default 2000; --quick 1000)")
    ap.add_argument("--errors", type=float, default=0.05, help="fraction of HTTP 500s (default 0.05)")
    ap.add_argument("--curator-python", default=default_curator_python())
    ap.add_argument("--timeout", type=float, default=1800, help="per run, seconds")
    ap.add_argument("--json", help="also write every figure to this file")
    args = ap.parse_args()
    cases = args.case or (QUICK if args.quick else FULL)
    rows = args.rows or (1000 if args.quick else 2000)
    clients = (args.clients or ("cftdata,sdk" if args.quick else "cftdata,sdk,curator")).split(",")
    if "curator" in clients and not args.curator_python:
        print("curator: skipped, no virtualenv found. Create one with\n"
              "  python3 -m venv /work/venvs/curator && /work/venvs/curator/bin/pip install bespokelabs-curator==0.1.31\n"
              "or pass --curator-python.", flush=True)
        clients = [c for c in clients if c != "curator"]
    if shutil.which("nproc"):
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    calib: dict[str, float] = {}
    for c in clients:
        r = one_run(c, CALIBRATION_ROWS, 0.0, None, 60, 0.0, args.curator_python, 300)
        calib[c] = r["cpu_s"]
        print(f"calibration {c}: {CALIBRATION_ROWS} rows, start-up + calls = {r['cpu_s']:.2f} s CPU, "
              f"{r['rss_mb']:.0f} MB peak, exit {r['code']}", flush=True)
        if r["code"] != 0:
            print(r["log_tail"], flush=True)
    results = []
    header = (f"{'client':8} {'x limit':>7} {'e2e':>5} {'429s':>6} {'429%':>6} {'peak':>5} {'CPU ms/req':>10} "
              f"{'RSS MB':>6} {'lost':>5} {'paid 2x':>7} {'wall s':>7} {'load':>5}")
    for case in cases:
        lat, lim, win = (float(x) for x in case.split(":"))
        print(f"\n== {rows} rows, {lat * 1000:g} ms latency, {lim:g}/min over a {win:g} s window, "
              f"{args.errors:.0%} HTTP 500s", flush=True)
        print(header, flush=True)
        for c in clients:
            r = one_run(c, rows, lat, lim, win, args.errors, args.curator_python, args.timeout)
            cpu_req = (r["cpu_s"] - calib[c]) / (rows - CALIBRATION_ROWS) * 1000
            x = f"{r['x_limit']:.3f}" if r["x_limit"] is not None else "-"
            print(f"{c:8} {x:>7} {r['e2e_per_min'] / lim:5.2f} {r['r429']:6d} {r['pct429']:6.2f} {r['peak']:5d} "
                  f"{cpu_req:10.3f} {r['rss_mb']:6.0f} {r['lost']:5d} {r['paid_twice']:7d} {r['wall_s']:7.1f} "
                  f"{r['load']:5.2f}", flush=True)
            if r["code"] != 0:
                print(f"  {c} exited {r['code']}:\n{r['log_tail']}", flush=True)
            results.append({"case": case, "client": c, "cpu_ms_per_request": cpu_req, **r})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
