"""A fault-injecting, counting, OpenAI-compatible Chat Completions server on 127.0.0.1.

A lean HTTP/1.1 server on raw asyncio streams (keep-alive, hundreds of concurrent connections,
thousands of requests a second on one core). Run it in a background thread (tests: stats read
directly) or in a subprocess (benchmarks: its CPU is not the client's), both through :func:`serve`::

    with serve(latency_s=0.05, rpm=600, error_rate=0.1) as (base_url, stats):
        ...  # point a client at base_url ("http://127.0.0.1:<port>/v1")
        s = stats()  # a Stats snapshot: total, by_status, by_fault, duplicates, max_in_flight, ...
        stats.configure(error_rate=0.0)  # change faults on the fly; stats.reset() zeroes the counters

Faults (:class:`Faults`, all off by default) are either drawn at random per request (``*_rate``,
seeded) or forced by markers in any message of the request:

=====================  ==========================================================================
``[[400]]``            400 ``invalid_request_error`` (fail-fast path)
``[[401]]``            401 whose message echoes the bearer token (secret-leak checks)
``[[429]]``            429 regardless of the server-side limit
``[[500]]``            500 ``server_error``
``[[drop]]``           connection closed without an answer (a connection error for the client)
``[[slow]]``           answered after ``slow_s`` more seconds (beyond a client timeout)
``[[malformed]]``      200 with a body that is not JSON
``[[nochoices]]``      200 with valid JSON holding no choices
``[[length]]``         truncated answer, ``finish_reason: "length"``
``[[empty]]``          ``content: ""``; ``[[null]]``: ``content: null``
``[[html]]``           200 with an HTML page (a proxy or captive portal answering for the API)
=====================  ==========================================================================

Whole-endpoint mistakes (the bad-input matrix) are settings rather than markers: ``api_key`` (requests
whose bearer token differs get 401 ``invalid_api_key``, the token masked as OpenAI does), ``models``
(the models served: any other gets 404 ``model_not_found``; ``GET /v1/models`` lists them), and
``html_rate`` / ``nochoices_rate`` (200 answers that are an HTML page / JSON without ``choices``).

``[[500*2]]`` (any marker with ``*N``) applies to the first N requests with that exact body only,
so a retry of it then succeeds; without ``*N`` it applies to every attempt. ``[[429]]`` answers with
``Retry-After: 1`` (or ``retry_after_s``) and consumes nothing of the server-side limit.

Answers are deterministic: the content is derived from the sha256 of the canonical request body,
with ``usage`` (prompt tokens ~ characters / 4); ``max_tokens`` below ``completion_words`` truncates
(``finish_reason: "length"``). A server-side requests-per-minute limit (token bucket holding
``rpm_burst``, or a sliding ``window_s`` window) answers 429 with ``Retry-After`` (whole seconds),
``retry-after-ms`` and ``x-ratelimit-{limit,remaining,reset}-requests``; the ``x-ratelimit-*``
headers are sent on every answer while a limit is set (unless ``ratelimit_headers=False``).

Counters (:class:`Stats`; Python API or ``GET /_stats``): requests in total, by status, by fault and
by route; ``duplicates`` = answers delivered for a body that had already been answered (the client
paid twice); peak concurrency; arrival times. ``POST /_reset`` zeroes them, ``POST /_config``
(JSON body) changes faults. Statuses are real HTTP codes, plus 499 for "the client went away before
the answer" (it timed out) and 0 for a connection dropped on purpose.

Extending: a route is ``(method, path pattern, handler)``; patterns may hold ``{name}`` segments,
which land in ``request.params``. ``async def handler(server, request) -> Response``. Register with
:meth:`FaultServer.add_route`, or pass ``plugins=["package.module:register"]`` to :func:`serve`
(``register(server)`` is called before the server starts, in the thread or in the subprocess).
Handlers call :meth:`FaultServer.check_rate_limit`, :meth:`FaultServer.markers`,
:meth:`FaultServer.pause` and return ``Response(..., fault=..., answered=...)`` to share the
limiter, the fault switches and the counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import importlib
import json
import math
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

HOST = "127.0.0.1"

_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable",
}
_MARKER = re.compile(r"\[\[([a-z0-9_]+)(?:\*(\d+))?\]\]")


# ---------------------------------------------------------------------------------------------
# configuration and counters


@dataclass
class Faults:
    """What the server does wrong. Rates are fractions of requests (0..1), drawn independently."""

    latency_s: float = 0.0  #: base latency of every answer except 429s (which are immediate)
    jitter_s: float = 0.0  #: uniform extra latency in [0, jitter_s)
    load_latency_s: float = 0.0  #: extra latency per request in flight (a server that slows under load)
    rpm: float | None = None  #: server-side requests-per-minute limit (None: unlimited)
    rpm_mode: Literal["bucket", "window"] = "bucket"  #: token bucket, or a sliding ``window_s`` window
    rpm_burst: float | None = None  #: bucket capacity; default one second's worth (at least 1)
    window_s: float = 60.0  #: length of the sliding window (``rpm_mode="window"``)
    retry_after_s: float | None = None  #: fixed Retry-After on 429s (default: time until a slot frees)
    retry_after_ms_header: bool = True  #: also send ``retry-after-ms`` (more precise than Retry-After)
    ratelimit_headers: bool = True  #: send ``x-ratelimit-*-requests`` headers while a limit is set
    error_rate: float = 0.0  #: random 500s
    drop_rate: float = 0.0  #: random connections closed without an answer
    slow_rate: float = 0.0  #: random answers delayed by ``slow_s`` more
    slow_s: float = 30.0
    malformed_rate: float = 0.0  #: random 200s whose body is not JSON
    length_rate: float = 0.0  #: random truncated answers (finish_reason "length")
    empty_rate: float = 0.0  #: random answers with empty content
    html_rate: float = 0.0  #: random 200s with an HTML page instead of JSON (a proxy answering)
    nochoices_rate: float = 0.0  #: random 200s with JSON holding no choices
    api_key: str | None = None  #: the only bearer token accepted (others: 401 invalid_api_key); None: any
    models: list[str] | None = None  #: the models served (others: 404 model_not_found); None: any
    completion_words: int = 8  #: words in a normal answer (one "token" each)
    seed: int = 0  #: seed of the fault draws

    def update(self, **changes: Any) -> None:
        """Change some fields; unknown names are errors."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise TypeError(f"unknown fault settings: {sorted(unknown)}; known: {sorted(names)}")
        for k, v in changes.items():
            setattr(self, k, v)


