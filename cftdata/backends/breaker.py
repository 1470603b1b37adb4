"""The circuit breaker: a broken endpoint stops the build, instead of turning every row into a reject.

Some failures cannot be a row's own fault: the key is refused (401/403), the model or the path does not
exist (404), nothing answers at the address (connection refused, DNS, TLS), or what answers is not the
API (an HTML page from a proxy, JSON without ``choices``). :class:`CircuitBreaker` counts those
*systemic* failures across the rows of one backend, attempt by attempt:

* **preflight** (on by default in a build): the very first attempt goes alone, and if it fails
  systemically the breaker trips at once: a broken endpoint costs one call. A better answer (or a
  429 / 5xx / timeout, which say nothing) ends the preflight. It goes alone for at most
  :data:`PREFLIGHT_ALONE_S`: the refusals it exists for (a refused key, an unknown model or path, nothing
  listening, a proxy's page) come back within a fraction of a second, while an answer being generated
  takes seconds, so an attempt still unanswered by then lets the others start (still, if it then fails
  systemically, the breaker trips at once). Its cost is nil: the request is a real row's, answered and
  cached like any other (``cftdata check`` sends a separate minimal request), and the build waits at most
  that second for it instead of one whole answer's latency (5 s with a slow teacher: 250 requests of a
  3,000/min limit left unused);
* **on probation** (no healthy answer yet): at most ``threshold`` attempts are in flight, and when
  ``threshold`` attempts in a row fail systemically the breaker trips (a wrong key costs 8 calls, not
  one per row);
* **after healthy answers** (a key revoked mid-build, the server gone): it trips when the last
  ``threshold`` attempts in a row failed systemically (a 100 % failure rate over that window); for
  transport-like kinds (connection, bad response) only once no healthy answer came for ``grace_s``
  seconds either, so a short network blip is retried row by row as before.

A tripped breaker raises :class:`~cftdata.errors.EndpointError` (exit 1) from the model layer: rows in
flight get no result (they are neither cached nor rejected, so a rerun sends them again), and the message
names the backend, the base URL, the model, the provider's answer and the fix. Everything else (a 400 for
one prompt, a content filter, a truncated answer, a 429, a 5xx, a timeout) stays a per-row matter.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

from cftdata.errors import EndpointError

#: Failure kinds (see :func:`cftdata.backends.online.failure_kind`) that are never one row's fault.
SYSTEMIC = frozenset({"auth", "not_found", "connection", "bad_response"})
#: Systemic kinds that a retry never cures: they trip without waiting for ``grace_s``.
PERMANENT = frozenset({"auth", "not_found"})
#: Failure kinds that say nothing about the endpoint's health (neither healthy nor systemic).
NEUTRAL = frozenset({"rate_limited", "server_error", "timeout", "client_error", "no_result"})

DEFAULT_THRESHOLD = 8
#: Seconds the preflight attempt goes alone at most (see the module docstring).
PREFLIGHT_ALONE_S = 1.0


@dataclass(frozen=True)
class Endpoint:
    """What the error message names: never the key, only the variable that holds it."""

    backend: str
    model: str
    where: str  #: the base URL (or the model file / engine for in-process backends)
    key_env: str | None = None
    section: str | None = None  #: the recipe section the model comes from (teacher, respond...)


_FIXES = {
    "auth": "The API key was refused: put a valid key in {key} (recipe key {s}api_key_env names the variable).",
    "not_found": "The model or the path does not exist there: check {s}model (is {model!r} served at this "
                 "endpoint? GET {where}/models lists them) and {s}base_url (OpenAI-compatible servers usually "
                 "end in /v1).",
    "connection": "Nothing usable answers at {where}: start the server, or fix {s}base_url (and any "
                  "HTTPS_PROXY / HTTP_PROXY variable).",
    "bad_response": "What answers at {where} is not the model API (an HTML page from a proxy or a login "
                    "portal, or JSON without the expected fields): check {s}base_url and the proxy variables.",
    "load": "The model file cannot be used: check {s}model ({where}).",
    "timeout": "The endpoint took the connection but did not answer in time: check that the server at {where} "
               "is serving and not overloaded, or raise {s}timeout_s.",
}


def public_address(address: str) -> str:
    """``address`` as messages may show it: an URL's user info and query (where credentials hide) masked."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        u = urlsplit(address)
    except ValueError:
        return address
    if not u.scheme or not u.netloc:
        return address
    netloc = u.netloc if "@" not in u.netloc else "***@" + u.netloc.rpartition("@")[2]
    return urlunsplit((u.scheme, netloc, u.path, "***" if u.query else "", ""))


def fix_for(kind: str, endpoint: Endpoint) -> str:
    """The one-sentence fix for a systemic failure kind."""
    s = f"{endpoint.section}." if endpoint.section else ""
    key = endpoint.key_env or "the API-key variable"
    return _FIXES.get(kind, "Check {s}base_url and {s}model.").format(
        key=key, s=s, model=endpoint.model, where=endpoint.where.rstrip("/"))


def endpoint_message(endpoint: Endpoint, kind: str, detail: str, lead: str) -> str:
    """One paragraph: ``lead``, then backend / base URL / model, the provider's answer and the fix."""
    return (f"{lead}: backend {endpoint.backend!r}, base URL {endpoint.where}, model {endpoint.model!r}: "
            f"{kind.replace('_', ' ')}: {detail.strip().rstrip('.') or 'no detail'}. {fix_for(kind, endpoint)}")


