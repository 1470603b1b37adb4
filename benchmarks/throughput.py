"""Throughput of the ``openai`` backend against a rate-limited loopback server (not a test).

Starts the fault server (tests/servers/fault_server.py) in a SEPARATE process, so that only the
client's CPU is measured, with a fixed latency and a server-side requests-per-minute limit, then sends
N distinct requests through ``ModelCaller`` -> ``openai`` backend with the recipe pacing at that limit.
Prints, per scenario:

* achieved requests/min as a % of the limit: end to end (answers / wall time, ramp-up and the last
  answer's latency included) and at the server (arrival rate between first and last request);
* % of requests the server answered 429;
* wall time; client CPU per request in ms (``time.process_time`` of this process, all threads).

Targets: >= 95 % of the limit, < 1 % 429s, < 1 ms client CPU per request.

    python benchmarks/throughput.py                      # 2000 @ 3000/min, then 600 @ 600/min
    python benchmarks/throughput.py --scenario 2000:3000 --profile /tmp/client.prof
    python benchmarks/throughput.py --transport sdk      # the same through the openai SDK
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cftdata.backends import Request, make_backend  # noqa: E402
from cftdata.backends.cache import RequestCache  # noqa: E402
from cftdata.backends.caller import ModelCaller  # noqa: E402
from cftdata.recipe import ModelSpec  # noqa: E402
from tests.servers.fault_server import serve  # noqa: E402


def run_scenario(n: int, rpm: float, latency_s: float, concurrency: int, use_cache: bool,
                 transport: str = "auto", profile: str | None = None, burst: float | None = None) -> dict[str, Any]:
    """Send ``n`` requests paced at ``rpm`` to a server limited to ``rpm``; return the figures."""
    with serve(process=True, latency_s=latency_s, rpm=rpm, rpm_burst=burst) as (base_url, stats):
        spec = ModelSpec(
            backend="openai", model="bench-model", base_url=base_url, api_key_env="CFTDATA_BENCH_KEY",
            concurrency=concurrency, requests_per_minute=rpm, timeout_s=30, max_retries=8, stall_timeout_s=120,
            options={"http_client": transport},
        )
        backend = make_backend(spec)
        with tempfile.TemporaryDirectory() as tmp:
            cache = RequestCache(Path(tmp) / "requests.sqlite") if use_cache else None
            caller = ModelCaller(backend, cache)
            requests = [
                Request.make(spec.model, [{"role": "user", "content": f"Critique solution #{i}: 2 + 2 = {i}."}],
                             {"temperature": 0.0, "max_tokens": 64})
                for i in range(n)
            ]
            stats.reset()
            gc.collect()
            prof = cProfile.Profile() if profile else None
            cpu0, t0 = time.process_time(), time.perf_counter()
            if prof:
                prof.enable()
            results = caller.call(requests)
            if prof:
                prof.disable()
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            if prof and profile:
                prof.dump_stats(profile)
            if cache:
                cache.close()
        backend.close()
        s = stats()
    ok = sum(r.ok for r in results)
    arrivals = sorted(s.arrivals)
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    return {
        "requests": n,
        "limit_rpm": rpm,
        "latency_s": latency_s,
        "ok": ok,
        "errors": dict(caller.stats.errors),
        "wall_s": round(wall, 2),
        "achieved_rpm": round(ok / wall * 60, 1),
        "achieved_pct_of_limit": round(100 * ok / wall * 60 / rpm, 2),
        "server_arrival_pct_of_limit": round(100 * (len(arrivals) - 1) / span * 60 / rpm, 2),
        "server_requests": s.total,
        "pct_429": round(100 * s.status(429) / max(1, s.total), 3),
        "duplicates": s.duplicates,
        "max_in_flight_at_server": s.max_in_flight,
        "client_cpu_s": round(cpu, 3),
        "client_cpu_ms_per_request": round(1000 * cpu / n, 3),
        "backend_stats": backend.stats(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", action="append", metavar="N:RPM",
                    help="requests:limit pairs (default: 2000:3000 and 600:600)")
    ap.add_argument("--latency", type=float, default=0.5, help="server latency in seconds (default 0.5)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--transport", choices=["auto", "lean", "sdk"], default="auto",
                    help="the openai backend's options.http_client (default auto = lean without a proxy)")
    ap.add_argument("--burst", type=float, help="server bucket size in requests (default: one second's worth)")
    ap.add_argument("--cache", action="store_true", help="write answers to a fresh temporary cache")
    ap.add_argument("--profile", help="write a cProfile of the client to this file (first scenario)")
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = ap.parse_args()
    scenarios = [tuple(map(float, s.split(":"))) for s in (args.scenario or ["2000:3000", "600:600"])]
    for k, (n, rpm) in enumerate(scenarios):
        r = run_scenario(int(n), rpm, args.latency, args.concurrency, args.cache, args.transport,
                         args.profile if k == 0 else None, args.burst)
        verdict = (r["achieved_pct_of_limit"] >= 95, r["pct_429"] < 1, r["client_cpu_ms_per_request"] < 1)
        print(
            f"{r['requests']} requests @ {rpm:g}/min limit, {args.latency * 1000:g} ms latency, "
            f"concurrency {args.concurrency}, {r['backend_stats'].get('transport', 'sdk')} transport"
            f"{', cache on' if args.cache else ''}:\n"
            f"  achieved {r['achieved_rpm']:g}/min = {r['achieved_pct_of_limit']:g}% of the limit end to end "
            f"({r['server_arrival_pct_of_limit']:g}% at the server)  [{'ok' if verdict[0] else 'MISS'}]\n"
            f"  429s: {r['pct_429']:g}% of {r['server_requests']} server requests  [{'ok' if verdict[1] else 'MISS'}]\n"
            f"  wall {r['wall_s']:g} s; client CPU {r['client_cpu_s']:g} s = "
            f"{r['client_cpu_ms_per_request']:g} ms/request  [{'ok' if verdict[2] else 'MISS'}]\n"
            f"  ok {r['ok']}/{r['requests']}, errors {r['errors'] or 'none'}, duplicates {r['duplicates']}, "
            f"peak in flight at server {r['max_in_flight_at_server']}",
            flush=True,
        )
        if args.json:
            print(json.dumps(r, indent=2), flush=True)


if __name__ == "__main__":
    main()
