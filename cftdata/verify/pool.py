"""Answer comparison with math-verify in a pool of worker processes with a hard per-item time limit.

Why a process pool: math-verify's own timeout uses ``signal.alarm`` (main thread only), and some
inputs (a tower exponent such as ``2^{2^{2^{2^{100}}}}``) make sympy run for minutes or, in C code,
ignore signals altogether. So every comparison runs in a worker process, never in the caller:

* Workers are started with the ``spawn`` method: a fresh interpreter that imports only this module
  and math-verify (about 0.5 s), so they inherit no heavy state (datasets, threads, sockets) from the
  caller. Each one warms math-verify up before it reports ready (about 1 s more, in parallel; see
  ``warmup``); time limits start after that.
* The parent sends *batches* of pairs (one pickled message per batch, two batches in flight per
  worker) and gets one message back per batch, so IPC costs a few microseconds per pair. Batches
  hold about ``batch_target_s`` of work (from a running estimate of the time per pair), likely
  slow pairs are sent first and batches shrink near the end, so that the workers finish together.
* Each worker publishes the item it is working on and when it started in a small shared-memory
  array; the parent reads it to enforce the deadline without any per-item messages.
* Inside the worker a ``SIGALRM`` interval timer interrupts an item after ``timeout_s`` (the cheap
  path: the worker survives). If the worker has not come back ``kill_grace_s`` later (stuck in C
  code that never checks for signals), the parent kills it with ``SIGKILL``, records that item as
  ``timeout``, re-queues the rest of its batches and starts a replacement; the others keep going.
* Workers ignore ``SIGINT``: on Ctrl-C the caller's ``KeyboardInterrupt`` kills them all. They are
  daemonic and (on Linux) die with their parent, and :meth:`Verifier.close` / the context manager /
  garbage collection stop them.

Statuses: ``correct``, ``incorrect``, ``unverifiable`` (no gold answer, no predicted answer, an
answer over ``max_chars``, or a gold answer math-verify cannot parse), ``timeout``, ``error``.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import re
import signal
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing.connection import Connection, wait
from typing import Any

from cftdata.supervise import CRASH_SIGNALS, ENV_TEST_CRASH, NativeCrashError, crash_message, crash_now

__all__ = [
    "CORRECT",
    "ERROR",
    "INCORRECT",
    "STATUSES",
    "TIMEOUT",
    "UNVERIFIABLE",
    "Verifier",
    "VerifyResult",
    "WorkerStartupError",
    "check_pair",
    "verify_answers",
]

CORRECT = "correct"
INCORRECT = "incorrect"
UNVERIFIABLE = "unverifiable"
TIMEOUT = "timeout"
ERROR = "error"
#: Every status a :class:`VerifyResult` can have.
STATUSES = (CORRECT, INCORRECT, UNVERIFIABLE, TIMEOUT, ERROR)

_SHOW_CHARS = 300  # parsed forms are cut to this length in results


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of comparing one predicted answer with its gold answer.

    Attributes:
        status: ``correct``, ``incorrect``, ``unverifiable``, ``timeout`` or ``error``.
        pred_parsed: What the predicted answer was parsed to (a sympy ``str``), if it got that far.
        gold_parsed: What the gold answer was parsed to, if it got that far.
        detail: A short human-readable reason (e.g. ``"too long"``, ``"no gold answer"``).
    """

    status: str
    pred_parsed: str | None
    gold_parsed: str | None
    detail: str = ""

    @property
    def is_correct(self) -> bool:
        """``True`` only for status ``correct``."""
        return self.status == CORRECT


# --------------------------------------------------------------------------------------------------
# The comparison itself (runs in the workers)
# --------------------------------------------------------------------------------------------------

_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?")
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_NUMBER_WITH_WORDS_RE = re.compile(r"([-+]?\d+(?:\.\d+)?)\s+([A-Za-z]+\.?(?:\s+[A-Za-z]+\.?){0,2})")
_SCALE_WORDS = frozenset(
    {"hundred", "hundreds", "thousand", "thousands", "million", "millions", "billion", "billions",
     "trillion", "trillions", "dozen", "dozens", "percent", "times", "squared", "cubed", "pi"}
)
_DOLLAR_RE = re.compile(r"(?<!\\)\$")
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")

