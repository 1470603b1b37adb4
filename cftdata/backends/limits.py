"""Client-side rate limiting: in-flight bound, request and token pacing, 429 cool-down.

One :class:`RateLimiter` per backend. Before each request a caller awaits :meth:`acquire` with the
request's estimated token count; afterwards it calls :meth:`release` with what happened:

* concurrency is bounded by ``concurrency`` and adapts (additive increase, multiplicative decrease)
  when the server answers 429, never below one; a burst of 429s for requests already on the wire
  when the limit was cut counts once, so one congestion event halves the limit once; when a
  requests-per-minute pace is known, a 429 slows the pace by 10 % instead (successes restore it)
  and leaves enough requests in flight to keep that pace;
* waiting callers are served first come, first served, one wake-up per freed slot;
* requests are spaced to stay under requests-per-minute, and token reservations under
  tokens-per-minute; both budgets come from the recipe and are lowered (never raised above the
  recipe) by ``x-ratelimit-*`` headers the server sends;
* a 429 with ``Retry-After`` pauses every caller until then (1 s without the header), and so does
  ``x-ratelimit-remaining-requests: 0`` until a slot should be free again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections import deque
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
    min_pace: float = 1.0  #: lowest fraction of the requests-per-minute pace used after 429s


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

    def restart(self, at: float) -> None:
        """Forget the reservations made so far; the next one starts at ``at``."""
        self._next = at


class RateLimiter:
    """See the module docstring. All methods run on one event loop (a new loop per run is fine)."""

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
        self._rpm_base = requests_per_minute * safety if requests_per_minute else None
        self.pace = 1.0  # fraction of _rpm_base in use: lowered on 429s, restored by successes
        self._rpm = _Pacer(self._rpm_base, burst_s=0.0)
        self._latency: float | None = None  # moving average of successful request durations
        self._tpm = _Pacer(tokens_per_minute * safety if tokens_per_minute else None, burst_s=1.0)
        self._pause_until = 0.0
        self._epoch = 0  # bumped by every new cool-down: request-pacer reservations made before it are void
        self._last_grant = -math.inf  # when the last request was let through
        self._last_decrease = -math.inf
        # FIFO of callers waiting for an in-flight slot; a release hands its slot to the first one.
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats = LimiterStats(min_concurrency=concurrency)

    def _cap(self) -> int:
        return max(1, int(self.limit))

    def _bind_loop(self) -> None:
        """Forget waiters and slots left by an earlier event loop (``generate`` runs one loop per call)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._waiters.clear()
            self.in_flight = 0

    def _wake(self) -> None:
        """Hand free slots to waiters, oldest first (one wake-up per slot, not one per waiter)."""
        while self._waiters and self.in_flight < self._cap():
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    async def _enter(self) -> None:
        self._bind_loop()
        if not self._waiters and self.in_flight < self._cap():
            self.in_flight += 1
            return
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted a slot, then cancelled: give it back
                self.in_flight -= 1
                self._wake()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    async def acquire(self, est_tokens: int = 0) -> float:
        """Wait for an in-flight slot, any 429 pause, and the pacers; return the time it was granted.

        Pass the returned time to :meth:`release` as ``sent_at`` so that a burst of 429s from requests
        sent before one cut counts as a single congestion signal.
        """
        await self._enter()
        t0 = time.monotonic()
        try:
            tokens_at: float | None = None  # when our token reservation comes due (made once)
            while True:
                now = time.monotonic()
                if now < self._pause_until:
                    await asyncio.sleep(self._pause_until - now)
                    continue
                if tokens_at is None:
                    tokens_at = now + self._tpm.delay(est_tokens, now)
                epoch = self._epoch
                wait = max(self._rpm.delay(1, now), tokens_at - now)
                if wait > 0:
                    await asyncio.sleep(wait)
                    if self._epoch != epoch:  # a cool-down began while we waited: queue again after it
                        continue
                break
        except asyncio.CancelledError:
            self.in_flight -= 1
            self._wake()
            raise
        now = time.monotonic()
        self._last_grant = now
        self.stats.waits_s += now - t0
        return now

    async def release(
        self,
        *,
        rate_limited: bool = False,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
        sent_at: float | None = None,
    ) -> None:
        """Give the slot back and learn from the outcome (429, Retry-After, ``x-ratelimit-*`` headers)."""
        now = time.monotonic()
        if headers:
            self._apply_headers(headers, now, sent_at)
        if rate_limited:
            self.stats.rate_limited += 1
            # Multiplicative decrease once per congestion event: 429s for requests sent before the
            # last cut (or, without a send time, during the cool-down it started) do not cut again.
            fresh = sent_at > self._last_decrease if sent_at is not None else now >= self._pause_until
            if fresh:
                self._last_decrease = now
                self._congested()
            self._pause(now + (retry_after if retry_after is not None else 1.0))
        else:
            if sent_at is not None:
                d = now - sent_at
                self._latency = d if self._latency is None else 0.9 * self._latency + 0.1 * d
            self.limit = min(float(self.max_concurrency), self.limit + 1.0 / max(self.limit, 1.0))
            if self.pace < 1.0:
                self._set_pace(min(1.0, self.pace + 0.002))
        if self._loop is not None:
            self.in_flight = max(0, self.in_flight - 1)
            self._wake()

    def _pause(self, until: float) -> None:
        """Hold every new request until ``until``; the request pacer restarts from there.

        Requests already waiting for a paced slot take a new one after the pause (and at least one
        interval after the last request let through), in order, so the end of a cool-down is not a
        burst of everything that queued up during it. Token reservations stand.
        """
        if until > self._pause_until:
            self._pause_until = until
            self._epoch += 1
            interval = 60.0 / self._rpm.per_minute if self._rpm.per_minute else 0.0
            self._rpm.restart(max(until, self._last_grant + interval))

    def _set_pace(self, pace: float) -> None:
        self.pace = pace
        self.stats.min_pace = min(self.stats.min_pace, pace)
        if self._rpm_base:
            self._rpm.per_minute = self._rpm_base * pace

    def _congested(self) -> None:
        """React to one congestion event (a fresh 429).

        Without a requests-per-minute pace, halve the in-flight limit. With one, the 429 says the
        pace is too fast for the server (timer and network jitter eat the safety margin, or the
        recipe's limit is wrong): slow the pace by 10 % (down to a tenth of it at most), and cut the
        in-flight limit at most to what that pace needs at the observed latency, so that
        concurrency never starves the pace.
        """
        if self._rpm_base:
            self._set_pace(max(0.1, self.pace * 0.9))
            assert self._rpm.per_minute is not None
            need = math.ceil(self._rpm.per_minute / 60.0 * (self._latency or 0.0)) + 1
            self.limit = max(1.0, min(self.limit, max(self.limit / 2, float(need))))
        else:
            self.limit = max(1.0, self.limit / 2)
        self.stats.min_concurrency = min(self.stats.min_concurrency, int(self.limit))

    def _apply_headers(self, headers: Mapping[str, str], now: float, sent_at: float | None = None) -> None:
        """Adopt the server's own limits when they are tighter than the recipe's (or the recipe has none).

        ``x-ratelimit-remaining-requests: 0`` also pauses new requests until one slot should be free
        again: ``60 / limit`` seconds (or the reset time if sooner) after the server counted the
        request, which is about when it was sent, not when its answer came back.
        """
        for kind, cfg, pacer in (("requests", self._cfg_rpm, self._rpm), ("tokens", self._cfg_tpm, self._tpm)):
            raw = headers.get(f"x-ratelimit-limit-{kind}")
            if raw is None:
                continue
            try:
                limit = float(raw)
            except ValueError:
                continue
            if limit <= 0:
                continue
            if kind == "requests":
                remaining = headers.get("x-ratelimit-remaining-requests")
                if remaining is not None and remaining.strip() in ("0", "0.0"):
                    reset = parse_reset(headers.get("x-ratelimit-reset-requests"))
                    wait = 60.0 / limit if reset is None else min(reset, 60.0 / limit)
                    self._pause((now if sent_at is None else sent_at) + wait)
            if cfg is not None and limit >= cfg:
                continue
            per_min = limit * self.safety
            if kind == "requests":
                if self._rpm_base != per_min:
                    self._rpm_base = per_min
                    self._set_pace(self.pace)
                    self.stats.header_rpm = limit
            elif pacer.per_minute != per_min:
                pacer.per_minute = per_min
                self.stats.header_tpm = limit
