"""The ``openai`` backend, through ModelCaller + RequestCache, against the loopback fault server.

Both transports (``options.http_client``: the lean HTTP client and the openai SDK) are held to the
same classification: 429 -> cool-down and retry, 5xx / malformed / timeout / dropped connection ->
retried, other 4xx -> the row fails at once with ``http_<status>``. Latencies are tens of
milliseconds and the retry backoff is shortened, so the whole file runs in seconds.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import statistics
import time
from pathlib import Path

import pytest

from cftdata.backends import Request, make_backend
from cftdata.backends.cache import RequestCache
from cftdata.backends.caller import ModelCaller
from cftdata.backends.limits import RateLimiter
from cftdata.backends.online import HTTPClient, OnlineBackend
from cftdata.errors import BackendConfigError, NoProgressError
from cftdata.recipe import ModelSpec
from tests.servers.fault_server import FaultServer, Response, serve
from tests.servers.fault_server import Request as ServerRequest

KEY_ENV = "CFTDATA_FAULT_TEST_KEY"
SECRET = "sk-cftdata-test-9f3c5a0e7d21b4c8"
TRANSPORTS = ["lean", "sdk"]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test key, and no proxy: every request must go straight to 127.0.0.1."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


class Client:
    """A backend built from a ModelSpec, a cache file in tmp_path and the ModelCaller in front."""

    def __init__(self, base_url: str, tmp_path: Path, transport: str = "lean", **spec: object) -> None:
        fields: dict[str, object] = {
            "backend": "openai", "model": "fault-model", "base_url": base_url, "api_key_env": KEY_ENV,
            "concurrency": 8, "timeout_s": 5, "max_retries": 3, "stall_timeout_s": 30,
            "options": {"http_client": transport},
        }
        fields.update(spec)
        self.spec = ModelSpec(**fields)
        self.backend = make_backend(self.spec)
        assert isinstance(self.backend, OnlineBackend)
        # Short backoff: retries in milliseconds, not seconds.
        self.backend.backoff_initial_s = 0.01
        self.backend.backoff_jitter_s = 0.01
        self.cache_path = tmp_path / "requests.sqlite"
        self.cache = RequestCache(self.cache_path)
        self.caller = ModelCaller(self.backend, self.cache)

    def call(self, requests: list[Request]):
        return self.caller.call(requests)


def rows(n: int, marker: str = "", *, tag: str = "q", **params: object) -> list[Request]:
    """``n`` distinct requests, each holding ``marker`` (a fault switch of the server)."""
    return [
        Request.make("fault-model", [{"role": "system", "content": "You are a strict grader."},
                                     {"role": "user", "content": f"Critique {tag}{i}: 2 + 2 = {i}. {marker}"}],
                     {"temperature": 0.0, "max_tokens": 64, **params})
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------
# success


def test_success_with_usage_and_deterministic_text(tmp_path: Path) -> None:
    answers = {}
    for transport in TRANSPORTS:
        with serve(latency_s=0.02) as (url, stats):
            c = Client(url, tmp_path / transport, transport)
            results = c.call(rows(20))
            s = stats()
        assert all(r.ok and r.finish_reason == "stop" for r in results), results[0]
        assert all(r.text and r.input_tokens > 0 and r.output_tokens == 8 for r in results)
        assert len({r.text for r in results}) == 20
        assert s.total == 20 and s.by_status == {200: 20} and s.duplicates == 0
        assert c.caller.stats.calls == 20
        assert c.caller.stats.output_tokens == 160
        assert c.backend.stats()["transport"] == transport
        answers[transport] = [r.text for r in results]
    # Same request body from both transports -> same answer: they send the same JSON.
    assert answers["lean"] == answers["sdk"]


def test_many_concurrent_connections(tmp_path: Path) -> None:
    with serve(latency_s=0.2) as (url, stats):
        c = Client(url, tmp_path, concurrency=128)
        results = c.call(rows(300))
        s = stats()
    assert all(r.ok for r in results)
    # concurrency shows in the server's counts, not in a wall-clock bound (a loaded CI machine is slow)
    assert s.max_in_flight >= 100 and s.total == 300 and s.duplicates == 0


def test_backend_is_reusable_across_calls(tmp_path: Path) -> None:
    """Each call runs its own event loop; the limiter and the client must not stick to the first."""
    with serve(latency_s=0.01) as (url, stats):
        c = Client(url, tmp_path, concurrency=2)
        for k in range(3):
            assert all(r.ok for r in c.call(rows(10, tag=f"call{k}-")))
        assert stats().total == 30


def test_stats_over_http_from_a_subprocess_server(tmp_path: Path) -> None:
    with serve(process=True, latency_s=0.01) as (url, stats):
        c = Client(url, tmp_path)
        assert all(r.ok for r in c.call(rows(5)))
        s = stats()  # GET /_stats
        assert s.total == 5 and s.status(200) == 5 and s.by_route == {"POST /v1/chat/completions": 5}
        stats.configure(error_rate=1.0)  # POST /_config
        stats.reset()  # POST /_reset
        c.backend.spec.max_retries = 0
        assert [r.error for r in c.call(rows(1, tag="x"))] == ["server_error"]
        assert stats().by_status == {500: 1}


# ---------------------------------------------------------------------------------------------
# rate limits


def test_429_retry_after_is_honoured(tmp_path: Path) -> None:
    """Every row's first attempt gets 429 with ``Retry-After: 1`` (and no retry-after-ms)."""
    with serve(latency_s=0.01, retry_after_ms_header=False) as (url, stats):
        c = Client(url, tmp_path, concurrency=4)
        results = c.call(rows(4, "[[429*1]]"))
        s = stats()
    assert all(r.ok for r in results)
    assert s.by_status == {429: 4, 200: 4} and s.duplicates == 0
    first, retries = sorted(s.arrivals)[:4], sorted(s.arrivals)[4:]
    assert min(retries) - max(first) >= 0.95, s.arrivals  # nobody came back before Retry-After
    st = c.backend.stats()
    assert st["rate_limited"] == 4 and st["failed"] == 0
    # Four 429s for requests sent together are one congestion event: concurrency halves once.
    assert st["min_concurrency"] == 2