@dataclass(frozen=True)
class Stats:
    """A snapshot of the server's counters (see the module docstring)."""

    total: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    by_fault: dict[str, int] = field(default_factory=dict)
    by_route: dict[str, int] = field(default_factory=dict)
    answered: int = 0  #: usable answers delivered (200 with a parseable completion)
    duplicates: int = 0  #: answers delivered for a body already answered before
    in_flight: int = 0
    max_in_flight: int = 0
    arrivals: list[float] = field(default_factory=list)  #: seconds since start/reset, per request
    uptime_s: float = 0.0

    def status(self, code: int) -> int:
        """How many requests were answered with ``code``."""
        return self.by_status.get(code, 0)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["by_status"] = {str(k): v for k, v in self.by_status.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stats:
        return cls(**{**d, "by_status": {int(k): v for k, v in d["by_status"].items()}})


class _Counters:
    """Mutable counters; the lock makes snapshots from another thread consistent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.t0 = time.monotonic()
        self.total = 0
        self.by_status: Counter[int] = Counter()
        self.by_fault: Counter[str] = Counter()
        self.by_route: Counter[str] = Counter()
        self.answered = 0
        self.duplicates = 0
        self.seen: set[bytes] = set()
        self.attempts: Counter[bytes] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrivals: list[float] = []

    def snapshot(self) -> Stats:
        with self.lock:
            return Stats(
                total=self.total, by_status=dict(self.by_status), by_fault=dict(self.by_fault),
                by_route=dict(self.by_route), answered=self.answered, duplicates=self.duplicates,
                in_flight=self.in_flight, max_in_flight=self.max_in_flight,
                arrivals=[round(a, 4) for a in self.arrivals], uptime_s=round(time.monotonic() - self.t0, 3),
            )


# ---------------------------------------------------------------------------------------------
# server-side rate limit


class _RateLimit:
    """Requests-per-minute limit as a token bucket or a sliding window."""

    def __init__(self, faults: Faults) -> None:
        self.rpm = float(faults.rpm or 0)
        self.mode = faults.rpm_mode
        self.rate = self.rpm / 60.0
        self.capacity = faults.rpm_burst if faults.rpm_burst is not None else max(1.0, self.rate)
        self.window_s = faults.window_s
        self.limit = self.rpm * self.window_s / 60.0 if self.mode == "window" else self.rpm
        self.tokens = self.capacity
        self.t = time.monotonic()
        self.times: deque[float] = deque()

    def take(self, now: float) -> tuple[bool, int, float, float]:
        """Try to admit one request: (admitted, remaining, reset_s, retry_after_s)."""
        if self.mode == "window":
            while self.times and self.times[0] <= now - self.window_s:
                self.times.popleft()
            ok = len(self.times) < self.limit
            if ok:
                self.times.append(now)
            reset = (self.times[0] + self.window_s - now) if self.times else 0.0
            retry = 0.0 if ok else reset
            return ok, max(0, int(self.limit - len(self.times))), reset, retry
        self.tokens = min(self.capacity, self.tokens + (now - self.t) * self.rate)
        self.t = now
        ok = self.tokens >= 1.0
        if ok:
            self.tokens -= 1.0
        retry = 0.0 if ok else (1.0 - self.tokens) / self.rate
        reset = (self.capacity - self.tokens) / self.rate
        return ok, int(self.tokens), reset, retry


def _duration(seconds: float) -> str:
    """OpenAI's reset format: '120ms', '1.5s', '6m0s'."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    return f"{int(seconds // 60)}m{seconds % 60:.0f}s"


# ---------------------------------------------------------------------------------------------
# HTTP plumbing


@dataclass
class Request:
    """An HTTP request as a handler sees it. ``params`` holds the ``{name}`` path segments."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Response:
    """What a handler returns.

    ``fault`` labels it in ``by_fault``; ``answered`` marks a usable answer (it counts in ``answered``
    and, for a body answered before, in ``duplicates``); ``drop`` closes the connection unanswered;
    ``close`` closes it after the answer (without saying so: a keep-alive timeout); ``raw`` is sent
    instead of the encoded response (protocol-level tests: chunked bodies, interim answers...).
    """

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    fault: str = "ok"
    answered: bool = False
    drop: bool = False
    close: bool = False
    raw: bytes | None = None

    @classmethod
    def json(cls, status: int, obj: Any, **kw: Any) -> Response:
        return cls(status, json.dumps(obj, separators=(",", ":")).encode(), **kw)

    def encode(self, keep_alive: bool) -> bytes:
        head = [f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Status')}",
                f"content-type: {self.content_type}", f"content-length: {len(self.body)}"]
        if not keep_alive:
            head.append("connection: close")
        head.extend(f"{k}: {v}" for k, v in self.headers.items())
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + self.body


def error_response(status: int, message: str, type_: str, code: str | None = None, **kw: Any) -> Response:
    """An OpenAI-shaped error body."""
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return Response.json(status, body, **kw)


Handler = Callable[["FaultServer", Request], Awaitable[Response]]


class _Route:
    def __init__(self, method: str, pattern: str, handler: Handler) -> None:
        self.method = method.upper()
        self.pattern = pattern
        self.parts = pattern.strip("/").split("/")
        self.handler = handler

    def match(self, path: str) -> dict[str, str] | None:
        parts = path.strip("/").split("/")
        if len(parts) != len(self.parts):
            return None
        params: dict[str, str] = {}
        for want, got in zip(self.parts, parts, strict=True):
            if want.startswith("{") and want.endswith("}"):
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


def canonical_body(body: bytes) -> bytes:
    """The request body as canonical JSON (sorted keys), or the raw bytes if it is not JSON."""
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        return body


# ---------------------------------------------------------------------------------------------
# the server


class FaultServer:
    """The server: a route table, the fault settings, a server-side limiter and counters."""

    def __init__(self, faults: Faults | None = None, plugins: Iterable[str] = ()) -> None:
        self.faults = faults or Faults()
        self.counters = _Counters()
        self.rng = random.Random(self.faults.seed)
        self.limiter = _RateLimit(self.faults)
        self.routes: list[_Route] = []
        self.port: int | None = None
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task] = set()
        for method, pattern, handler in DEFAULT_ROUTES:
            self.add_route(method, pattern, handler)
        for spec in plugins:
            module, _, func = spec.partition(":")
            getattr(importlib.import_module(module), func or "register")(self)

    # -- configuration ------------------------------------------------------------------------

    def add_route(self, method: str, pattern: str, handler: Handler) -> None:
        """Serve ``method pattern`` with ``handler``; later routes win over earlier identical ones."""
        self.routes.insert(0, _Route(method, pattern, handler))

    def configure(self, **changes: Any) -> None:
        """Change fault settings; the limiter and the random draws restart from the new settings."""
        with self.counters.lock:
            self.faults.update(**changes)
            self.limiter = _RateLimit(self.faults)
            if "seed" in changes:
                self.rng = random.Random(self.faults.seed)

    def reset(self) -> None:
        """Zero the counters (the limiter keeps its state)."""
        with self.counters.lock:
            self.counters.reset()

    def stats(self) -> Stats:
        return self.counters.snapshot()

    # -- helpers for handlers -----------------------------------------------------------------

    def check_rate_limit(self) -> tuple[Response | None, dict[str, str]]:
        """Apply the requests-per-minute limit: (a 429 Response or None, x-ratelimit headers)."""
        f = self.faults
        if not f.rpm:
            return None, {}
        ok, remaining, reset, retry = self.limiter.take(time.monotonic())
        headers = {
            "x-ratelimit-limit-requests": str(int(f.rpm)),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": _duration(reset),
        } if f.ratelimit_headers else {}
        if ok:
            return None, headers
        return self.rate_limited(headers, retry), headers

    def rate_limited(self, headers: dict[str, str], retry: float) -> Response:
        """A 429 with Retry-After (whole seconds, at least 1) and, if enabled, retry-after-ms."""
        f = self.faults
        retry = f.retry_after_s if f.retry_after_s is not None else retry
        h = dict(headers)
        h["retry-after"] = str(max(1, math.ceil(retry)))
        if f.retry_after_ms_header:
            h["retry-after-ms"] = str(max(1, math.ceil(retry * 1000)))
        return error_response(429, "Rate limit reached for requests (fault server).", "requests",
                              "rate_limit_exceeded", headers=h, fault="rate_limited")

    def markers(self, text: str) -> dict[str, int]:
        """``[[name]]`` / ``[[name*N]]`` markers in ``text``: name -> N (0 = every attempt)."""
        return {m.group(1): int(m.group(2) or 0) for m in _MARKER.finditer(text)}

    def attempt(self, key: bytes) -> int:
        """1-based count of requests seen with this canonical body."""
        c = self.counters
        with c.lock:
            c.attempts[key] += 1
            return c.attempts[key]

    def fault_on(self, name: str, markers: dict[str, int], attempt: int, rate: float = 0.0) -> bool:
        """Whether fault ``name`` hits this attempt: by marker, else at random with ``rate``."""
        if name in markers:
            n = markers[name]
            return n == 0 or attempt <= n
        return rate > 0 and self.rng.random() < rate

    async def pause(self, seconds: float) -> None:
        """The configured latency (plus ``seconds``, plus jitter)."""
        f = self.faults
        delay = f.latency_s + seconds + (self.rng.random() * f.jitter_s if f.jitter_s else 0.0)
        if f.load_latency_s:
            delay += f.load_latency_s * self.counters.in_flight
        if delay > 0:
            await asyncio.sleep(delay)

    # -- serving ------------------------------------------------------------------------------

    async def start(self, port: int = 0, tls: tuple[str, str] | None = None) -> int:
        """Listen on 127.0.0.1 (``tls``: a certificate and key file to serve https instead of http)."""
        ctx = None
        if tls is not None:
            import ssl

            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*tls)
        self._server = await asyncio.start_server(self._connection, HOST, port, backlog=2048, limit=2**22, ssl=ctx)
        self.port = self._server.sockets[0].getsockname()[1]
        self.counters.reset()
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                req = await _read_request(reader)
                if req is None:
                    return
                keep_alive = req.headers.get("connection", "").lower() != "close"
                resp = await self._dispatch(req, reader)
                if resp is None:
                    return
                writer.write(resp.raw if resp.raw is not None else resp.encode(keep_alive))
                await writer.drain()
                if not keep_alive or resp.close:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    async def _dispatch(self, req: Request, reader: asyncio.StreamReader) -> Response | None:
        route = None
        allowed = False
        for r in self.routes:
            params = r.match(req.path)
            if params is not None:
                allowed = True
                if r.method == req.method:
                    route, req.params = r, params
                    break
        internal = req.path.startswith("/_")
        if route is None:
            resp = error_response(405 if allowed else 404, f"no route for {req.method} {req.path}",
                                  "invalid_request_error")
            if not internal:
                self._count(req, "?", resp, time.monotonic())
            return resp
        if internal:
            return await route.handler(self, req)
        c = self.counters
        now = time.monotonic()
        with c.lock:
            c.total += 1
            c.arrivals.append(now - c.t0)
            c.in_flight += 1
            c.max_in_flight = max(c.max_in_flight, c.in_flight)
            t0 = c.t0
        try:
            resp = await route.handler(self, req)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a handler bug: answer 500 and count it, keep serving
            resp = error_response(500, f"handler error: {type(e).__name__}: {e}", "server_error",
                                  fault="handler_error")
        finally:
            with c.lock:
                if c.t0 == t0:
                    c.in_flight -= 1
        if reader.at_eof() and not resp.drop:  # the client gave up (timed out) while we worked
            resp = Response(499, fault=resp.fault + "+client_gone", drop=True)
        self._count(req, route.pattern, resp, None)
        return None if resp.drop else resp

    def _count(self, req: Request, route: str, resp: Response, arrived: float | None) -> None:
        c = self.counters
        with c.lock:
            if arrived is not None:
                c.total += 1
                c.arrivals.append(arrived - c.t0)
            c.by_status[resp.status] += 1
            c.by_fault[resp.fault] += 1
            c.by_route[f"{req.method} {route}"] += 1
            if resp.answered and resp.status < 300:
                c.answered += 1
                key = hashlib.sha256(req.method.encode() + req.path.encode() + canonical_body(req.body)).digest()
                if key in c.seen:
                    c.duplicates += 1
                else:
                    c.seen.add(key)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    """One HTTP/1.1 request (Content-Length or chunked body), or None at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _ = lines[0].split(" ", 2)
    except ValueError:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    try:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                data = await reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(data[:-2])
            body = b"".join(chunks)
        else:
            n = int(headers.get("content-length") or 0)
            body = await reader.readexactly(n) if n else b""
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        return None
    if target.startswith(("http://", "https://")):  # absolute form (sent through a proxy): keep the path
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    path, _, query = target.partition("?")
    return Request(method.upper(), path, query, headers, body)


# ---------------------------------------------------------------------------------------------
# routes


def _completion_text(seed_hex: str, words: int) -> list[str]:
    out: list[str] = []
    h = seed_hex
    while len(out) < words:
        out.extend(f"w{h[i:i + 4]}" for i in range(0, len(h) - 3, 4))
        h = hashlib.sha256(h.encode()).hexdigest()
    return out[:words]


async def chat_completions(server: FaultServer, req: Request) -> Response:
    """``POST /v1/chat/completions`` with every fault switch."""
    f = server.faults
    try:
        payload = req.json()
        messages = payload["messages"]
        model = payload["model"]
        text = "\n".join(str(m.get("content") or "") for m in messages)
    except (ValueError, KeyError, TypeError, AttributeError):
        return error_response(400, "body must be JSON with 'model' and 'messages'", "invalid_request_error",
                              fault="bad_body")
    markers = server.markers(text)
    key = canonical_body(req.body)
    attempt = server.attempt(key)
    on = server.fault_on
    if on("429", markers, attempt):
        return server.rate_limited({}, 1.0)
    limited, rl_headers = server.check_rate_limit()
    if limited is not None:
        return limited
    kw: dict[str, Any] = {"headers": rl_headers}
    refused = _refuse(server, req, model)
    if refused is not None:
        return refused
    if on("400", markers, attempt):
        await server.pause(0)
        return error_response(400, "Invalid request: the prompt holds the [[400]] marker.", "invalid_request_error",
                              "invalid_value", fault="bad_request", **kw)
    if on("401", markers, attempt):
        token = req.headers.get("authorization", "").removeprefix("Bearer ")
        return error_response(401, f"Incorrect API key provided: {token}.", "invalid_request_error",
                              "invalid_api_key", fault="unauthorized", **kw)
    if on("drop", markers, attempt, f.drop_rate):
        await server.pause(0)
        return Response(0, fault="dropped", drop=True)
    if on("500", markers, attempt, f.error_rate):
        await server.pause(0)
        return error_response(500, "The server had an error while processing your request.", "server_error",
                              fault="server_error", **kw)
    slow = on("slow", markers, attempt, f.slow_rate)
    await server.pause(f.slow_s if slow else 0.0)
    if on("malformed", markers, attempt, f.malformed_rate):
        return Response(200, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess', fault="malformed", **kw)
    if on("html", markers, attempt, f.html_rate):
        return Response(200, HTML_PAGE, content_type="text/html; charset=utf-8", fault="html", **kw)
    if on("nochoices", markers, attempt, f.nochoices_rate):
        return Response.json(200, {"id": "chatcmpl-empty", "object": "chat.completion", "choices": []},
                             fault="no_choices", **kw)

    digest = hashlib.sha256(key).hexdigest()
    words = _completion_text(digest, f.completion_words)
    finish = "stop"
    fault = "slow" if slow else "ok"
    max_tokens = payload.get("max_completion_tokens") or payload.get("max_tokens")
    if on("length", markers, attempt, f.length_rate):
        words, finish, fault = words[: max(1, len(words) // 2)], "length", "length"
    elif isinstance(max_tokens, int) and 0 < max_tokens < len(words):
        words, finish, fault = words[:max_tokens], "length", "length"
    content: str | None = " ".join(words)
    if on("empty", markers, attempt, f.empty_rate):
        content, words, fault = "", [], "empty"
    elif on("null", markers, attempt):
        content, words, fault = None, [], "null_content"
    n = int(payload.get("n") or 1)
    prompt_tokens = max(1, len(text) // 4)
    body = {
        "id": f"chatcmpl-{digest[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": content, "refusal": None},
             "logprobs": None, "finish_reason": finish}
            for i in range(n)
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words) * n,
                  "total_tokens": prompt_tokens + len(words) * n},
        "system_fingerprint": "fault-server",
    }
    return Response.json(200, body, fault=fault, answered=True, **kw)


HTML_PAGE = (b"<!DOCTYPE html><html><head><title>Sign in - Corporate Proxy</title></head><body>"
             b"<h1>Authentication required</h1><p>Sign in to continue.</p></body></html>")


def _refuse(server: FaultServer, req: Request, model: str | None) -> Response | None:
    """The whole-endpoint mistakes: a wrong key (401), a model not served (404)."""
    f = server.faults
    if f.api_key is not None:
        token = req.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if token != f.api_key:
            shown = f"{token[:3]}***{token[-4:]}" if len(token) > 8 else "***"
            return error_response(401, f"Incorrect API key provided: {shown}. You can find your API key at "
                                       "https://platform.openai.com/account/api-keys.", "invalid_request_error",
                                  "invalid_api_key", fault="unauthorized")
    if model is not None and f.models is not None and model not in f.models:
        return error_response(404, f"The model `{model}` does not exist or you do not have access to it.",
                              "invalid_request_error", "model_not_found", fault="model_not_found")
    return None


async def list_models(server: FaultServer, req: Request) -> Response:
    """``GET /v1/models``: the models served (``models``, default one fake model); a wrong key gets 401."""
    refused = _refuse(server, req, None)
    if refused is not None:
        return refused
    ids = server.faults.models or ["fault-model"]
    return Response.json(200, {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "fault-server",
                                                           "created": 0} for i in ids]}, answered=True)


