"""Which HTTP transport the online backends use, by measurement (issue 14 item 4). Not a test.

Three ways to POST a Chat Completions body and parse the answer, each driven the same way (requests
offered at a fixed pace, at most ``--concurrency`` in flight) against the fault server in its own
process:

* ``cftdata``: :class:`cftdata.backends.http.HTTPClient`, the transport the backends use;
* ``httpx``: a plain ``httpx.AsyncClient`` (keep-alive pool as large as the concurrency), ``json``;
* ``sdk``: the ``openai`` SDK's ``AsyncOpenAI.chat.completions.create`` (``with_raw_response``, as a
  backend needs the headers), retries off.

Two scenarios: ``fast`` (0 ms latency, 2,000 requests/s offered: what a client costs when the server
is never the limit) and ``limited`` (3,000/min with 500 ms latency, paced at the limit: a binding
rate limit). Printed per transport: rows/s achieved and client CPU per request (``process_time`` of
this process, whose only work is the client; the server runs elsewhere). The rule (issue 14): keep
the simplest transport within 20 % of the best.

    python benchmarks/transports.py                  # both scenarios, all three transports
    python benchmarks/transports.py --requests 2000 --scenario fast
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers.fault_server import serve  # noqa: E402

BODY_TEXT = "Critique this solution. " * 50  # ~1,200 characters, a critique prompt's size


def make_sender(kind: str, url: str, concurrency: int):
    """(send(i) -> text, close()) for one transport."""
    if kind == "sdk":
        import openai

        client = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)

        async def send(i: int) -> str:
            raw = await client.chat.completions.with_raw_response.create(
                model="m", messages=[{"role": "user", "content": f"{i} {BODY_TEXT}"}], max_tokens=512)
            return raw.parse().choices[0].message.content

        return send, client.close
    if kind == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        hx = httpx.AsyncClient(base_url=url, limits=limits, timeout=60,
                               headers={"Authorization": "Bearer sk-bench"})

        async def send(i: int) -> str:
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"{i} {BODY_TEXT}"}],
                               "max_tokens": 512}).encode()
            r = await hx.post("/chat/completions", content=body, headers={"content-type": "application/json"})
            return json.loads(r.content)["choices"][0]["message"]["content"]

        return send, hx.aclose
    from cftdata.backends.http import HTTPClient

    lean = HTTPClient(url, {"Authorization": "Bearer sk-bench"}, proxy=None)

    async def send(i: int) -> str:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"{i} {BODY_TEXT}"}],
                           "max_tokens": 512}).encode()
        r = await lean.request("POST", "/chat/completions", body)
        return json.loads(r.body)["choices"][0]["message"]["content"]

    return send, lean.aclose


async def drive(kind: str, url: str, n: int, per_s: float, concurrency: int) -> tuple[float, float, int]:
    """Offer ``n`` requests at ``per_s``, at most ``concurrency`` in flight: (rows/s, CPU ms/request, ok)."""
    send, close = make_sender(kind, url, concurrency)
    sem = asyncio.Semaphore(concurrency)
    await asyncio.gather(*(send(-i - 1) for i in range(min(concurrency, 32))))  # warm connections

    async def one(i: int, at: float) -> bool:
        async with sem:
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                return bool(await send(i))
            except Exception:
                return False

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    ok = sum(await asyncio.gather(*(one(i, t0 + i / per_s) for i in range(n))))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await close()
    return ok / wall, 1000 * cpu / n, ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", choices=["fast", "limited"], action="append")
    ap.add_argument("--transport", choices=["cftdata", "httpx", "sdk"], action="append")
    ap.add_argument("--requests", type=int, default=4000, help="per run in the fast scenario (default 4000)")
    args = ap.parse_args()
    scenarios = args.scenario or ["fast", "limited"]
    transports = args.transport or ["cftdata", "httpx", "sdk"]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    for sc in scenarios:
        if sc == "fast":
            server, n, per_s, conc = {"latency_s": 0.0}, args.requests, 2000.0, 64
            title = f"fast: 0 ms latency, 2,000 requests/s offered, {n} requests, <= {conc} in flight"
        else:
            server = {"latency_s": 0.5, "rpm": 3000, "rpm_mode": "window", "window_s": 60}
            n, per_s, conc = 1000, 3000 / 60 * 0.98, 64
            title = f"limited: 500 ms latency, 3,000/min limit paced at 0.98 of it, {n} requests"
        print(f"\n== {title}", flush=True)
        print(f"{'transport':10} {'rows/s':>8} {'CPU ms/req':>10} {'ok':>6}  load", flush=True)
        rows = {}
        for t in transports:
            with serve(process=True, completion_words=256, **server) as (url, _):
                rate, cpu, ok = asyncio.run(drive(t, url, n, per_s, conc))
            rows[t] = (rate, cpu)
            print(f"{t:10} {rate:8.0f} {cpu:10.3f} {ok:6d}  {os.getloadavg()[0]:.2f}", flush=True)
        best = min(c for _, c in rows.values())
        within = [t for t, (_, c) in rows.items() if c <= best * 1.2]
        print(f"within 20 % of the lowest CPU per request ({best:.3f} ms): {', '.join(within)}", flush=True)


if __name__ == "__main__":
    main()
