"""The offline quickstart as a newcomer runs it, measured: wall time with a FRESH request cache, parseable verdicts,
teacher-vs-verifier agreement, truncations, rows.

    python benchmarks/quickstart_quality.py [--set KEY=VALUE ...] [--label NAME] [--repeat N]

Each run is ``cftdata build recipes/quickstart.yaml`` in a subprocess (what the README says to type), with
``CFTDATA_CACHE_DIR`` pointing at a new empty folder, so every model call is made (the model load included).
``--set`` overrides go to the build, so the "before" settings can be measured on the same machine, e.g.
``--set teacher.prompt=cft-paper --set teacher.verdict_constraint=null --set verify=null``. Prints one JSON line
per run, then a Markdown row per run: label, seconds, rows, rejects by reason, parseable verdicts (of the
critiques judged, and of all critiques requested: truncated ones count as unparseable), agreement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="cftdata-qs-") as tmp:
        out = Path(tmp) / "out"
        args = [sys.executable, "-m", "cftdata.cli", "build", "recipes/quickstart.yaml", "-q",
                "--set", f"output.dir={out}"]
        for o in overrides:
            args += ["--set", o]
        env = {**os.environ, "CFTDATA_CACHE_DIR": str(Path(tmp) / "cache")}
        t0 = time.monotonic()
        res = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.monotonic() - t0
        if res.returncode != 0:
            raise SystemExit(f"build failed ({res.returncode}): {res.stderr[-2000:]}")
        m = json.loads((out / "manifest.json").read_text())
    stages = m["stages"]
    verdicts = stages.get("verdict", {}).get("verdicts", {})
    judged = sum(verdicts.values())
    parseable = verdicts.get("right", 0) + verdicts.get("wrong", 0)
    requested = m["counts"].get("critique", {}).get("in", 0)
    agr = stages.get("agreement") or {}
    return {"seconds": round(seconds, 1), "rows": m["rows_out"], "rejects": m["rejects_by_reason"],
            "verdicts": verdicts, "parseable": parseable, "judged": judged, "critiques_requested": requested,
            "agreement": agr.get("agreement"), "agreement_table": agr.get("table"), "decided": agr.get("decided"),
            "verify": (stages.get("verify") or {}).get("statuses"), "overrides": overrides}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--label", default="quickstart")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args(argv)
    rows = []
    for _ in range(a.repeat):
        r = run_once(a.overrides)
        print(json.dumps(r), flush=True)
        rows.append(r)
    print("| settings | wall s (fresh cache) | rows | rejects | parseable / judged | parseable / requested "
          "| agreement (decided) |")
    for r in rows:
        pct = f"{100 * r['parseable'] / r['judged']:.0f}%" if r["judged"] else "n/a"
        pct_all = f"{100 * r['parseable'] / r['critiques_requested']:.0f}%" if r["critiques_requested"] else "n/a"
        agr = "off" if r["agreement"] is None and r["decided"] is None else (
            f"{100 * r['agreement']:.0f}% ({r['decided']})" if r["agreement"] is not None else f"n/a ({r['decided']})")
        print(f"| {a.label} | {r['seconds']} | {r['rows']} | {json.dumps(r['rejects'])} | {r['parseable']}/{r['judged']}"
              f" ({pct}) | {r['parseable']}/{r['critiques_requested']} ({pct_all}) | {agr} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
