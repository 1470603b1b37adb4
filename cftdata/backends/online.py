"""Shared machinery for backends that send one HTTP request per row (OpenAI, Anthropic, ...).

Subclasses implement :meth:`OnlineBackend.send`: one attempt, returning a Result or raising a
:class:`Retryable` (429, 5xx, connection errors, timeouts). This class runs all requests on an event
loop under the :class:`RateLimiter`, retries with jittered exponential backoff (tenacity), honours
Retry-After, and stops with :class:`NoProgressError` when nothing finishes for ``stall_timeout_s``.

Retry policy: 5xx, connection errors, timeouts and unparseable bodies count against
``max_retries`` (backoff 0.5 s, 1 s, 2 s... up to 60 s, plus up to 1 s of jitter, or the server's
Retry-After if longer). 429s are handed to the limiter (cool-down, fewer requests in flight) and
retried as soon as it lets them through; they have their own budget of
:data:`RATE_LIMITED_ATTEMPTS` attempts per request so that a long cool-down does not turn rows into
failures (a server that never lets anything through ends the run through the stall timeout).

:class:`HTTPClient` is a small keep-alive HTTP/1.1 client on asyncio streams that backends may use
instead of an SDK where the SDK's per-request CPU cost matters (thousands of requests a minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import ssl
import sys
import time
import zlib
from abc import abstractmethod
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from cftdata.backends.base import Backend, OnResult, Request, Result
from cftdata.backends.limits import RateLimiter
from cftdata.errors import NoProgressError
from cftdata.recipe import ModelSpec

_T = TypeVar("_T")

#: Attempts per request that may end in 429 before the row fails as ``rate_limited``.
RATE_LIMITED_ATTEMPTS = 50

_COUNTER_OF_KIND = {"rate_limited": "rate_limited", "server_error": "server_errors",
                    "connection": "connection_errors", "timeout": "timeouts"}


class Retryable(Exception):
    """A failed attempt worth retrying. ``kind`` is 'rate_limited', 'server_error', 'connection', 'timeout'."""

    def __init__(self, kind: str, detail: str = "", retry_after: float | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after
        self.headers = headers


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

    #: Backoff before retry n (n = 1, 2, ...): ``initial * 2**(n-1)`` capped at ``max``, plus jitter.
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    backoff_jitter_s: float = 1.0

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.limiter = RateLimiter(spec.concurrency, spec.requests_per_minute, spec.tokens_per_minute)
        self.counters: dict[str, int] = {"requests": 0, "retries": 0, "rate_limited": 0, "server_errors": 0,
                                         "connection_errors": 0, "timeouts": 0, "failed": 0}
        #: Strings (API keys) that must never appear in an error detail; subclasses add theirs.
        self.secrets: list[str] = []

    @abstractmethod
    async def send(self, request: Request) -> tuple[Result, Mapping[str, str] | None]:
        """One attempt. Return (result, response headers) or raise Retryable."""

    async def aclose(self) -> None:
        """Close async clients (called on the loop that used them)."""

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "min_concurrency": self.limiter.stats.min_concurrency,
                "limiter_wait_s": round(self.limiter.stats.waits_s, 3),
                "min_pace": round(self.limiter.stats.min_pace, 3),
                "server_rpm_limit": self.limiter.stats.header_rpm,
                "server_tpm_limit": self.limiter.stats.header_tpm}

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for s in self.secrets:
            if s and s in text:
                text = text.replace(s, "***")
        return text

    async def _one(self, request: Request) -> Result:
        """One row: attempts under the limiter until a Result, a fail-fast error or the retry budget ends."""
        est = estimate_tokens(request)
        max_retries = self.spec.max_retries
        hard_failures = 0  # failed attempts that count against max_retries (all but 429s)

        def stop(rs: RetryCallState) -> bool:
            e = rs.outcome.exception() if rs.outcome else None
            if isinstance(e, Retryable) and e.kind == "rate_limited":
                return rs.attempt_number >= max(RATE_LIMITED_ATTEMPTS, max_retries + 1)
            return hard_failures > max_retries

        def wait(rs: RetryCallState) -> float:
            e = rs.outcome.exception() if rs.outcome else None
            if not isinstance(e, Retryable) or e.kind == "rate_limited":
                return 0.0  # the limiter's cool-down and pacing space the retry
            backoff = min(self.backoff_max_s, self.backoff_initial_s * 2 ** max(0, hard_failures - 1))
            backoff += random.uniform(0, self.backoff_jitter_s)
            return max(backoff, min(e.retry_after or 0.0, self.backoff_max_s))

        retrying = AsyncRetrying(stop=stop, wait=wait, retry=retry_if_exception_type(Retryable), reraise=True)
        attempt_no = 0
        limiter = self.limiter
        try:
            async for attempt in retrying:
                with attempt:
                    attempt_no += 1
                    if attempt_no > 1:
                        self.counters["retries"] += 1
                    sent_at = await limiter.acquire(est)
                    self.counters["requests"] += 1
                    try:
                        result, headers = await _with_timeout(self.send(request), self.spec.timeout_s)
                    except asyncio.TimeoutError:
                        await limiter.release(sent_at=sent_at)
                        self.counters["timeouts"] += 1
                        hard_failures += 1
                        raise Retryable("timeout", f"no answer within {self.spec.timeout_s:g}s") from None
                    except Retryable as e:
                        limited = e.kind == "rate_limited"
                        key = _COUNTER_OF_KIND.get(e.kind)
                        if key:
                            self.counters[key] += 1
                        if not limited:
                            hard_failures += 1
                        await limiter.release(rate_limited=limited, retry_after=e.retry_after, headers=e.headers,
                                              sent_at=sent_at)
                        raise
                    except asyncio.CancelledError:
                        await limiter.release(sent_at=sent_at)
                        raise
                    except Exception as e:  # a bug or an SDK surprise: this row fails, the run goes on
                        await limiter.release(sent_at=sent_at)
                        self.counters["failed"] += 1
                        return Result(error="client_error",
                                      error_detail=self.redact(f"{type(e).__name__}: {e}")[:2000])
                    await limiter.release(headers=headers, sent_at=sent_at)
                    if not result.ok:
                        self.counters["failed"] += 1
                        if result.error_detail:
                            result.error_detail = self.redact(result.error_detail)
                    return result
        except Retryable as e:
            self.counters["failed"] += 1
            return Result(error=e.kind,
                          error_detail=self.redact(f"gave up after {attempt_no} attempts: {e.detail}")[:2000])
        raise AssertionError("unreachable")  # pragma: no cover

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
        window = max(self.spec.concurrency * 2, 8)
        last_progress = time.monotonic()

        def on_done(t: asyncio.Task) -> None:
            nonlocal last_progress
            pending.discard(t)
            i = index_of.pop(t)
            if all_done.done() or t.cancelled():
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
        try:
            while not all_done.done():
                timeout = self.spec.stall_timeout_s - (time.monotonic() - last_progress)
                if timeout <= 0:
                    raise NoProgressError(self._stall_message(len(pending)))
                await asyncio.wait([all_done], timeout=timeout)
            all_done.result()
        finally:
            rest = list(pending)
            for t in rest:
                t.cancel()
            if rest:
                await asyncio.gather(*rest, return_exceptions=True)

    def generate(self, requests: Sequence[Request], on_result: OnResult) -> None:
        async def main() -> None:
            try:
                await self._run(requests, on_result)
            finally:
                await self.aclose()

        asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# a lean HTTP/1.1 client


class TransportError(ConnectionError):
    """The exchange failed below HTTP: refused, reset, closed early, TLS, or a garbled response."""


@dataclass
class HTTPResponse:
    """Status, headers (lower-case names) and the whole body."""

    status: int
    headers: dict[str, str]
    body: bytes
    reason: str = ""


class _Stale(Exception):
    """A reused keep-alive connection was closed by the server before it answered."""


class HTTPClient:
    """Keep-alive HTTP/1.1 requests to one origin on asyncio streams (http and https).

    Costs a few tens of microseconds of CPU per request, against about a millisecond for an SDK on
    top of httpx. No proxies, no HTTP/2, no redirects, no cookies: use an SDK where those matter.
    Timeouts are the caller's (cancel the call; the connection is then dropped, never reused).
    Every transport failure is raised as :class:`TransportError`.
    """

    def __init__(self, base_url: str, headers: Mapping[str, str] | None = None, max_idle: int = 512) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if u.scheme == "https" else None
        self._prefix = u.path.rstrip("/")
        self._query = u.query
        netloc = u.netloc.rpartition("@")[2]
        base = {"Host": netloc, "User-Agent": "cftdata", "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate", **(headers or {})}
        self._head_lines = "".join(f"{k}: {v}\r\n" for k, v in base.items())
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._max_idle = max_idle

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/json") -> HTTPResponse:
        """Send one request (``path`` is appended to the base URL's path) and read the whole answer."""
        target = self._prefix + path + (f"?{self._query}" if self._query else "")
        head = (f"{method} {target} HTTP/1.1\r\n{self._head_lines}Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        while self._idle:
            conn = self._idle.pop()
            if conn[0].at_eof() or conn[1].is_closing():
                conn[1].close()
                continue
            try:
                return await self._exchange(conn, method, head + body, reused=True)
            except _Stale:
                continue
        return await self._exchange(await self._connect(), method, head + body, reused=False)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_connection(
                self.host, self.port, ssl=self._ssl, server_hostname=self.host if self._ssl else None,
                limit=2**20,
            )
        except (OSError, EOFError) as e:
            raise TransportError(f"connect to {self.host}:{self.port} failed: {type(e).__name__}") from e

    async def _exchange(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], method: str,
                        data: bytes, reused: bool) -> HTTPResponse:
        reader, writer = conn
        keep = False
        got_head = False
        try:
            writer.write(data)
            await writer.drain()
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                got_head = True
                status, reason, headers, version = _parse_head(raw)
                if status >= 200 or status == 101:
                    break  # skip 1xx interim answers
            keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            if method == "HEAD" or status in (204, 304):
                body = b""
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                body = await _read_chunked(reader)
            elif "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            else:
                body = await reader.read()
                keep = False
            encoding = headers.get("content-encoding", "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            return HTTPResponse(status, headers, body, reason)
        except (OSError, EOFError, asyncio.LimitOverrunError, ValueError, zlib.error) as e:
            keep = False
            if reused and not got_head and isinstance(e, (ConnectionError, EOFError)):
                raise _Stale from None
            raise TransportError(type(e).__name__) from e
        except BaseException:
            keep = False
            raise
        finally:
            if keep and len(self._idle) < self._max_idle:
                self._idle.append(conn)
            else:
                writer.close()

    async def aclose(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, []
        for _, w in idle:
            w.close()
        for _, w in idle:
            with contextlib.suppress(Exception):
                await w.wait_closed()


def _parse_head(raw: bytes) -> tuple[int, str, dict[str, str], str]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"not an HTTP status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers, parts[0]


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(chunks)
        chunks.append((await reader.readexactly(size + 2))[:-2])