def test_429_under_a_server_limit_recovers_with_less_concurrency(tmp_path: Path) -> None:
    # The server allows 10 requests/s with a burst of 3 and sends no x-ratelimit headers;
    # the client is not told any limit, so it learns from 429s alone.
    with serve(latency_s=0.02, rpm=600, rpm_burst=3, ratelimit_headers=False) as (url, stats):
        c = Client(url, tmp_path, concurrency=16)
        results = c.call(rows(30))
        s = stats()
    assert all(r.ok for r in results)
    assert s.status(200) == 30 and s.status(429) > 0 and s.duplicates == 0
    assert s.total == 30 + s.status(429)
    st = c.backend.stats()
    assert st["rate_limited"] == s.status(429) and st["failed"] == 0
    assert st["min_concurrency"] < 16


def test_server_stricter_than_the_recipe_pace(tmp_path: Path) -> None:
    # The recipe says 600/min; the server allows 540/min with no burst (a bucket of one) and sends no
    # headers. The client must slow its pace a little rather than cut concurrency to one (which
    # would collect a 429 for almost every row and take ~6 s): 30 rows at ~9/s, 0.2 s each.
    with serve(latency_s=0.2, rpm=540, rpm_burst=1, ratelimit_headers=False) as (url, stats):
        c = Client(url, tmp_path, concurrency=16, requests_per_minute=600)
        results = c.call(rows(30))
        s = stats()
    assert all(r.ok for r in results)
    st = c.backend.stats()
    assert s.status(429) <= 6, (s.by_status, st)
    assert st["min_concurrency"] >= 3 and 0.5 <= st["min_pace"] < 1


def test_ratelimit_headers_lower_the_pace(tmp_path: Path) -> None:
    # The server advertises 240/min (a burst big enough that it never has to say 429); the recipe
    # claims 6000/min. After the first answer the client must pace at ~4 requests/s. (Requests
    # already waiting for their turn keep the recipe's pace: at most `concurrency` of them.)
    with serve(latency_s=0.01, rpm=240, rpm_burst=100) as (url, stats):
        c = Client(url, tmp_path, concurrency=2, requests_per_minute=6000)
        results = c.call(rows(8))
        s = stats()
    assert all(r.ok for r in results)
    assert s.status(429) == 0
    assert c.backend.stats()["server_rpm_limit"] == 240
    t = sorted(s.arrivals)
    gaps = [b - a for a, b in zip(t, t[1:], strict=False)]
    assert statistics.median(gaps) >= 0.2, s.arrivals  # 6000/min would be 0.01 s apart