_mv: Any = None  # (parse, verify, extraction configs), imported lazily in the worker


def _math_verify() -> Any:
    global _mv
    if _mv is None:
        import logging

        import math_verify.grader
        import math_verify.parser
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

        # We disable math-verify's signal timeouts (our worker has its own); silence its warning.
        math_verify.grader.TIMEOUT_WARNING_SHOWN = True
        math_verify.parser.TIMEOUT_WARNING_SHOWN = True
        logging.getLogger("math_verify").setLevel(logging.ERROR)
        # Answers are already extracted and wrapped in \boxed{}: boxed first, then any LaTeX, then
        # plain expressions ("1/2", "2*x").
        configs = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
        _mv = (parse, verify, configs)
    return _mv


def _normalize(answer: str) -> str:
    s = answer.strip()
    if _THOUSANDS_RE.fullmatch(s):  # "5,600" -> "5600" (a tuple would be written "(5, 600)")
        s = s.replace(",", "")
    return s


def _parse(answer: str) -> list[Any]:
    """math-verify parse of an already-extracted answer; bare answers are wrapped in ``\\boxed{}``."""
    parse, _, configs = _math_verify()
    if _BOX_RE.search(answer) or _DOLLAR_RE.search(answer):  # delimited: let math-verify find the math
        parsed = parse(answer, extraction_config=configs, parsing_timeout=None)
        if parsed:
            return parsed
    return parse("\\boxed{" + answer + "}", extraction_config=configs, parsing_timeout=None)


def _show(parsed: list[Any]) -> str | None:
    if not parsed:
        return None
    return str(parsed[0])[:_SHOW_CHARS]


def _as_fraction(s: str) -> Fraction | None:
    if len(s) <= 200 and _PLAIN_NUMBER_RE.fullmatch(s):
        try:
            return Fraction(s)
        except (ValueError, ZeroDivisionError):
            return None
    return None


def _strip_unit_words(answer: str) -> str | None:
    """``"18 dollars"`` -> ``"18"``; ``None`` if the answer is not a number followed by plain words.

    Scale words ("5 million", "3 dozen", "2 pi") are meaningful and are never stripped.
    """
    m = _NUMBER_WITH_WORDS_RE.fullmatch(answer)
    if not m:
        return None
    words = {w.rstrip(".").lower() for w in m.group(2).split()}
    if words & _SCALE_WORDS:
        return None
    return m.group(1)


def check_pair(gold: str, pred: str) -> VerifyResult:
    """Compare one predicted answer with its gold answer (both already extracted, non-empty).

    This is the default check the workers run; call it directly only where no timeout is needed
    (it may hang on adversarial input). Steps:

    1. Exact rational comparison when both are plain numbers ("18", "18.00", "-3/4"), a fast path
       that can only say ``correct`` (anything else goes on to math-verify, e.g. "1/3" vs "0.333333").
    2. math-verify: both parsed (bare answers wrapped in ``\\boxed{}``), then ``verify(gold, pred)``
       (order matters: gold first).
    3. A number followed by unit words ("18 dollars") against a numeric gold: the number alone.
    """
    g_norm, p_norm = _normalize(gold), _normalize(pred)
    g_num, p_num = _as_fraction(g_norm), _as_fraction(p_norm)
    if g_num is not None and p_num is not None and g_num == p_num:
        return VerifyResult(CORRECT, p_norm, g_norm, "equal numbers")

    _, verify, _ = _math_verify()
    g_parsed = _parse(g_norm)
    if not g_parsed:
        return VerifyResult(UNVERIFIABLE, None, None, "gold answer could not be parsed")
    g_show = _show(g_parsed)
    p_parsed = _parse(p_norm)
    p_show = _show(p_parsed)
    if p_parsed and verify(g_parsed, p_parsed, timeout_seconds=None):
        return VerifyResult(CORRECT, p_show, g_show)
    if g_num is not None:
        bare = _strip_unit_words(p_norm)
        if bare is not None:
            b_parsed = _parse(bare)
            if b_parsed and verify(g_parsed, b_parsed, timeout_seconds=None):
                return VerifyResult(CORRECT, _show(b_parsed), g_show, "unit words ignored")
    if not p_parsed:
        return VerifyResult(INCORRECT, None, g_show, "predicted answer could not be parsed")
    return VerifyResult(INCORRECT, p_show, g_show)


