"""Shared machinery for backends that send one HTTP request per row (OpenAI, Anthropic, ...).

Subclasses implement :meth:`OnlineBackend.send`: one attempt, returning a Result or raising a
:class:`Retryable` (429, 5xx, connection errors, timeouts). This class runs all requests on an event
loop under the :class:`RateLimiter`, retries with jittered exponential backoff, honours
Retry-After, and stops with :class:`NoProgressError` when nothing finishes for ``stall_timeout_s``.

Retry policy: 5xx, connection errors, timeouts and unparseable bodies count against
``max_retries`` (backoff 0.5 s, 1 s, 2 s... up to 60 s, plus up to 1 s of jitter, or the server's
Retry-After if longer). 429s are handed to the limiter (cool-down, fewer requests in flight) and
retried as soon as it lets them through; they have their own budget of
:data:`RATE_LIMITED_ATTEMPTS` attempts per request so that a long cool-down does not turn rows into
failures (a server that never lets anything through ends the run through the stall timeout).

How many requests are in flight is the :class:`~cftdata.backends.limits.RateLimiter`'s business:
sized from the rate limits and the observed latency, ``concurrency`` being only its ceiling. The
runner keeps a few more row tasks than the limiter's current size, so memory follows what is in
flight, not the ceiling.

Two ways to run: :meth:`OnlineBackend.generate` runs a list of requests on a loop of its own and
returns when all are answered; :meth:`OnlineBackend.submit` hands requests to one event loop in a
background thread that lives as long as the backend and keeps the window full from a queue, so a
pipeline that submits shard after shard (``submits_ahead``) never lets the pipe drain between
shards (at 5 s per request, a drain costs ~10 s per shard). Submitting blocks while more than
:meth:`OnlineBackend.max_ahead` requests are unfinished, which bounds memory.

Failures are classified in one place, :func:`failure_kind` (status code or exception type -> kind).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import sys
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from cftdata.backends.base import Backend, OnResult, Request, Result
from cftdata.backends.breaker import ProbeFailed
from cftdata.backends.http import HTTPClient, TransportError, proxy_for
from cftdata.backends.limits import RateLimiter, parse_retry_after
from cftdata.errors import BackendConfigError, NoProgressError
from cftdata.recipe import ModelSpec

_T = TypeVar("_T")

log = logging.getLogger("cftdata.backends")

#: Attempts per request that may end in 429 before the row fails as ``rate_limited``.
RATE_LIMITED_ATTEMPTS = 50

_COUNTER_OF_KIND = {"rate_limited": "rate_limited", "server_error": "server_errors",
                    "connection": "connection_errors", "timeout": "timeouts", "bad_response": "bad_responses"}

#: Failure kinds worth another attempt; every other kind fails its row at once.
RETRYABLE = frozenset({"rate_limited", "server_error", "connection", "timeout", "bad_response"})

#: HTTP status -> failure kind, where the status alone decides (others: see :func:`failure_kind`).
STATUS_KINDS = {401: "auth", 403: "auth", 404: "not_found", 408: "timeout", 429: "rate_limited",
                529: "server_error"}

#: How often the runner re-sizes the limiter while it ramps up (every slot taken, nothing back yet),
#: and how often otherwise (every grant and release re-sizes it then), in seconds.
TICK_S = 0.05
IDLE_TICK_S = 0.5


def failure_kind(status: int | None = None, exc: BaseException | None = None) -> str | None:
    """The one classification of failed attempts: an HTTP status or an exception -> a kind, None for success.

    Kinds: ``rate_limited`` (429), ``server_error`` (5xx, 529 overloaded), ``bad_response`` (a 2xx
    body that is not the API's answer: not JSON, an HTML page, no ``choices``), ``connection``
    (refused, reset, TLS, proxy: :class:`~cftdata.backends.http.TransportError`),
    ``timeout`` (no answer in time, 408), ``auth`` (401, 403), ``not_found`` (404), ``bad_request``
    (every other 4xx). The first five are retried (:data:`RETRYABLE`); the others fail the row at
    once as ``http_<status>``. Decided by status code and exception type, never by message text.
    ``auth``, ``not_found``, ``connection`` and ``bad_response`` are also *systemic* when they repeat
    across rows: the backend's :class:`~cftdata.backends.breaker.CircuitBreaker` then stops the build.
    """
    if exc is not None:
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return "timeout"
        if isinstance(exc, TransportError):
            return "connection"
        return "bad_response" if isinstance(exc, (ValueError, KeyError, TypeError, IndexError, AttributeError)) else None
    if status is None or 200 <= status < 300:
        return None
    if status in STATUS_KINDS:
        return STATUS_KINDS[status]
    return "server_error" if status >= 500 else "bad_request"


def kind_of_error(error: str | None) -> str | None:
    """The failure kind of a Result's ``error`` (``http_401`` -> ``auth``...); None for a success."""
    if error is not None and error.startswith("http_") and error[5:].isdigit():
        return failure_kind(int(error[5:]))
    return error


def check_status(status: int, headers: Mapping[str, str], body: bytes, reason: str) -> Result | None:
    """Apply :func:`failure_kind` to an answer: None if it succeeded, a fail-fast Result, or raise Retryable
    (the error body is read only for a failure)."""
    kind = failure_kind(status)
    if kind is None:
        return None
    detail = error_message(status, body, reason)
    if kind in RETRYABLE:
        raise Retryable(kind, detail, parse_retry_after(headers), headers)
    return Result(error=f"http_{status}", error_detail=detail)


class Retryable(Exception):
    """A failed attempt worth retrying. ``kind`` is 'rate_limited', 'server_error', 'connection', 'timeout'."""

    def __init__(self, kind: str, detail: str = "", retry_after: float | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after
        self.headers = headers


def _raise_open_files(wanted: int) -> None:
    """Raise this process's soft limit on open files toward ``wanted`` (one socket per request in flight)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def estimate_tokens(request: Request) -> int:
    """A cheap token estimate for pacing: ~4 characters per token plus the output budget."""
    chars = sum(len(c) for _, c in request.messages)
    return chars // 4 + int(request.param_dict.get("max_tokens") or 512)


async def _with_timeout(coro: Coroutine[Any, Any, _T], seconds: float) -> _T:
    """``await coro`` with a deadline (raises TimeoutError); no extra task on Python 3.11+."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await coro
    return await asyncio.wait_for(coro, seconds)  # pragma: no cover - Python 3.10


class OnlineBackend(Backend):
    """Async, rate-limited, retrying runner around a single-request :meth:`send`."""

    submits_ahead = True
    reports_sends = True
    delivers_ahead = True
    records_attempts = True

    #: Backoff before retry n (n = 1, 2, ...): ``initial * 2**(n-1)`` capped at ``max``, plus jitter.
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    backoff_jitter_s: float = 1.0

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.limiter = RateLimiter(spec.concurrency, spec.requests_per_minute, spec.tokens_per_minute)
        _raise_open_files(spec.concurrency + 256)
        self.counters: dict[str, int] = {"requests": 0, "retries": 0, "rate_limited": 0, "server_errors": 0,
                                         "connection_errors": 0, "timeouts": 0, "bad_responses": 0, "failed": 0}
        #: Strings (API keys) that must never appear in an error detail; subclasses add theirs.
        self.secrets: list[str] = []
        self._ceiling_warned = False
        self._bg: _Background | None = None

    @abstractmethod
    async def send(self, request: Request) -> tuple[Result, Mapping[str, str] | None]:
        """One attempt. Return (result, response headers) or raise Retryable."""

    async def aclose(self) -> None:
        """Close async clients (called on the loop that used them)."""

    def stats(self) -> dict[str, Any]:
        ls = self.limiter.stats
        return {**self.counters, "min_concurrency": ls.min_concurrency, "max_concurrency": ls.max_concurrency,
                "peak_in_flight": ls.peak_in_flight, "concurrency_ceiling": self.limiter.max_concurrency,
                "limiter_wait_s": round(ls.waits_s, 3),
                "min_pace": round(ls.min_pace, 3),
                "server_rpm_limit": ls.header_rpm,
                "server_tpm_limit": ls.header_tpm}

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for s in self.secrets:
            if s and s in text:
                text = text.replace(s, "***")
        return text

    async def _one(self, request: Request) -> Result:
        """One row: attempts under the limiter until a Result, a fail-fast error or the retry budget ends.

        Every attempt's outcome goes to the backend's circuit breaker (when the model layer set one); once it
        trips, this row raises its :class:`~cftdata.errors.EndpointError` instead of reporting a failure."""
        est = estimate_tokens(request)
        max_retries = self.spec.max_retries
        hard_failures = 0  # failed attempts that count against max_retries (all but 429s)
        limiter = self.limiter
        breaker = self.breaker
        attempt_no = 0
        while True:
            attempt_no += 1
            if attempt_no > 1:
                self.counters["retries"] += 1
            if breaker is not None:
                while not breaker.may_start():  # on probation: a few attempts in flight; raises once tripped
                    await asyncio.sleep(0.05)
            try:
                sent_at = await limiter.acquire(est)
            except BaseException:
                if breaker is not None:
                    breaker.abandoned()
                raise
            self.counters["requests"] += 1
            if attempt_no == 1 and self.on_send is not None:
                self.on_send(request)
            try:
                result, headers = await _with_timeout(self.send(request), self.spec.timeout_s)
            except asyncio.TimeoutError:
                await limiter.release(sent_at=sent_at, ok=False)
                self.counters["timeouts"] += 1
                failure = Retryable("timeout", f"no answer within {self.spec.timeout_s:g}s")
            except Retryable as e:
                key = _COUNTER_OF_KIND.get(e.kind)
                if key:
                    self.counters[key] += 1
                await limiter.release(rate_limited=e.kind == "rate_limited", retry_after=e.retry_after,
                                      headers=e.headers, sent_at=sent_at, ok=False)
                failure = e
            except asyncio.CancelledError:
                await limiter.release(sent_at=sent_at, ok=False)
                if breaker is not None:
                    breaker.abandoned()
                raise
            except Exception as e:  # a bug or a surprise: this row fails, the run goes on
                await limiter.release(sent_at=sent_at, ok=False)
                self.counters["failed"] += 1
                self._outcome("client_error")
                return Result(error="client_error", error_detail=self.redact(f"{type(e).__name__}: {e}")[:2000])
            else:
                await limiter.release(headers=headers, sent_at=sent_at)
                if not result.ok:
                    self.counters["failed"] += 1
                    if result.error_detail:
                        result.error_detail = self.redact(result.error_detail)
                self._outcome(kind_of_error(result.error), result.error_detail)
                return result
            self._outcome(failure.kind, self.redact(failure.detail))
            if failure.kind == "rate_limited":
                # The limiter's cool-down and pacing space the retry; 429s have their own budget.
                if attempt_no < max(RATE_LIMITED_ATTEMPTS, max_retries + 1):
                    continue
            else:
                hard_failures += 1
                if hard_failures <= max_retries:
                    backoff = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (hard_failures - 1))
                    backoff += random.uniform(0, self.backoff_jitter_s)
                    await asyncio.sleep(max(backoff, min(failure.retry_after or 0.0, self.backoff_max_s)))
                    continue
            self.counters["failed"] += 1
            return Result(error=failure.kind,
                          error_detail=self.redact(f"gave up after {attempt_no} attempts: {failure.detail}")[:2000])

    def _outcome(self, kind: str | None, detail: str = "") -> None:
        """Tell the breaker how an attempt ended; a failure raises instead once the breaker tripped (a healthy
        answer is always delivered: it is paid for and cached)."""
        if self.breaker is None:
            return
        self.breaker.finished(kind, detail)
        if kind is not None:
            self.breaker.check()

    def _stall_message(self, in_flight: int) -> str:
        c = self.counters
        seen = ", ".join(f"{k} {c[k]}" for k in ("rate_limited", "server_errors", "connection_errors", "timeouts")
                         if c.get(k))
        return (
            f"Backend {self.spec.backend!r} (model {self.spec.model!r}) finished no request in "
            f"{self.spec.stall_timeout_s:g}s ({in_flight} in flight; {c['requests']} attempts so far"
            f"{', ' + seen if seen else ''}). The server may be down, overloaded or rate limiting; "
            "finished answers are cached, so rerunning the same command resumes. "
            "Raise stall_timeout_s if the model is just slow."
        )

    async def _run(self, requests: Sequence[Request], on_result: OnResult) -> None:
        """Keep a window of row tasks going; report each result from its task's done callback.

        Results are handed to ``on_result`` (the cache) straight from the callbacks, so this
        coroutine wakes only to check for a stall, not once per answer.
        """
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task] = set()
        index_of: dict[asyncio.Task, int] = {}
        all_done: asyncio.Future[None] = loop.create_future()
        queue = iter(range(len(requests)))
        limiter = self.limiter
        last_progress = time.monotonic()

        def on_done(t: asyncio.Task) -> None:
            nonlocal last_progress
            pending.discard(t)
            i = index_of.pop(t)
            if t.cancelled():
                return
            if all_done.done():
                t.exception()  # retrieved: the run already ended (a tripped breaker raises in every row task)
                return
            try:
                on_result(i, t.result())
            except BaseException as e:  # a failing callback (or a bug in _one) ends the run
                all_done.set_exception(e)
                return
            last_progress = time.monotonic()
            refill()
            if not pending:
                all_done.set_result(None)

        def refill() -> None:
            # A quarter more tasks than slots: some wait out a retry backoff, and waiters tell the
            # limiter there is work for more slots.
            cap = limiter.cap()
            window = cap + max(8, cap // 4)
            while len(pending) < window:
                i = next(queue, None)
                if i is None:
                    return
                t = loop.create_task(self._one(requests[i]))
                t.add_done_callback(on_done)
                index_of[t] = i
                pending.add(t)

        refill()
        if not pending:
            return
        limiter.on_grow = refill
        try:
            while not all_done.done():
                timeout = self.spec.stall_timeout_s - (time.monotonic() - last_progress)
                if timeout <= 0:
                    raise NoProgressError(self._stall_message(len(pending)))
                await asyncio.wait([all_done], timeout=min(timeout, TICK_S if limiter.ramping() else IDLE_TICK_S))
                if not all_done.done():
                    limiter.tick()
            all_done.result()
        finally:
            limiter.on_grow = None
            rest = list(pending)
            for t in rest:
                t.cancel()
            if rest:
                await asyncio.gather(*rest, return_exceptions=True)

    def generate(self, requests: Sequence[Request], on_result: OnResult) -> None:
        if self._bg is not None:  # requests submitted ahead are running: join the same loop
            self._generate_in_background(requests, on_result)
            return

        async def main() -> None:
            try:
                await self._run(requests, on_result)
            finally:
                await self.aclose()

        try:
            asyncio.run(main())
        finally:
            self._warn_ceiling()

    # -- submitting ahead: one event loop in a background thread for the life of the backend ---------

    def submit(self, requests: Sequence[Request], on_result: OnResult | None = None) -> None:
        """Start ``requests`` in the background and return; ``on_result(i, result)`` is called from the
        background thread as each finishes. Blocks while more than :meth:`max_ahead` are unfinished,
        so a caller that submits a whole build holds a bounded number of requests at a time."""
        assert on_result is not None, "online backends deliver submitted results through on_result"
        bg = self._background()
        for i, r in enumerate(requests):
            with bg.cond:
                if bg.outstanding >= self.max_ahead():
                    bg.wait_below(self.max_ahead())
                if bg.error is not None:
                    raise bg.error
                bg.outstanding += 1
            bg.queue.append((r, i, on_result))
        bg.wake()

    def max_ahead(self) -> int:
        """Unfinished submitted requests allowed at once: a few windows' worth, at least 1000."""
        return max(1000, 4 * self.limiter.cap())

    def background_error(self) -> BaseException | None:
        """What stopped the background loop (a stall), if anything did."""
        return self._bg.error if self._bg is not None else None

    def _background(self) -> _Background:
        if self._bg is None:
            self._bg = _Background(self)
        return self._bg

    def _generate_in_background(self, requests: Sequence[Request], on_result: OnResult) -> None:
        import queue

        done: queue.SimpleQueue[tuple[int, Result]] = queue.SimpleQueue()
        self.submit(requests, lambda i, r: done.put((i, r)))
        for _ in range(len(requests)):
            while True:
                try:
                    i, r = done.get(timeout=0.5)
                    break
                except queue.Empty:
                    if (err := self.background_error()) is not None:
                        raise err from None
            on_result(i, r)

    def close(self) -> None:
        if self._bg is not None:
            self._bg.stop()
            self._bg = None
        self._warn_ceiling()

    def _warn_ceiling(self) -> None:
        """Say once when the ceiling, not the rate limit, decided how fast this backend went."""
        need = self.limiter.stats.ceiling_need
        if need and not self._ceiling_warned:
            self._ceiling_warned = True
            log.warning(
                "Backend %r (model %r): the rate limit at the observed latency needs ~%d requests in flight, "
                "over the ceiling concurrency=%d, so the build ran slower than the limit allows. Raise "
                "concurrency in the recipe to use the whole limit.",
                self.spec.backend, self.spec.model, need, self.limiter.max_concurrency)


class _Background:
    """A backend's requests submitted ahead: an event loop in a daemon thread, fed through a deque.

    Keeps the limiter's window of row tasks full from the queue, for as long as the backend lives
    (so the pipe never drains between shards). A stall (nothing finished for ``stall_timeout_s``
    while work is pending) is kept in ``error`` and raised in the caller's thread by whoever waits.
    """

    def __init__(self, backend: OnlineBackend) -> None:
        import threading

        self.backend = backend
        self.queue: deque[tuple[Request, int, OnResult]] = deque()
        self.cond = threading.Condition()
        self.outstanding = 0
        #: While a submitter is blocked: it is woken when ``outstanding`` falls to this (a batch at a time,
        #: not one wake-up per answer).
        self.low_water: int | None = None
        self.error: BaseException | None = None
        self._stopping = False
        self._ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, name=f"cftdata-{backend.name}", daemon=True)
        self.thread.start()
        self._ready.wait()

    def wake(self) -> None:
        if self.loop is not None and self._event is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed
                self.loop.call_soon_threadsafe(self._event.set)

    def wait_below(self, high: int) -> None:
        """Block (holding :attr:`cond`) until a quarter of ``high`` submitted requests have finished, or an
        error stopped the loop. Called by a submitter that found ``high`` requests unfinished."""
        self.low_water = high - max(1, high // 4)
        try:
            self.wake()
            while self.outstanding > self.low_water and self.error is None:
                self.cond.wait(0.5)
        finally:
            self.low_water = None

    def stop(self) -> None:
        self._stopping = True
        self.wake()
        self.thread.join(10)

    def _main(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
            self._ready.set()
            try:
                await self._serve()
            except BaseException as e:  # a stall: every waiter raises it
                with self.cond:
                    self.error = e
                    self.cond.notify_all()
            finally:
                await self.backend.aclose()

        asyncio.run(main())

    async def _serve(self) -> None:
        backend, limiter = self.backend, self.backend.limiter
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task] = set()
        last_progress = time.monotonic()
        assert self._event is not None

        def finished(callback: OnResult, i: int, t: asyncio.Task) -> None:
            nonlocal last_progress
            pending.discard(t)
            if t.cancelled():
                return
            last_progress = time.monotonic()
            try:
                callback(i, t.result())
            except BaseException as e:  # the receiver failed (its store, a bug): stop, and say why
                self.error = self.error or e
                self._stopping = True
            finally:
                with self.cond:
                    self.outstanding -= 1
                    if self.error is not None or (self.low_water is not None and self.outstanding <= self.low_water):
                        self.cond.notify_all()
            refill()

        def refill() -> None:
            if self._stopping:  # stopping: no new row tasks (a tripped breaker, close())
                return
            cap = limiter.cap()
            window = cap + max(8, cap // 4)
            while len(pending) < window and self.queue:
                request, i, callback = self.queue.popleft()
                t = loop.create_task(backend._one(request))
                t.add_done_callback(functools.partial(finished, callback, i))
                pending.add(t)

        limiter.on_grow = refill
        try:
            while not self._stopping:
                refill()
                if pending and time.monotonic() - last_progress > backend.spec.stall_timeout_s:
                    raise NoProgressError(backend._stall_message(len(pending)))
                if not pending:
                    last_progress = time.monotonic()
                self._event.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._event.wait(), TICK_S if limiter.ramping() else IDLE_TICK_S)
                limiter.tick()
        finally:
            limiter.on_grow = None
            for t in list(pending):
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)