def test_429s_do_not_use_up_max_retries(tmp_path: Path) -> None:
    with serve(latency_s=0.01, retry_after_s=0.05) as (url, stats):
        c = Client(url, tmp_path, max_retries=1)
        (r,) = c.call(rows(1, "[[429*3]]"))
        s = stats()
    assert r.ok and s.by_status == {429: 3, 200: 1}
    assert c.backend.stats()["rate_limited"] == 3


def test_limiter_remaining_zero_pauses_and_one_cut_per_congestion_event() -> None:
    async def main() -> None:
        lim = RateLimiter(8)
        await lim.release(headers={"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "0",
                                   "x-ratelimit-reset-requests": "20s"}, sent_at=await lim.acquire())
        t0 = time.monotonic()
        await lim.release(sent_at=await lim.acquire())
        assert time.monotonic() - t0 >= 0.09  # waited ~60/600 s for one slot to come back
        assert lim.stats.header_rpm == 600

        lim = RateLimiter(8)
        sent = [await lim.acquire() for _ in range(4)]
        for s in sent:
            await lim.release(rate_limited=True, retry_after=0.0, sent_at=s)
        assert lim.limit == 4 and lim.stats.rate_limited == 4  # four 429s, one cut
        await lim.release(rate_limited=True, retry_after=0.0, sent_at=await lim.acquire())
        assert lim.limit == 2  # a request sent after the cut that still got 429: cut again

        # With a known pace, a 429 slows the pace by 10 % and keeps the concurrency that pace needs.
        # 6000/min (x 0.99 safety) with answers taking 0.1 s: ~10 requests in flight keep the pace.
        lim = RateLimiter(16, requests_per_minute=6000)
        await lim.release(sent_at=await lim.acquire() - 0.1)  # a success that took 0.1 s
        await lim.release(rate_limited=True, retry_after=0.0, sent_at=await lim.acquire())
        assert lim.pace == pytest.approx(0.9) and lim.limit == 10  # not 8: 89/s x 0.1 s needs 10
        for _ in range(3):
            await lim.release(rate_limited=True, retry_after=0.0, sent_at=await lim.acquire())
        assert lim.stats.min_pace == pytest.approx(0.9**4) and lim.limit == 8
        for _ in range(10):  # successes restore the pace, 0.2 % each
            await lim.release(sent_at=await lim.acquire() - 0.1)
        assert lim.pace == pytest.approx(0.9**4 + 0.02)

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# errors: retried, fail-fast, give up


def test_random_500s_are_retried(tmp_path: Path) -> None:
    with serve(latency_s=0.01, error_rate=0.2, seed=7) as (url, stats):
        c = Client(url, tmp_path, max_retries=8)
        results = c.call(rows(40))
        s = stats()
    assert all(r.ok for r in results)
    assert s.status(500) > 0 and s.status(200) == 40 and s.duplicates == 0
    st = c.backend.stats()
    assert st["server_errors"] == s.status(500) == st["retries"]


def test_500s_retried_then_succeed(tmp_path: Path, transport: str) -> None:
    with serve(latency_s=0.01) as (url, stats):
        c = Client(url, tmp_path, transport)
        results = c.call(rows(5, "[[500*2]]"))
        s = stats()
    assert all(r.ok for r in results)
    assert s.by_status == {500: 10, 200: 5}
    assert c.backend.stats()["retries"] == 10


def test_400_fails_fast(tmp_path: Path, transport: str) -> None:
    with serve(latency_s=0.01) as (url, stats):
        c = Client(url, tmp_path, transport)
        results = c.call(rows(4) + rows(1, "[[400]]", tag="bad"))
        s = stats()
    assert all(r.ok for r in results[:4])
    bad = results[4]
    assert bad.error == "http_400"
    assert "HTTP 400" in bad.error_detail and "[[400]] marker" in bad.error_detail
    assert s.by_fault["bad_request"] == 1 and s.total == 5  # one request, no retry
    assert c.backend.stats()["retries"] == 0
    assert c.caller.stats.errors == {"http_400": 1}


def test_malformed_json_retried_then_reported(tmp_path: Path, transport: str) -> None:
    with serve(latency_s=0.01) as (url, stats):
        c = Client(url, tmp_path, transport, max_retries=2)
        flaky = c.call(rows(3, "[[malformed*1]]"))
        assert all(r.ok for r in flaky) and stats().by_fault == {"malformed": 3, "ok": 3}
        stats.reset()
        broken = c.call(rows(1, "[[malformed]]", tag="m") + rows(1, "[[nochoices]]", tag="n"))
        s = stats()
    for r in broken:
        assert r.error == "server_error"
        assert "unparseable response" in r.error_detail and "gave up after 3 attempts" in r.error_detail
    assert s.total == 6  # 1 + max_retries attempts each