CheckFn = Callable[[str, str], VerifyResult]

#: Run by each worker before it reports ready (``warmup=True``): one of each kind of answer, so that
#: sympy's lazily imported parts and caches are loaded during start-up rather than on the first items.
WARMUP_PAIRS: tuple[tuple[str, str], ...] = (
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
    ("\\left[ -\\frac{1}{2}, \\sqrt{3} \\right)", "[-1/2, \\sqrt{3})"),
    ("\\{1, 2\\}", "\\{2, 1\\}"),
    ("x \\in [-2, 7]", "[-2, 7]"),
    ("\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ -3 \\end{pmatrix}"),
    ("x^3 - 2x + 1", "(x-1)(x^2+x-1)"),
    ("y = 2x + 3", "2x+3"),
    ("x < 2", "(-\\infty, 2)"),
    ("3 + 4i", "4i + 3"),
    ("10\\%", "0.1"),
    ("30^\\circ", "30"),
    ("1010_{2}", "10"),
    ("\\text{(C)}", "C"),
)


# --------------------------------------------------------------------------------------------------
# Worker process
# --------------------------------------------------------------------------------------------------


class _SoftTimeout(BaseException):
    """Raised by the worker's SIGALRM handler (a BaseException so library ``except Exception`` misses it)."""


_ARMED = False


def _on_alarm(signum: int, frame: Any) -> None:
    if _ARMED:
        raise _SoftTimeout


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker when its parent dies (best effort).

    Only used when the workers were started from the main thread: the kernel ties this to the
    *thread* that started the process, and a worker thread may end long before its Verifier.
    Without it a worker still exits when its pipe closes, unless it is stuck in C code.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _limit_memory(limit_mb: int | None) -> None:
    if not limit_mb:
        return
    try:
        import resource

        nbytes = int(limit_mb) * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            nbytes = min(nbytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (nbytes, hard))
    except (ImportError, ValueError, OSError):
        pass


def _worker_main(
    conn: Connection,
    progress: Any,
    parent_pid: int,
    die_with_parent: bool,
    timeout_s: float,
    memory_limit_mb: int | None,
    check: CheckFn | None,
    warmup: bool,
) -> None:
    """Worker loop: receive a batch, check each pair under a SIGALRM timer, send the batch back."""
    global _ARMED
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and kills us
    if die_with_parent:
        _die_with_parent()
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            return
    _limit_memory(memory_limit_mb)
    fn: CheckFn = check or check_pair
    try:
        check_pair("\\frac{1}{2}", "0.5")  # import math-verify and sympy before the clock starts
        for gold, pred in WARMUP_PAIRS if warmup else ():
            with contextlib.suppress(Exception):
                check_pair(gold, pred)
                if check is not None:  # a custom check loads its own libraries before the clock starts too
                    check(gold, pred)
        signal.signal(signal.SIGALRM, _on_alarm)
    except BaseException as exc:  # report why we cannot start, then exit
        with contextlib.suppress(OSError):
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    crash_for_test = os.environ.get(ENV_TEST_CRASH) == "verify"
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        out: list[Any] = []
        started = time.monotonic()
        for seq, gold, pred in batch:
            progress[1] = time.monotonic()
            progress[0] = seq
            try:
                try:
                    _ARMED = True
                    signal.setitimer(signal.ITIMER_REAL, timeout_s)
                    if crash_for_test:
                        crash_now()
                    r = fn(gold, pred)
                    row = (seq, r.status, r.pred_parsed, r.gold_parsed, r.detail)
                finally:
                    _ARMED = False
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except _SoftTimeout:
                row = (seq, TIMEOUT, None, None, f"no result within {timeout_s:g} s")
            except MemoryError:
                row = (seq, ERROR, None, None, "out of memory")
            except Exception as exc:
                row = (seq, ERROR, None, None, f"{type(exc).__name__}: {exc}"[:_SHOW_CHARS])
            progress[0] = -1.0
            out.append(row)
        out.append(time.monotonic() - started)  # last element: the batch's wall time
        try:
            conn.send(out)
        except (OSError, ValueError):
            return