class CircuitBreaker:
    """Counts systemic failures of one backend's attempts and trips (see the module docstring).

    Thread-safe: an online backend records from its event loop, the caller from its own thread.
    """

    def __init__(self, endpoint: Endpoint, threshold: int = DEFAULT_THRESHOLD, grace_s: float = 20.0,
                 preflight: bool = False, alone_s: float = PREFLIGHT_ALONE_S) -> None:
        self.endpoint = endpoint
        self.threshold = threshold
        self.grace_s = grace_s
        #: The first attempt has not ended yet (it goes alone, and a systemic failure of it trips at once).
        self.preflight = preflight
        self.alone_s = alone_s
        self._alone_until: float | None = None  # when the preflight attempt stops going alone
        self._started = 0  # attempts started through may_start
        self._lock = threading.Lock()
        self.healthy = 0
        self.systemic = 0
        self.in_flight = 0
        # Systemic failures since the last healthy answer: how many, and (kind, detail) of the latest ones.
        self._streak_n = 0
        self._streak: deque[tuple[str, str]] = deque(maxlen=256)
        self._last_healthy = time.monotonic()
        self.error: EndpointError | None = None

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    @property
    def tripped(self) -> bool:
        return self.error is not None

    def check(self) -> None:
        """Raise the breaker's error if it tripped."""
        if self.error is not None:
            raise self.error

    def may_start(self) -> bool:
        """Whether a new attempt may start now: always once the endpoint answered well; during the preflight,
        the first alone (for at most ``alone_s``); after a preflight that said nothing, at most ``threshold``
        in flight until an answer is healthy (so a wrong key costs a handful of calls, whatever the
        concurrency)."""
        self.check()
        with self._lock:
            if not (self.enabled or self.preflight) or self.healthy:
                allowed = True
            elif self.preflight:
                now = time.monotonic()
                if self._alone_until is None:
                    self._alone_until = now + self.alone_s  # this is the preflight attempt
                    allowed = True
                else:
                    allowed = now >= self._alone_until  # still unanswered: not refused, being generated
            else:
                allowed = self.in_flight < self.threshold
            if allowed:
                self.in_flight += 1
                self._started += 1
            return allowed

    def finished(self, kind: str | None, detail: str = "") -> None:
        """An attempt started with :meth:`may_start` ended: ``kind`` None for a healthy answer."""
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)
        self.record(kind, detail)

    def abandoned(self) -> None:
        """An attempt started with :meth:`may_start` was cancelled before it ended."""
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)

    def record(self, kind: str | None, detail: str = "") -> None:
        """Count one outcome: None or a row's own failure (400...) is healthy, a :data:`SYSTEMIC` kind counts
        toward tripping, a :data:`NEUTRAL` one (429, 5xx, timeout) changes nothing. Never raises: whoever
        holds a failed outcome calls :meth:`check` before reporting it (a healthy answer is kept)."""
        if kind in NEUTRAL:
            self.preflight = False
        if not (self.enabled or self.preflight) or kind in NEUTRAL:
            return
        with self._lock:
            if self.error is None and self.preflight:
                self.preflight = False
                if kind in SYSTEMIC:
                    alone = self._started <= 1  # nobody started after it: it failed within its moment alone
                    self.error = EndpointError(endpoint_message(
                        self.endpoint, kind, detail,
                        "The first request (the preflight: sent alone, before any other row) failed, so the build "
                        "stopped after that one call (nothing was rejected; fix the cause and rerun the same "
                        "command)" if alone else
                        f"The first request (the preflight) failed after more than {self.alone_s:g} s, while "
                        "other rows had started, so the build stopped (nothing was rejected; fix the cause and "
                        "rerun the same command)"))
                    return
            if self.error is None and self.enabled:
                if kind not in SYSTEMIC:
                    self.healthy += 1
                    self._streak.clear()
                    self._streak_n = 0
                    self._last_healthy = time.monotonic()
                else:
                    self.systemic += 1
                    self._streak.append((kind, detail))
                    self._streak_n += 1
                    if self._should_trip():
                        self.error = EndpointError(self._message())

    def _should_trip(self) -> bool:
        if self._streak_n < self.threshold:
            return False
        if not self.healthy:
            return True
        kind = self._dominant()[0]
        return kind in PERMANENT or time.monotonic() - self._last_healthy >= self.grace_s

    def _dominant(self) -> tuple[str, str]:
        """The most frequent kind of the current streak, with its latest detail."""
        kind = Counter(k for k, _ in self._streak).most_common(1)[0][0]
        detail = next(d for k, d in reversed(self._streak) if k == kind)
        return kind, detail

    def _message(self) -> str:
        kind, detail = self._dominant()
        n = self._streak_n
        if self.healthy:
            lead = (f"The endpoint stopped working mid-build ({n} calls in a row failed the same way after "
                    f"{self.healthy} good answers), so the build stopped")
        else:
            lead = f"The endpoint failed the first {n} calls the same way, so the build stopped"
        lead += (" (the rows in flight were not rejected: fix the cause and rerun the same command to resume; "
                 "finished answers are cached)")
        return endpoint_message(self.endpoint, kind, detail, lead)


class ProbeFailed(Exception):
    """A backend's :meth:`~cftdata.backends.base.Backend.probe` found a problem: its failure ``kind`` (``auth``,
    ``not_found``, ``connection``, ``bad_response``, ``timeout``...) and the provider's answer."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