def error_message(status: int, body: bytes, fallback: str) -> str:
    """``HTTP <status>: <the server's message>`` from an OpenAI- or Anthropic-style error body."""
    msg = None
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message")
        elif isinstance(err, str):
            msg = err
    return f"HTTP {status}: {msg or fallback}"[:1000]


class HTTPBackend(OnlineBackend):
    """An online backend that POSTs JSON to one endpoint through :class:`HTTPClient`.

    Subclasses give the endpoint, the headers, the body of a request and the Result of a 2xx body.
    """

    endpoint: str = ""
    #: The path of the provider's models list (a check that spends nothing), under the base URL.
    models_path: str = "/models"

    def __init__(self, spec: ModelSpec, base_url: str) -> None:
        super().__init__(spec)
        self._base_url = base_url.rstrip("/")
        try:
            self._proxy = proxy_for(self._base_url)
        except ValueError as e:
            raise BackendConfigError(f"Backend {spec.backend!r} (model {spec.model!r}): the proxy in the "
                                     f"environment cannot be used: {e}.") from None
        self._http: HTTPClient | None = None

    @property
    def address(self) -> str:
        return self._base_url

    def headers(self) -> dict[str, str]:
        """Headers sent with every request (the key among them)."""
        return {}

    def probe(self, spend: bool) -> str:
        """One minimal request (``max_tokens`` 1), or without ``spend`` the models list; raises
        :class:`~cftdata.backends.breaker.ProbeFailed` for a systemic failure (refused key, unknown model or path,
        nothing listening, not the API answering, no answer in time). A 400, a 429 or a 5xx to the probe is
        not one: the endpoint is there and took the key."""
        if self._bg is not None:
            return "already running"

        async def main() -> str:
            try:
                return await (self._probe_call() if spend else self._probe_models())
            finally:
                await self.aclose()

        return asyncio.run(main())

    async def _probe_call(self) -> str:
        request = Request.make(self.spec.model, [{"role": "user", "content": "Reply with OK."}], {"max_tokens": 1})
        t0 = time.monotonic()
        try:
            result, _ = await _with_timeout(self.send(request), self.spec.timeout_s)
        except asyncio.TimeoutError:
            raise ProbeFailed("timeout", f"no answer within {self.spec.timeout_s:g}s") from None
        except Retryable as e:
            if e.kind in ("connection", "bad_response"):
                raise ProbeFailed(e.kind, self.redact(e.detail)) from None
            return f"reachable, but answered {e.kind.replace('_', ' ')}: {self.redact(e.detail)[:200]}"
        if result.ok:
            return f"OK, answered in {time.monotonic() - t0:.2f} s"
        detail = self.redact(result.error_detail)
        kind = kind_of_error(result.error)
        if kind in ("auth", "not_found"):
            raise ProbeFailed(kind, detail)
        return f"reachable, key accepted; the probe itself got {detail[:200]}"

    async def _probe_models(self) -> str:
        if self._http is None:
            self._http = HTTPClient(self._base_url, self.headers(), max_idle=4, proxy=self._proxy)
        try:
            resp = await _with_timeout(self._http.request("GET", self.models_path), min(self.spec.timeout_s, 30))
        except asyncio.TimeoutError:
            raise ProbeFailed("timeout", "the models list did not come within 30s") from None
        except TransportError as e:
            raise ProbeFailed("connection", str(e)) from None
        detail = self.redact(error_message(resp.status, resp.body, resp.reason))
        kind = failure_kind(resp.status)
        if kind == "auth":
            raise ProbeFailed(kind, detail)
        if kind is not None:
            return f"not checked: no models list here ({detail[:120]})"
        try:
            ids = [m["id"] for m in json.loads(resp.body)["data"]]
        except Exception as e:
            if failure_kind(exc=e) is None:
                raise
            raise ProbeFailed("bad_response", f"the models list at {self.models_path} is not the API's "
                                              f"({resp.headers.get('content-type', 'no content type')})") from None
        if ids and self.spec.model not in ids:
            shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
            raise ProbeFailed("not_found", f"model {self.spec.model!r} is not among the {len(ids)} models listed "
                                           f"({shown})")
        return "OK, key accepted and model listed; nothing spent"

    def body(self, request: Request) -> dict[str, Any]:
        """The JSON body of one request."""
        raise NotImplementedError

    def parse(self, data: Any) -> Result:
        """The Result of a 2xx JSON body; raise (KeyError, TypeError, ValueError) if it is not an answer."""
        raise NotImplementedError

    def limit_headers(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """The headers the limiter reads (all of them by default)."""
        return headers

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def send(self, request: Request) -> tuple[Result, Mapping[str, str] | None]:
        if self._http is None:
            self._http = HTTPClient(self._base_url, self.headers(), max_idle=1024, proxy=self._proxy)
        payload = json.dumps(self.body(request), ensure_ascii=False, separators=(",", ":")).encode()
        try:
            resp = await self._http.request("POST", self.endpoint, payload)
        except TransportError as e:
            raise Retryable("connection", str(e)) from None
        headers = self.limit_headers(resp.headers)
        failed = check_status(resp.status, headers, resp.body, resp.reason)
        if failed is not None:
            return failed, headers
        try:
            return self.parse(json.loads(resp.body)), headers
        except Exception as e:  # the body was not an answer (malformed JSON, no choices)
            if failure_kind(exc=e) is None:
                raise
            kind = resp.headers.get("content-type", "no content type").split(";")[0]
            start = resp.body[:60].decode("utf-8", "replace").strip()
            raise Retryable("bad_response", f"unparseable response (HTTP {resp.status}, {kind}, {type(e).__name__}): "
                            f"{start!r}", headers=headers) from None