# --------------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------------


class _Worker:
    """One worker process as the parent sees it."""

    def __init__(self, ctx: Any, args: tuple[Any, ...]) -> None:
        self.progress = ctx.RawArray("d", 2)
        self.progress[0] = -1.0
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_worker_main,
            args=(child_conn, self.progress, os.getpid(),
                  threading.current_thread() is threading.main_thread(), *args),
            name="cftdata-verify",
            daemon=True,
        )
        self.proc.start()
        child_conn.close()  # so that reads see EOF when the worker dies
        self.started_at = time.monotonic()
        self.ready = False
        self.inflight: deque[list[int]] = deque()  # seqs of the batches sent, oldest first

    def current(self) -> tuple[int, float] | None:
        """The (seq, start time) of the item the worker is on, or ``None`` when it is between items."""
        seq = self.progress[0]
        if seq < 0:
            return None
        return int(seq), self.progress[1]

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(2.0)



def _stop_all(workers: list[_Worker], wait_s: float = 1.0) -> None:
    """Ask idle workers to exit, give them ``wait_s`` together, then kill the rest."""
    for w in workers:
        with contextlib.suppress(Exception):
            w.conn.send(None)
    deadline = time.monotonic() + wait_s
    for w in workers:
        with contextlib.suppress(Exception):
            w.proc.join(max(0.0, deadline - time.monotonic()))
    _kill_all(workers)


def _kill_all(workers: list[_Worker]) -> None:
    for w in workers:
        with contextlib.suppress(Exception):
            w.proc.kill()
    for w in workers:
        with contextlib.suppress(Exception):
            w.proc.join(2.0)
            w.conn.close()
    workers.clear()


class WorkerStartupError(RuntimeError):
    """The verification workers could not be started (e.g. math-verify cannot be imported)."""