def test_timeouts_are_retried_then_reported(tmp_path: Path, transport: str) -> None:
    with serve(latency_s=0.01, slow_s=5) as (url, stats):
        c = Client(url, tmp_path, transport, timeout_s=0.3, max_retries=1)
        results = c.call(rows(1, "[[slow*1]]", tag="once") + rows(1, "[[slow]]", tag="always"))
        s = stats()
    once, always = results
    assert once.ok
    assert always.error == "timeout" and "gave up after 2 attempts" in always.error_detail
    assert s.total == 4
    assert c.backend.stats()["timeouts"] == 3


def test_dropped_connections_and_refused_port(tmp_path: Path, transport: str) -> None:
    with serve(latency_s=0.01) as (url, stats):
        c = Client(url, tmp_path, transport)
        assert all(r.ok for r in c.call(rows(3, "[[drop*1]]")))
        assert stats().by_fault == {"dropped": 3, "ok": 3}
    # The server is gone now: connection refused, retried, then reported.
    c = Client(url, tmp_path / "gone", transport, max_retries=1)
    (r,) = c.call(rows(1, tag="gone"))
    assert r.error == "connection" and "gave up after 2 attempts" in r.error_detail
    assert c.backend.stats()["connection_errors"] == 2


def test_truncated_and_empty_answers_are_returned_for_the_pipeline(tmp_path: Path) -> None:
    with serve(latency_s=0.01) as (url, stats):
        c = Client(url, tmp_path)
        length, capped, empty, null = c.call(
            rows(1, "[[length]]", tag="l") + rows(1, tag="c", max_tokens=3) + rows(1, "[[empty]]", tag="e")
            + rows(1, "[[null]]", tag="n")
        )
        assert stats().total == 4
    assert length.ok and length.finish_reason == "length" and length.text and length.output_tokens == 4
    assert capped.ok and capped.finish_reason == "length" and len(capped.text.split()) == 3
    assert empty.ok and empty.text == "" and empty.finish_reason == "stop"
    assert null.ok and null.text is None


# ---------------------------------------------------------------------------------------------
# stall detection


def test_stall_raises_no_progress_error(tmp_path: Path) -> None:
    with serve(latency_s=0.01, slow_s=10) as (url, stats):
        c = Client(url, tmp_path, timeout_s=30, stall_timeout_s=0.5)
        t0 = time.monotonic()
        with pytest.raises(NoProgressError) as info:
            c.call(rows(3, "[[slow]]"))
        elapsed = time.monotonic() - t0
        s = stats()
    msg = str(info.value)
    assert elapsed >= 0.5  # not before the stall timeout...
    assert s.total == 3 and s.status(200) == 0  # ...and before any of the slow answers came back
    assert "finished no request in 0.5s" in msg and "3 in flight" in msg and "stall_timeout_s" in msg
    assert "fault-model" in msg and "resumes" in msg


def test_slow_but_steady_progress_is_not_a_stall(tmp_path: Path) -> None:
    with serve(latency_s=0.15) as (url, stats):
        c = Client(url, tmp_path, concurrency=1, stall_timeout_s=0.5)
        assert all(r.ok for r in c.call(rows(6)))  # ~0.9 s in all, > the stall timeout


# ---------------------------------------------------------------------------------------------
# cache and secrets


def test_cache_second_identical_call_makes_no_request(tmp_path: Path) -> None:
    with serve(latency_s=0.01) as (url, stats):
        first = Client(url, tmp_path)
        requests = rows(10) + rows(1, "[[400]]", tag="bad")
        before = first.call(requests)
        assert stats().total == 11
        first.cache.close()
        again = Client(url, tmp_path)  # a new run on the same cache file
        after = again.call(requests)
        s = stats()
    assert s.total == 12  # only the failed row is asked again: failures are not cached
    assert [r.text for r in after[:10]] == [r.text for r in before[:10]]
    assert all(r.cached for r in after[:10]) and after[10].error == "http_400"
    assert again.caller.stats.cache_hits == 10 and again.caller.stats.calls == 1


