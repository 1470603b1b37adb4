"""Client-side rate limiting: in-flight bound, request and token pacing, 429 cool-down.

One :class:`RateLimiter` per backend. Before each request a caller awaits :meth:`acquire` with the
request's estimated token count; afterwards it calls :meth:`release` with what happened:

* concurrency is bounded by ``concurrency`` and adapts (additive increase, multiplicative decrease)
  when the server answers 429, never below one;
* requests are spaced to stay under requests-per-minute, and token reservations under
  tokens-per-minute; both budgets come from the recipe and are lowered (never raised above the
  recipe) by ``x-ratelimit-*`` headers the server sends;
* a 429 with ``Retry-After`` pauses every caller until then.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


def parse_reset(value: str | None) -> float | None:
    """OpenAI's reset durations ('1s', '6m0s', '120ms', '0.5') in seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    m = _DURATION.match(value)
    if not m or not any(m.groups()):
        return None
    h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds); HTTP dates are ignored."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) * scale)
        except ValueError:
            continue
    return None


@dataclass
class LimiterStats:
    rate_limited: int = 0
    waits_s: float = 0.0
    min_concurrency: int = 0
    header_rpm: float | None = None
    header_tpm: float | None = None


class _Pacer:
    """Spaces events so that at most ``per_minute`` units pass in any minute (a leaky bucket)."""

    def __init__(self, per_minute: float | None, burst_s: float = 1.0) -> None:
        self.per_minute = per_minute
        self.burst_s = burst_s
        self._next = 0.0  # earliest time the bucket is empty again

    def delay(self, units: float, now: float) -> float:
        """Reserve ``units``; return how long the caller must wait first."""
        if not self.per_minute:
            return 0.0
        rate = self.per_minute / 60.0
        start = max(self._next, now - self.burst_s)
        self._next = start + units / rate
        return max(0.0, start - now)


class RateLimiter:
    """See the module docstring. All methods run on one event loop."""

    def __init__(
        self,
        concurrency: int,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        safety: float = 0.99,
    ) -> None:
        self.max_concurrency = concurrency
        self.limit = float(concurrency)
        self.in_flight = 0
        self.safety = safety
        self._cfg_rpm = requests_per_minute
        self._cfg_tpm = tokens_per_minute
        # Pace at a small margin under the limit; requests start together at most in a short burst.
        self._rpm = _Pacer(requests_per_minute * safety if requests_per_minute else None, burst_s=0.0)
        self._tpm = _Pacer(tokens_per_minute * safety if tokens_per_minute else None, burst_s=1.0)
        self._pause_until = 0.0
        self._cond: asyncio.Condition | None = None
        self.stats = LimiterStats(min_concurrency=concurrency)

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self, est_tokens: int = 0) -> None:
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self.in_flight < max(1, int(self.limit)))
            self.in_flight += 1
        t0 = time.monotonic()
        while True:
            now = time.monotonic()
            if self._pause_until > now:
                await asyncio.sleep(self._pause_until - now)
                continue
            break
        now = time.monotonic()
        wait = max(self._rpm.delay(1, now), self._tpm.delay(est_tokens, now))
        if wait > 0:
            await asyncio.sleep(wait)
        self.stats.waits_s += time.monotonic() - t0

    async def release(
        self, *, rate_limited: bool = False, retry_after: float | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        now = time.monotonic()
        if headers:
            self._apply_headers(headers)
        if rate_limited:
            self.stats.rate_limited += 1
            self.limit = max(1.0, self.limit / 2)
            self.stats.min_concurrency = min(self.stats.min_concurrency, int(self.limit))
            pause = retry_after if retry_after is not None else 1.0
            self._pause_until = max(self._pause_until, now + pause)
        else:
            self.limit = min(float(self.max_concurrency), self.limit + 1.0 / max(self.limit, 1.0))
        cond = self._condition()
        async with cond:
            self.in_flight -= 1
            cond.notify_all()

    def _apply_headers(self, headers: Mapping[str, str]) -> None:
        """Adopt the server's own limits when they are tighter than the recipe's (or the recipe has none)."""
        for kind, cfg, pacer in (("requests", self._cfg_rpm, self._rpm), ("tokens", self._cfg_tpm, self._tpm)):
            raw = headers.get(f"x-ratelimit-limit-{kind}")
            if raw is None:
                continue
            try:
                limit = float(raw)
            except ValueError:
                continue
            if limit <= 0 or (cfg is not None and limit >= cfg):
                continue
            per_min = limit * self.safety
            if pacer.per_minute != per_min:
                pacer.per_minute = per_min
                if kind == "requests":
                    self.stats.header_rpm = limit
                else:
                    self.stats.header_tpm = limit