class Verifier:
    """Compare predicted answers with gold answers in worker processes, with a hard time limit.

    Use it as a context manager (or call :meth:`close`)::

        with Verifier(workers=2, timeout_s=5.0) as v:
            results = v.verify_many([("\\\\frac{1}{2}", "0.5"), ("18", "17")])
        [r.status for r in results]  # ['correct', 'incorrect']

    Args:
        workers: Number of worker processes (at least 1; the caller never runs a comparison).
        timeout_s: Per-item wall-clock limit. The worker interrupts itself after ``timeout_s``; a
            worker still busy ``kill_grace_s`` later is killed and replaced. Either way the item's
            status is ``timeout`` and the other items go on.
        max_chars: Answers (gold or predicted) longer than this are ``unverifiable`` ("too long")
            without being parsed.
        kill_grace_s: How long after ``timeout_s`` a worker that did not interrupt itself is killed.
        batch_size: Largest number of pairs sent to a worker in one message. Batches are sized
            to about ``batch_target_s`` of work from the measured time per pair, and shrink near
            the end of a call so that the workers finish together.
        batch_target_s: The work one batch should hold, in seconds.
        memory_limit_mb: Address-space limit per worker (``RLIMIT_AS``), so that a runaway expression
            fails with ``error`` instead of exhausting the machine; ``None`` for no limit.
        startup_timeout_s: How long a worker may take to start before it is considered broken.
        warmup: Have each worker run :data:`WARMUP_PAIRS` before it reports ready (about 1 s of
            start-up that the first items would otherwise pay); ``False`` starts faster.
        check: A picklable module-level function ``(gold, pred) -> VerifyResult`` run in the workers
            instead of :func:`check_pair` (for custom comparisons and tests).
    """

    def __init__(
        self,
        workers: int = 2,
        timeout_s: float = 5.0,
        max_chars: int = 1000,
        *,
        kill_grace_s: float = 0.5,
        batch_size: int = 64,
        batch_target_s: float = 0.015,
        memory_limit_mb: int | None = 4096,
        startup_timeout_s: float = 60.0,
        check: CheckFn | None = None,
        warmup: bool = True,
        max_crashes: int = 3,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.workers = int(workers)
        self.timeout_s = float(timeout_s)
        self.max_chars = int(max_chars)
        self.kill_grace_s = float(kill_grace_s)
        self.batch_size = max(1, int(batch_size))
        self.batch_target_s = float(batch_target_s)
        self._pair_s = 0.002  # running estimate of the seconds one pair takes in a worker
        self.memory_limit_mb = memory_limit_mb
        self.startup_timeout_s = float(startup_timeout_s)
        self.check = check
        self.warmup = bool(warmup)
        self.restarts = 0  #: workers killed and replaced so far (timeouts, crashes)
        self.max_crashes = int(max_crashes)
        self.crashes = 0  #: workers dead by a crash signal (SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGFPE)
        self._ctx = mp.get_context("spawn")
        self._pool: list[_Worker] = []
        self._closed = False
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _kill_all, self._pool)

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Verifier:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, wait_ready: bool = True) -> None:
        """Start the workers now (otherwise the first :meth:`verify_many` does); optionally wait until ready."""
        if self._closed:
            raise RuntimeError("this Verifier is closed")
        with self._lock:
            try:
                while len(self._pool) < self.workers:
                    self._pool.append(self._spawn())
                if wait_ready:
                    while not all(w.ready for w in self._pool):
                        self._pump(None, 0.5)
            except BaseException:
                _kill_all(self._pool)
                raise

    def close(self) -> None:
        """Stop the workers (idempotent). The Verifier cannot be used afterwards."""
        self._closed = True
        _stop_all(self._pool)

    def _spawn(self) -> _Worker:
        return _Worker(self._ctx, (self.timeout_s, self.memory_limit_mb, self.check, self.warmup))

    # -- the work ----------------------------------------------------------------------------------

    def verify_many(self, pairs: Sequence[tuple[str | None, str | None]]) -> list[VerifyResult]:
        """Verify ``(gold_answer, predicted_answer)`` pairs; results come back in the same order.

        Answers are the already-extracted answer strings (see :func:`cftdata.verify.extract_answer`).
        A missing (``None``/blank) gold or prediction, or one longer than ``max_chars``, is
        ``unverifiable`` without being sent to a worker. A pair that takes longer than
        ``timeout_s`` is ``timeout`` (its worker is killed and replaced if it does not stop by
        itself); an exception or a crashed worker makes it ``error``. Other pairs are unaffected.

        Raises:
            WorkerStartupError: The workers cannot start (e.g. math-verify is not installed).
        """
        if self._closed:
            raise RuntimeError("this Verifier is closed")
        results: list[VerifyResult | None] = [None] * len(pairs)
        items: dict[int, tuple[int, str, str]] = {}
        for i, (gold, pred) in enumerate(pairs):
            g = None if gold is None else str(gold)
            p = None if pred is None else str(pred)
            pre = self._precheck(g, p)
            if pre is not None:
                results[i] = pre
            else:
                items[i] = (i, g, p)  # type: ignore[assignment]
        if items:
            with self._lock:
                try:
                    _Run(self, items, results).run()
                except BaseException:
                    # Interrupted (Ctrl-C) or broken: no worker may keep stale batches.
                    _kill_all(self._pool)
                    raise
        return results  # type: ignore[return-value]

    def _precheck(self, gold: str | None, pred: str | None) -> VerifyResult | None:
        if gold is None or not gold.strip():
            return VerifyResult(UNVERIFIABLE, None, None, "no gold answer")
        if pred is None or not pred.strip():
            return VerifyResult(UNVERIFIABLE, None, None, "no extractable answer")
        if len(gold) > self.max_chars or len(pred) > self.max_chars:
            return VerifyResult(UNVERIFIABLE, None, None, "too long")
        return None

    def _pump(self, run: _Run | None, timeout: float | None) -> None:
        """Wait for messages or worker deaths (up to ``timeout`` s), handle them, enforce deadlines."""
        pool = self._pool
        by_conn = {w.conn: w for w in pool}
        by_sentinel = {w.proc.sentinel: w for w in pool}
        dead: dict[_Worker, None] = {}
        for obj in wait([*by_conn, *by_sentinel], timeout):
            w = by_conn.get(obj)  # type: ignore[call-overload]
            if w is not None:
                if not self._drain(w, run):
                    dead[w] = None
            else:
                dead[by_sentinel[obj]] = None  # type: ignore[index]
        now = time.monotonic()
        hard = self.timeout_s + self.kill_grace_s
        for w in list(pool):
            if w in dead:
                self._drain(w, run)  # results it sent before dying still count
                w.proc.join(1.0)  # its pipe can close just before it can be reaped
                if not w.ready:
                    raise WorkerStartupError(
                        f"a verification worker exited while starting (exit code {w.proc.exitcode})"
                    )
                cur = w.current()
                self._replace(w, run, cur[0] if cur else None, ERROR, self._death(w.proc.exitcode))
            elif not w.ready:
                if now - w.started_at > self.startup_timeout_s:
                    raise WorkerStartupError(
                        f"a verification worker did not start within {self.startup_timeout_s:g} s"
                    )
            elif w.inflight:
                cur = w.current()
                if cur is not None and now - cur[1] > hard and any(cur[0] in b for b in w.inflight):
                    self._replace(w, run, cur[0], TIMEOUT,
                                  f"no result within {self.timeout_s:g} s; worker killed")

    def _death(self, code: int | None) -> str:
        """The detail of a worker's death; a native crash (by signal) counts, and ``max_crashes`` of them stop
        the build with :class:`~cftdata.supervise.NativeCrashError` (a native library is broken here, not
        one pair)."""
        if code is None or code >= 0 or -code not in CRASH_SIGNALS:
            return f"worker died (exit code {code})"
        self.crashes += 1
        if self.crashes >= self.max_crashes:
            raise NativeCrashError(crash_message(
                f"a math-verify answer-checking worker ({self.crashes} crashes so far)", -code,
                "Check that math-verify, sympy and antlr4-python3-runtime are installed from matching wheels "
                "(pip install -e . reinstalls them), or build without the verify section"))
        return f"worker crashed ({signal.Signals(-code).name}); the pair it was checking is marked error"

    def _drain(self, w: _Worker, run: _Run | None) -> bool:
        """Read every complete message from ``w``; ``False`` once its pipe is closed."""
        try:
            while w.conn.poll():
                msg = w.conn.recv()
                if isinstance(msg, tuple):
                    if msg[0] == "ready":
                        w.ready = True
                    elif msg[0] == "failed":
                        raise WorkerStartupError(f"a verification worker failed to start: {msg[1]}")
                    continue
                if w.inflight:
                    w.inflight.popleft()
                elapsed = msg.pop()
                if msg and not any(row[1] == TIMEOUT for row in msg):
                    self._pair_s = 0.7 * self._pair_s + 0.3 * min(elapsed / len(msg), 0.1)
                if run is not None:
                    run.record(msg)
        except (EOFError, OSError):
            return False
        return True

    def _replace(self, w: _Worker, run: _Run | None, seq: int | None, status: str, detail: str) -> None:
        """Kill ``w``, settle its in-flight items (the stuck one gets ``status``), start a replacement."""
        w.kill()
        self._drain(w, run)
        with contextlib.suppress(Exception):
            w.conn.close()
        if run is not None:
            run.settle(w, seq, status, detail)
        self.restarts += 1
        self._pool[self._pool.index(w)] = self._spawn()