async def get_stats(server: FaultServer, req: Request) -> Response:
    """``GET /_stats``: the counters as JSON."""
    return Response.json(200, server.stats().to_dict())


async def post_reset(server: FaultServer, req: Request) -> Response:
    """``POST /_reset``: zero the counters."""
    server.reset()
    return Response.json(200, {"ok": True})


async def post_config(server: FaultServer, req: Request) -> Response:
    """``POST /_config``: change fault settings (JSON object of :class:`Faults` fields)."""
    try:
        server.configure(**req.json())
    except (TypeError, ValueError) as e:
        return error_response(400, str(e), "invalid_request_error")
    return Response.json(200, dataclasses.asdict(server.faults))


#: The built-in route table (method, pattern, handler); plugins add more with ``add_route``.
DEFAULT_ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/v1/chat/completions", chat_completions),
    ("GET", "/v1/models", list_models),
    ("GET", "/_stats", get_stats),
    ("POST", "/_reset", post_reset),
    ("POST", "/_config", post_config),
]


# ---------------------------------------------------------------------------------------------
# running it: a thread, a subprocess, or the command line


class StatsAccessor:
    """Reads and steers a running server: ``stats()`` -> :class:`Stats`, ``.reset()``, ``.configure()``.

    Talks to the server object directly (thread mode) or over HTTP (subprocess mode).
    """

    def __init__(self, root_url: str, server: FaultServer | None = None) -> None:
        self.root_url = root_url
        self.server = server

    def __call__(self) -> Stats:
        if self.server is not None:
            return self.server.stats()
        return Stats.from_dict(self._http("GET", "/_stats"))

    def reset(self) -> None:
        if self.server is not None:
            self.server.reset()
        else:
            self._http("POST", "/_reset", {})

    def configure(self, **changes: Any) -> None:
        if self.server is not None:
            self.server.configure(**changes)
        else:
            self._http("POST", "/_config", changes)

    def _http(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.root_url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())


