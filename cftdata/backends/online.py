"""Shared machinery for backends that send one HTTP request per row (OpenAI, Anthropic, ...).

Subclasses implement :meth:`OnlineBackend.send`: one attempt, returning a Result or raising a
:class:`Retryable` (429, 5xx, connection errors, timeouts). This class runs all requests on an event
loop under the :class:`RateLimiter`, retries with jittered exponential backoff (tenacity), honours
Retry-After, and stops with :class:`NoProgressError` when nothing finishes for ``stall_timeout_s``.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from cftdata.backends.base import Backend, OnResult, Request, Result
from cftdata.backends.limits import RateLimiter
from cftdata.errors import NoProgressError


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


class OnlineBackend(Backend):
    """Async, rate-limited, retrying runner around a single-request :meth:`send`."""

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.limiter = RateLimiter(spec.concurrency, spec.requests_per_minute, spec.tokens_per_minute)
        self.counters: dict[str, int] = {"requests": 0, "retries": 0, "rate_limited": 0, "server_errors": 0,
                                         "connection_errors": 0, "timeouts": 0, "failed": 0}

    @abstractmethod
    async def send(self, request: Request) -> tuple[Result, Mapping[str, str] | None]:
        """One attempt. Return (result, response headers) or raise Retryable."""

    async def aclose(self) -> None:
        """Close async clients (called on the loop that used them)."""

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "min_concurrency": self.limiter.stats.min_concurrency,
                "limiter_wait_s": round(self.limiter.stats.waits_s, 3),
                "server_rpm_limit": self.limiter.stats.header_rpm,
                "server_tpm_limit": self.limiter.stats.header_tpm}

    async def _one(self, request: Request) -> Result:
        est = estimate_tokens(request)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.spec.max_retries + 1),
            wait=wait_exponential_jitter(initial=0.5, max=60, jitter=1.0),
            retry=retry_if_exception_type(Retryable),
            reraise=True,
        )
        attempt_no = 0
        try:
            async for attempt in retrying:
                with attempt:
                    attempt_no += 1
                    if attempt_no > 1:
                        self.counters["retries"] += 1
                    await self.limiter.acquire(est)
                    self.counters["requests"] += 1
                    try:
                        result, headers = await asyncio.wait_for(self.send(request), self.spec.timeout_s)
                    except asyncio.TimeoutError:
                        await self.limiter.release()
                        self.counters["timeouts"] += 1
                        raise Retryable("timeout", f"no answer within {self.spec.timeout_s:g}s") from None
                    except Retryable as e:
                        limited = e.kind == "rate_limited"
                        key = {"rate_limited": "rate_limited", "server_error": "server_errors",
                               "connection": "connection_errors", "timeout": "timeouts"}.get(e.kind)
                        if key:
                            self.counters[key] += 1
                        await self.limiter.release(rate_limited=limited, retry_after=e.retry_after, headers=e.headers)
                        raise
                    await self.limiter.release(headers=headers)
                    if not result.ok:
                        self.counters["failed"] += 1
                    return result
        except Retryable as e:
            self.counters["failed"] += 1
            return Result(error=e.kind, error_detail=f"gave up after {attempt_no} attempts: {e.detail}"[:2000])
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run(self, requests: Sequence[Request], on_result: OnResult) -> None:
        last_progress = time.monotonic()
        pending: set[asyncio.Task] = set()
        index_of: dict[asyncio.Task, int] = {}
        queue = iter(range(len(requests)))
        window = max(self.spec.concurrency * 2, 8)

        def refill() -> None:
            while len(pending) < window:
                i = next(queue, None)
                if i is None:
                    return
                t = asyncio.ensure_future(self._one(requests[i]))
                index_of[t] = i
                pending.add(t)

        refill()
        try:
            while pending:
                timeout = self.spec.stall_timeout_s - (time.monotonic() - last_progress)
                if timeout <= 0:
                    raise NoProgressError(
                        f"Backend {self.spec.backend!r} (model {self.spec.model!r}) finished no request in "
                        f"{self.spec.stall_timeout_s:g}s ({len(pending)} in flight). The server may be down or "
                        "overloaded; finished answers are cached, so rerunning the same command resumes. "
                        "Raise stall_timeout_s if the model is just slow."
                    )
                done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    pending.discard(t)
                    on_result(index_of.pop(t), t.result())
                    last_progress = time.monotonic()
                refill()
        finally:
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    def generate(self, requests: Sequence[Request], on_result: OnResult) -> None:
        async def main() -> None:
            try:
                await self._run(requests, on_result)
            finally:
                await self.aclose()

        asyncio.run(main())
