"""What logging sent requests (the resume summary's "sent again" count) costs per answer.

Runs the cache's hot path as a build with an online backend does (a lookup of 100 keys; per request, its key
computed and appended to the :class:`~cftdata.backends.cache.SentLog`, then the committed ``put`` of its
answer) N times, with the log on and off, on a fresh SQLite file each round, and prints wall and CPU
microseconds per answer. Not a test: numbers depend on the disk and the machine's load.

    python benchmarks/cache_bookkeeping.py            # 3000 answers, 3 rounds each
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cftdata.backends.base import Request, Result  # noqa: E402
from cftdata.backends.cache import RequestCache  # noqa: E402


def one_round(n: int, bookkeeping: bool) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        cache = RequestCache(Path(d) / "requests.sqlite")
        requests = [Request(model="m", messages=(("user", f"question {i} " + "x" * 2000),)) for i in range(n)]
        keys = [r.cache_key("ns") for r in requests]
        log = cache.sent_log() if bookkeeping else None
        answer = Result(text="x" * 400, finish_reason="stop", input_tokens=100, output_tokens=100)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, n, 100):
            cache.get_many(keys[i:i + 100])
            for r, k in zip(requests[i:i + 100], keys[i:i + 100], strict=True):
                if log is not None:
                    log.mark(r.cache_key("ns"))
                cache.put(k, answer, "ns", "model")
        if log is not None:
            log.close()
        cache.close()
        return (time.perf_counter() - t0) * 1e6 / n, (time.process_time() - c0) * 1e6 / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for bookkeeping in [False, True] * args.rounds:
        wall, cpu = one_round(args.n, bookkeeping)
        label = "with the sent log" if bookkeeping else "without         "
        print(f"{label}: {wall:6.1f} us/answer wall, {cpu:6.1f} us/answer CPU")


if __name__ == "__main__":
    main()
