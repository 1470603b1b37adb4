"""Client-side rate limiting: how many requests are in flight, request and token pacing, 429 cool-down.

One :class:`RateLimiter` per backend. Before each request a caller awaits :meth:`acquire` with the
request's estimated token count; afterwards it calls :meth:`release` with what happened.

**How many requests are in flight** (``limit``) is sized, not configured. ``concurrency`` (the recipe's
``concurrency``) is only a safety ceiling; the working value follows the limits and the latency:

* *A rate is known* (``requests_per_minute`` / ``tokens_per_minute`` in the recipe, or learned from
  ``x-ratelimit-*`` / ``anthropic-ratelimit-*`` headers): Little's law. The limit is the pace times the
  latency, with 25 % headroom plus :data:`HEADROOM` requests, where the latency is the larger of the
  smoothed latency of answered requests and the age of the oldest request still on the wire (so the
  limit grows during the first seconds, before any answer has come back). The pacer, not the
  in-flight limit, then decides the rate: the rate limit binds.
* *No rate is known* (a self-hosted vLLM / SGLang server): additive increase, multiplicative
  decrease. From :data:`INITIAL_IN_FLIGHT`, each success adds one request (the window doubles every
  round trip) until the first congestion signal; after that, one per window's worth of successes.
  Growth stops while the smoothed latency is over :data:`LATENCY_STOP` times the lowest seen (a
  server that signals overload by slowing down), and a 429 halves the limit.

In both cases the limit never exceeds the ceiling nor falls below one, and grows only while there is
work waiting for a slot. A burst of 429s for requests already on the wire when the limit was cut
counts once, so one congestion event cuts once. When a pace is known, a 429 slows the pace by 10 %
instead (successes restore it, 0.2 % each) and the in-flight limit follows from the slower pace.

**Pacing.** Requests are spaced to stay under requests-per-minute (at ``safety`` of it), and token
reservations under tokens-per-minute. Both budgets come from the recipe and are lowered (never raised
above the recipe) by the server's headers. Waiting callers are served first come, first served, one
wake-up per freed slot. A 429 with ``Retry-After`` pauses every caller until then (1 s without the
header), and so does a ``remaining-requests`` header of 0 until a slot should be free again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

#: Requests in flight before anything is known (no pace, no answer yet).
INITIAL_IN_FLIGHT = 16
#: Extra requests in flight over the Little's-law need (jitter, retries waiting for the pacer).
HEADROOM = 4
#: Without a known pace, growth stops while latency is over this many times the lowest seen.
LATENCY_STOP = 2.0
#: Fraction of the known rate limit the pacer aims at.
SAFETY = 0.98

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")

#: Rate-limit headers, by what they say: OpenAI-style names first, then Anthropic's.
_HEADERS = {
    ("requests", "limit"): ("x-ratelimit-limit-requests", "anthropic-ratelimit-requests-limit"),
    ("requests", "remaining"): ("x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining"),
    ("requests", "reset"): ("x-ratelimit-reset-requests", "anthropic-ratelimit-requests-reset"),
    ("tokens", "limit"): ("x-ratelimit-limit-tokens", "anthropic-ratelimit-tokens-limit"),
}


def parse_reset(value: str | None, now_epoch: float | None = None) -> float | None:
    """Seconds until a reset: OpenAI's durations ('1s', '6m0s', '120ms', '0.5') or Anthropic's RFC 3339 time."""
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    m = _DURATION.match(value)
    if m and any(m.groups()):
        h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
        return h * 3600 + mi * 60 + s + ms / 1000
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return max(0.0, at.timestamp() - (time.time() if now_epoch is None else now_epoch))


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


def _header(headers: Mapping[str, str], kind: str, what: str) -> str | None:
    for name in _HEADERS[(kind, what)]:
        value = headers.get(name)
        if value is not None:
            return value
    return None


@dataclass
class LimiterStats:
    rate_limited: int = 0
    waits_s: float = 0.0
    min_concurrency: int = 0  #: lowest in-flight limit after a cut (the starting value if never cut)
    max_concurrency: int = 0  #: highest in-flight limit reached
    peak_in_flight: int = 0  #: most requests holding a slot at once
    header_rpm: float | None = None
    header_tpm: float | None = None
    min_pace: float = 1.0  #: lowest fraction of the requests-per-minute pace used after 429s
    ceiling_need: int = 0  #: in flight the pace needed over the ceiling (0: the ceiling never bound)


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
        safety: float = SAFETY,
    ) -> None:
        self.max_concurrency = max(1, int(concurrency))  # the ceiling
        self.limit = float(min(self.max_concurrency, INITIAL_IN_FLIGHT))
        self.in_flight = 0
        self.safety = safety
        self._cfg_rpm = requests_per_minute
        self._cfg_tpm = tokens_per_minute
        # Pace at a small margin under the limit; requests start together at most in a short burst.
        self._rpm_base = requests_per_minute * safety if requests_per_minute else None
        self.pace = 1.0  # fraction of _rpm_base in use: lowered on 429s, restored by successes
        self._rpm = _Pacer(self._rpm_base, burst_s=0.0)
        self._tpm = _Pacer(tokens_per_minute * safety if tokens_per_minute else None, burst_s=1.0)
        self._latency: float | None = None  # moving average of successful request durations
        self._latency_floor: float | None = None  # lowest moving average seen (an unloaded server)
        self._samples = 0
        self._tokens_avg: float | None = None  # moving average of the token estimates
        self._slow_start = True  # no congestion seen yet: grow by one per success
        self._wire: deque[float] = deque()  # grant times of the requests on the wire, oldest first
        self._pause_until = 0.0
        self._epoch = 0  # bumped by every new cool-down: request-pacer reservations made before it are void
        self._last_grant = -math.inf  # when the last request was let through
        self._last_decrease = -math.inf
        # FIFO of callers waiting for an in-flight slot; a release hands its slot to the first one.
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Called when the limit grows (the runner starts more row tasks).
        self.on_grow: Callable[[], None] | None = None
        self.stats = LimiterStats(min_concurrency=int(self.limit), max_concurrency=int(self.limit))

    # -- sizing ----------------------------------------------------------------------------------

    def cap(self) -> int:
        """The in-flight limit now (whole requests)."""
        return max(1, int(self.limit))

    def rate(self) -> float | None:
        """The known pace in requests per second (requests and tokens budgets), or None."""
        rates = []
        if self._rpm.per_minute:
            rates.append(self._rpm.per_minute / 60.0)
        if self._tpm.per_minute and self._tokens_avg:
            rates.append(self._tpm.per_minute / 60.0 / self._tokens_avg)
        return min(rates) if rates else None

    def tick(self, now: float | None = None) -> None:
        """Re-size the in-flight limit from the pace and latency now; wake waiters if it grew.

        Called after every grant and release, and periodically by the runner: while no answer has
        come back yet, the age of the oldest request on the wire keeps raising the latency estimate.
        """
        rate = self.rate()
        if rate is None:
            return
        now = time.monotonic() if now is None else now
        latency = self._latency or 0.0
        if self._wire:
            latency = max(latency, now - self._wire[0])
        need = math.ceil(rate * latency * 1.25) + HEADROOM
        if self._latency is None:  # nothing answered yet: start no lower than without a pace
            need = max(need, INITIAL_IN_FLIGHT)
        before = self.cap()
        if need > self.max_concurrency and self._latency is not None and self._waiters:
            self.stats.ceiling_need = max(self.stats.ceiling_need, need)
        self.limit = float(min(self.max_concurrency, max(1, need)))
        if self.cap() > before:
            self._grew()

    def ramping(self) -> bool:
        """A pace is known, every slot is taken and nothing has come back yet: only time (the age of the
        oldest request) can raise the limit now, so the runner should :meth:`tick` often. (Once answers
        come back, every grant and release re-sizes the limit.)"""
        return self._latency is None and self.in_flight >= self.cap() and self.rate() is not None

    def _grew(self) -> None:
        self.stats.max_concurrency = max(self.stats.max_concurrency, self.cap())
        if self._loop is not None:
            self._wake()
        if self.on_grow is not None:
            self.on_grow()

    def _grow(self) -> None:
        """One success without a known pace: additive increase, unless latency says the server is full."""
        if self.in_flight + len(self._waiters) < self.cap():
            return  # the window is not full: more room would not be used
        if (self._latency is not None and self._latency_floor is not None and self._samples >= 8
                and self._latency > LATENCY_STOP * self._latency_floor):
            self._slow_start = False
            return
        step = 1.0 if self._slow_start else 1.0 / max(self.limit, 1.0)
        before = self.cap()
        self.limit = min(float(self.max_concurrency), self.limit + step)
        if self.cap() > before:
            self._grew()

    # -- slots ------------------------------------------------------------------------------------

    def _bind_loop(self) -> None:
        """Forget waiters and slots left by an earlier event loop (``generate`` runs one loop per call)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._waiters.clear()
            self._wire.clear()
            self.in_flight = 0

    def _wake(self) -> None:
        """Hand free slots to waiters, oldest first (one wake-up per slot, not one per waiter)."""
        while self._waiters and self.in_flight < self.cap():
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.in_flight)

    async def _enter(self) -> None:
        self._bind_loop()
        if not self._waiters and self.in_flight < self.cap():
            self.in_flight += 1
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.in_flight)
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
        if est_tokens:
            self._tokens_avg = est_tokens if self._tokens_avg is None else 0.95 * self._tokens_avg + 0.05 * est_tokens
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
        self._wire.append(now)
        self.stats.waits_s += now - t0
        self.tick(now)
        return now

    async def release(
        self,
        *,
        rate_limited: bool = False,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
        sent_at: float | None = None,
        ok: bool = True,
    ) -> None:
        """Give the slot back and learn from the outcome (429, Retry-After, rate-limit headers).

        ``ok=False`` marks an attempt that failed otherwise (5xx, timeout, connection): it neither
        grows the limit nor counts toward the latency.
        """
        now = time.monotonic()
        if self._wire:
            self._wire.popleft()  # answers come back roughly in order: drop the oldest grant
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
        elif ok:
            if sent_at is not None:
                self._observe_latency(now - sent_at)
            if self.pace < 1.0:
                self._set_pace(min(1.0, self.pace + 0.002))
            if self.rate() is None:
                self._grow()
        if self._loop is not None:
            self.in_flight = max(0, self.in_flight - 1)
            self.tick(now)
            self._wake()

    def _observe_latency(self, d: float) -> None:
        self._latency = d if self._latency is None else 0.9 * self._latency + 0.1 * d
        self._samples += 1
        if self._samples >= 4:
            self._latency_floor = self._latency if self._latency_floor is None else min(self._latency_floor,
                                                                                        self._latency)

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

        With a requests-per-minute pace, the 429 says the pace is too fast for the server (timer and
        network jitter eat the safety margin, or the recipe's limit is wrong): slow the pace by 10 %
        (down to a tenth of it at most); the in-flight limit follows the pace (:meth:`tick`).
        Without one, halve the in-flight limit and leave slow start.
        """
        self._slow_start = False
        if self._rpm_base:
            self._set_pace(max(0.1, self.pace * 0.9))
            self.tick()
        else:
            self.limit = max(1.0, self.limit / 2)
        self.stats.min_concurrency = min(self.stats.min_concurrency, self.cap())

    def _apply_headers(self, headers: Mapping[str, str], now: float, sent_at: float | None = None) -> None:
        """Adopt the server's own limits when they are tighter than the recipe's (or the recipe has none).

        A remaining-requests header of 0 also pauses new requests until one slot should be free
        again: ``60 / limit`` seconds (or the reset time if sooner) after the server counted the
        request, which is about when it was sent, not when its answer came back.
        """
        for kind, cfg, pacer in (("requests", self._cfg_rpm, self._rpm), ("tokens", self._cfg_tpm, self._tpm)):
            raw = _header(headers, kind, "limit")
            if raw is None:
                continue
            try:
                limit = float(raw)
            except ValueError:
                continue
            if limit <= 0:
                continue
            if kind == "requests":
                remaining = _header(headers, "requests", "remaining")
                if remaining is not None and remaining.strip() in ("0", "0.0"):
                    reset = parse_reset(_header(headers, "requests", "reset"))
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
