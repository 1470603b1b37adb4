"""How fast, and after how many calls, a build stops on a broken endpoint (issue 19). Not a test.

For each mistake of the bad-input matrix (wrong key, model typo, nothing listening, a proxy's HTML page,
JSON without ``choices``), ``cftdata build`` of ``--rows`` source rows (``respond.mode: existing``, an
``openai`` teacher at the loopback fault server, everything else default), with the preflight (the
default) and without it (``--no-preflight``: the circuit breaker alone). Printed per case: the exit code,
wall seconds of the whole command (process start-up included), and the calls the endpoint received.
Before issue 19 the same builds ran every row (200 rows: > 120 s for the endpoint down and the HTML
page, 832 calls and counting) and exited 0 with every row rejected.

    python benchmarks/fail_fast.py              # 200 rows
    python benchmarks/fail_fast.py --rows 2000

The machine's load average is printed: on a loaded machine the seconds are mostly Python start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers.fault_server import serve  # noqa: E402

KEY_ENV = "CFTDATA_BENCH_KEY"
GOOD_KEY = "sk-bench-good-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {args.rows} source rows")
    print(f"{'case':<14} {'mode':<10} {'exit':>4} {'seconds':>8} {'calls':>6}")
    with tempfile.TemporaryDirectory() as tmp, serve(latency_s=0.01, models=["fault-model"],
                                                     api_key=GOOD_KEY) as (url, stats):
        tmp_path = Path(tmp)
        source = tmp_path / "rows.jsonl"
        source.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "response": f"{2 * i}"}) + "\n"
                                  for i in range(args.rows)))
        cases = {
            "wrong_key": ({}, {}, {KEY_ENV: "sk-bench-typo-9876543210"}),
            "model_typo": ({}, {"model": "fault-modle"}, {}),
            "endpoint_down": ({}, {"base_url": f"http://127.0.0.1:{free_port()}/v1"}, {}),
            "html_page": ({"html_rate": 1.0}, {}, {}),
            "no_choices": ({"nochoices_rate": 1.0}, {}, {}),
        }
        for name, (faults, teacher, env) in cases.items():
            for flags in ((), ("--no-preflight",)):
                stats.configure(**{"html_rate": 0.0, "nochoices_rate": 0.0, **faults})
                stats.reset()
                recipe = {"version": 1, "name": "bench",
                          "source": {"path": str(source), "question": "question", "response": "response"},
                          "teacher": {"backend": "openai", "model": "fault-model", "base_url": url,
                                      "api_key_env": KEY_ENV, **teacher},
                          "output": {"dir": str(tmp_path / f"out-{name}")},
                          "cache": {"dir": str(tmp_path / "cache")}}
                path = tmp_path / "recipe.yaml"
                path.write_text(yaml.safe_dump(recipe))
                t0 = time.monotonic()
                proc = subprocess.run([sys.executable, "-m", "cftdata.cli", "build", str(path), "-q", *flags],
                                      cwd=ROOT, capture_output=True, text=True,
                                      env={**os.environ, KEY_ENV: GOOD_KEY, **env})
                seconds = time.monotonic() - t0
                mode = "breaker" if flags else "preflight"
                print(f"{name:<14} {mode:<10} {proc.returncode:>4} {seconds:>8.2f} {stats().total:>6}")


if __name__ == "__main__":
    main()