_TUPLE_RE = re.compile(r"[(\[{].*,")


def _cost_class(gold: str, pred: str) -> int:
    """A coarse guess of how slow a pair is (more negative: slower), for longest-first dispatch."""
    if _as_fraction(gold.strip()) is not None and _as_fraction(pred.strip()) is not None:
        return 0  # plain numbers: microseconds to a millisecond
    size = min((len(gold) + len(pred)) // 16, 8)
    tuple_like = 4 if _TUPLE_RE.search(gold) or _TUPLE_RE.search(pred) else 0
    return -(1 + size + tuple_like)


class _Run:
    """The state of one :meth:`Verifier.verify_many` call."""

    #: An item in flight on this many workers that died between items is given up as ``error``.
    MAX_ATTEMPTS = 3

    def __init__(
        self,
        verifier: Verifier,
        items: dict[int, tuple[int, str, str]],
        results: list[VerifyResult | None],
    ) -> None:
        self.v = verifier
        self.items = items
        self.results = results
        # Longest-first: likely slow pairs (long ones, tuples and intervals) go out first, so that
        # the cheap ones fill the gaps at the end and the workers finish together. The sort is
        # stable and coarse, so neighbouring pairs (often the same gold answer) stay together.
        self.todo: deque[int] = deque(sorted(items, key=lambda i: _cost_class(*items[i][1:])))
        self.remaining = len(items)
        self.attempts: dict[int, int] = {}

    def record(self, rows: list[tuple[Any, ...]]) -> None:
        for seq, status, pred_p, gold_p, detail in rows:
            if self.results[seq] is None:
                self.remaining -= 1
                self.results[seq] = VerifyResult(status, pred_p, gold_p, detail)

    def settle(self, w: _Worker, seq: int | None, status: str, detail: str) -> None:
        """After ``w`` was killed or died: blame ``seq`` (if any) and re-queue its other items."""
        leftover = [s for batch in w.inflight for s in batch if self.results[s] is None]
        w.inflight.clear()
        if seq is not None and seq in leftover:
            self.record([(seq, status, None, None, detail)])
            leftover.remove(seq)
        elif leftover:  # died between items: retry them, but not forever
            first = leftover[0]
            self.attempts[first] = self.attempts.get(first, 0) + 1
            if self.attempts[first] >= self.MAX_ATTEMPTS:
                self.record([(first, ERROR, None, None, f"{detail}, {self.MAX_ATTEMPTS} times")])
                leftover.remove(first)
        self.todo.extendleft(reversed(leftover))

    def run(self) -> None:
        v = self.v
        while len(v._pool) < v.workers:
            v._pool.append(v._spawn())
        n_workers = len(v._pool)
        while self.remaining > 0:
            # Dispatch: keep two batches in flight per ready worker.
            for w in v._pool:
                while w.ready and len(w.inflight) < 2 and self.todo:
                    by_time = int(v.batch_target_s / max(v._pair_s, 1e-5))
                    size = max(1, min(v.batch_size, by_time, math.ceil(len(self.todo) / (2 * n_workers))))
                    seqs = [self.todo.popleft() for _ in range(min(size, len(self.todo)))]
                    w.inflight.append(seqs)
                    try:
                        w.conn.send([self.items[s] for s in seqs])
                    except (OSError, ValueError):
                        break  # it died; _pump sees its sentinel
            v._pump(self, self._next_deadline())

    def _next_deadline(self) -> float:
        """Seconds until the earliest per-item or startup deadline (at most 1 s)."""
        v = self.v
        now = time.monotonic()
        soonest = now + 1.0
        hard = v.timeout_s + v.kill_grace_s
        for w in v._pool:
            if not w.ready:
                soonest = min(soonest, w.started_at + v.startup_timeout_s)
            elif w.inflight:
                cur = w.current()
                soonest = min(soonest, (cur[1] if cur else now) + hard)
        return max(0.0, soonest - now) + 0.001


def verify_answers(
    pairs: Sequence[tuple[str | None, str | None]],
    workers: int = 2,
    timeout_s: float = 5.0,
    max_chars: int = 1000,
) -> list[VerifyResult]:
    """One-shot convenience: start a :class:`Verifier`, verify ``(gold, pred)`` pairs, stop it.

    For repeated calls keep one :class:`Verifier` open instead (starting workers takes ~0.5 s).
    """
    with Verifier(workers=workers, timeout_s=timeout_s, max_chars=max_chars) as verifier:
        return verifier.verify_many(pairs)