def test_identical_requests_are_paid_once(tmp_path: Path) -> None:
    with serve(latency_s=0.01) as (url, stats):
        c = Client(url, tmp_path)
        results = c.call(rows(3) * 3)  # each request three times in one batch
        assert all(r.ok for r in results) and stats().total == 3
        other = Client(url, tmp_path / "other")  # another cache: the server sees a repeat
        other.call(rows(1))
        assert stats().duplicates == 1


def test_api_key_never_leaks(tmp_path: Path, transport: str) -> None:
    with serve(latency_s=0.01) as (url, stats):
        c = Client(url, tmp_path, transport, max_retries=1)
        results = c.call(
            rows(3) + rows(1, "[[401]]", tag="auth") + rows(1, "[[400]]", tag="bad")
            + rows(1, "[[500]]", tag="err") + rows(1, "[[malformed]]", tag="mal")
        )
        c.cache.close()
    assert [r.error for r in results] == [None, None, None, "http_401", "http_400", "server_error", "server_error"]
    # The server echoed the bearer token in its 401 message; the detail must mask it.
    assert "Incorrect API key provided: ***" in results[3].error_detail
    for r in results:
        assert SECRET not in r.error_detail and SECRET not in r.to_json()
    blobs = b"".join(p.read_bytes() for p in tmp_path.glob("requests.sqlite*"))
    assert blobs and SECRET.encode() not in blobs


# ---------------------------------------------------------------------------------------------
# transports


def test_auto_transport_lean_for_local_http_sdk_for_https_and_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    https = ModelSpec(backend="openai", model="m", base_url="https://api.example.invalid/v1", api_key_env=KEY_ENV)
    assert make_backend(https).transport == "sdk"  # hosted endpoints: the official SDK
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert make_backend(ModelSpec(backend="openai", model="m")).transport == "sdk"  # api.openai.com
    local = ModelSpec(backend="openai", model="m", base_url="http://10.0.0.5:8000/v1")
    assert make_backend(local).transport == "lean"  # a vLLM / llama.cpp server on plain http
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert make_backend(local).transport == "sdk"
    monkeypatch.setenv("NO_PROXY", "10.0.0.5")
    assert make_backend(local).transport == "lean"
    assert make_backend(https.model_copy(update={"options": {"http_client": "lean"}})).transport == "lean"
    assert make_backend(local.model_copy(update={"options": {"http_client": "sdk"}})).transport == "sdk"
    with pytest.raises(BackendConfigError, match="http_client"):
        make_backend(local.model_copy(update={"options": {"http_client": "curl"}}))


async def _chunked(server: FaultServer, req: ServerRequest) -> Response:
    return Response(raw=b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"transfer-encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n")


async def _gzip(server: FaultServer, req: ServerRequest) -> Response:
    return Response(200, gzip.compress(b'{"b": 2}'), headers={"content-encoding": "gzip"})


async def _closing(server: FaultServer, req: ServerRequest) -> Response:
    return Response.json(200, {"c": 3}, close=True)  # closes the connection without saying so


async def _until_eof(server: FaultServer, req: ServerRequest) -> Response:
    return Response(raw=b'HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{"d": 4}', close=True)


def register_protocol_routes(server: FaultServer) -> None:
    """A fault-server plugin: protocol corner cases for the lean HTTP client."""
    for path, handler in (("chunked", _chunked), ("gzip", _gzip), ("closing", _closing), ("eof", _until_eof)):
        server.add_route("POST", f"/v1/{path}", handler)


def test_http_client_protocol_corners() -> None:
    """Chunked and gzip bodies, a 100 interim answer, bodies delimited by EOF, and a keep-alive
    connection the server closed while it sat idle (the request is sent again on a new one)."""
    with serve(plugins=[f"{__name__}:register_protocol_routes"]) as (url, stats):

        async def main() -> list[bytes]:
            client = HTTPClient(url, {"Authorization": "Bearer x"})
            out = []
            for path in ("chunked", "gzip", "closing", "gzip", "eof", "closing", "closing"):
                r = await client.request("POST", f"/{path}", b"{}")
                assert r.status == 200
                out.append(r.body)
            await client.aclose()
            return out

        bodies = asyncio.run(main())
        s = stats()
    assert [json.loads(b) for b in bodies] == [{"a": 1}, {"b": 2}, {"c": 3}, {"b": 2}, {"d": 4}, {"c": 3}, {"c": 3}]
    assert s.by_route["POST /v1/gzip"] == 2 and s.by_route["POST /v1/closing"] == 3