class _ThreadRunner:
    """The server on its own event loop in a daemon thread."""

    def __init__(self, server: FaultServer, tls: tuple[str, str] | None = None) -> None:
        self.server = server
        self.tls = tls
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault-server", daemon=True)

    def start(self) -> int:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        assert self.server.port is not None
        return self.server.port

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = self._loop.create_future()
            try:
                await self.server.start(tls=self.tls)
            except BaseException as e:
                self._error = e
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop
            finally:
                await self.server.stop()

        asyncio.run(main())

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(lambda: self._stop.done() or self._stop.set_result(None))
        self._thread.join(10)


@contextlib.contextmanager
def serve(*, process: bool = False, plugins: Iterable[str] = (), tls: tuple[str, str] | None = None,
          **faults: Any) -> Iterator[tuple[str, StatsAccessor]]:
    """Run a fault server on 127.0.0.1 (ephemeral port); yield ``(base_url, stats)``.

    ``base_url`` ends in ``/v1``. ``faults`` are :class:`Faults` fields. ``process=True`` runs the
    server in a subprocess (so its CPU is not the caller's); otherwise in a daemon thread, where
    ``tls=(certfile, keyfile)`` serves https.
    """
    cfg = Faults()
    cfg.update(**faults)
    plugins = list(plugins)
    if not process:
        server = FaultServer(cfg, plugins)
        runner = _ThreadRunner(server, tls)
        port = runner.start()
        scheme = "https" if tls else "http"
        try:
            yield f"{scheme}://{HOST}:{port}/v1", StatsAccessor(f"http://{HOST}:{port}", server)
        finally:
            runner.stop()
        return
    if tls is not None:
        raise ValueError("tls is supported in thread mode only")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--config", json.dumps(dataclasses.asdict(cfg))]
    for p in plugins:
        cmd += ["--plugin", p]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root, env=env, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"fault server did not start (said {line!r}, exit code {proc.poll()})")
        port = int(line.split()[1])
        yield f"http://{HOST}:{port}/v1", StatsAccessor(f"http://{HOST}:{port}")
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # the child exits when its stdin closes
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> None:
    """Command line: serve until stdin closes (or Ctrl-C); print ``PORT <n>`` once listening."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--config", default="{}", help="JSON object of Faults fields")
    ap.add_argument("--plugin", action="append", default=[], help="module:function registering more routes")
    args = ap.parse_args(argv)
    cfg = Faults()
    cfg.update(**json.loads(args.config))
    server = FaultServer(cfg, args.plugin)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        port = await server.start(args.port)
        print(f"PORT {port}", flush=True)
        stdin_closed = loop.create_future()

        def watch_stdin() -> None:
            with contextlib.suppress(Exception):
                sys.stdin.read()
            loop.call_soon_threadsafe(lambda: stdin_closed.done() or stdin_closed.set_result(None))

        threading.Thread(target=watch_stdin, daemon=True).start()
        try:
            await stdin_closed
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
