"""The ``openai`` backend, through ModelCaller + RequestCache, against the loopback fault server.

Classification: 429 -> cool-down and retry, 5xx / malformed / timeout / dropped connection ->
retried, other 4xx -> the row fails at once with ``http_<status>``. In-flight sizing: Little's law
when a pace is known, AIMD when not, ``concurrency`` a ceiling. The transport: keep-alive, https and
proxies (a loopback CONNECT proxy and a TLS fault server with a throwaway certificate). Latencies are
tens of milliseconds and the retry backoff is shortened, so the whole file runs in seconds.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import os
import statistics
import time
from pathlib import Path

import pytest

from cftdata.backends import Request, make_backend
from cftdata.backends.cache import RequestCache
from cftdata.backends.caller import ModelCaller
from cftdata.backends.http import HTTPClient, Proxy, proxy_for
from cftdata.backends.limits import HEADROOM, INITIAL_IN_FLIGHT, RateLimiter, parse_reset
from cftdata.backends.online import OnlineBackend, failure_kind
from cftdata.errors import BackendConfigError, NoProgressError
from cftdata.recipe import ModelSpec
from tests.servers.fault_server import FaultServer, Response, serve
from tests.servers.fault_server import Request as ServerRequest

KEY_ENV = "CFTDATA_FAULT_TEST_KEY"
SECRET = "sk-cftdata-test-9f3c5a0e7d21b4c8"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test key, and no proxy: every request must go straight to 127.0.0.1."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


class Client:
    """A backend built from a ModelSpec, a cache file in tmp_path and the ModelCaller in front."""

    def __init__(self, base_url: str, tmp_path: Path, **spec: object) -> None:
        fields: dict[str, object] = {
            "backend": "openai", "model": "fault-model", "base_url": base_url, "api_key_env": KEY_ENV,
            "concurrency": 8, "timeout_s": 5, "max_retries": 3, "stall_timeout_s": 30,
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
    with serve(latency_s=0.02) as (url, stats):
        c = Client(url, tmp_path)
        results = c.call(rows(20))
        s = stats()
    assert all(r.ok and r.finish_reason == "stop" for r in results), results[0]
    assert all(r.text and r.input_tokens > 0 and r.output_tokens == 8 for r in results)
    assert len({r.text for r in results}) == 20
    assert s.total == 20 and s.by_status == {200: 20} and s.duplicates == 0
    assert c.caller.stats.calls == 20
    assert c.caller.stats.output_tokens == 160


def test_many_concurrent_connections(tmp_path: Path) -> None:
    with serve(latency_s=0.2) as (url, stats):
        # A pace of 1,000/s at 0.2 s needs ~250 in flight: the ceiling of 128 binds.
        c = Client(url, tmp_path, concurrency=128, requests_per_minute=60_000)
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

        # With a known pace the in-flight limit is Little's law: pace x latency x 1.25 + HEADROOM; a 429
        # slows the pace by 10 %, and the limit follows the slower pace.
        lim = RateLimiter(1024, requests_per_minute=6000)  # paced at 98/s (0.98 safety)
        await lim.release(sent_at=await lim.acquire() - 0.1)  # a success that took 0.1 s
        assert lim.cap() == math.ceil(98 * 0.1 * 1.25) + HEADROOM
        await lim.release(rate_limited=True, retry_after=0.0, sent_at=await lim.acquire())
        assert lim.pace == pytest.approx(0.9) and lim.cap() == math.ceil(98 * 0.9 * 0.1 * 1.25) + HEADROOM
        for _ in range(3):
            await lim.release(rate_limited=True, retry_after=0.0, sent_at=await lim.acquire())
        assert lim.stats.min_pace == pytest.approx(0.9**4)
        for _ in range(10):  # successes restore the pace, 0.2 % each
            await lim.release(sent_at=await lim.acquire() - 0.1)
        assert lim.pace == pytest.approx(0.9**4 + 0.02)

    asyncio.run(main())


def test_limiter_sizes_in_flight_from_pace_and_latency() -> None:
    async def main() -> None:
        lim = RateLimiter(1024, requests_per_minute=3000)  # paced at 49/s
        assert lim.cap() == INITIAL_IN_FLIGHT
        t0 = await lim.acquire()
        lim.tick(now=t0 + 2.0)  # nothing answered after 2 s: the latency is at least 2 s
        assert lim.cap() == math.ceil(49 * 2.0 * 1.25) + HEADROOM
        await lim.release(sent_at=t0 - 5.0)  # the answer took 5 s: 3000/min needs ~250 in flight
        assert lim.cap() == math.ceil(49 * 5.0 * 1.25) + HEADROOM
        low = RateLimiter(64, requests_per_minute=3000)  # the ceiling binds
        await low.release(sent_at=await low.acquire() - 5.0)
        assert low.cap() == 64 and low.stats.max_concurrency == 64

        # The pace can come from the server: Anthropic's headers, its reset an RFC 3339 time.
        lim = RateLimiter(1024)
        assert lim.rate() is None
        await lim.release(headers={"anthropic-ratelimit-requests-limit": "600",
                                   "anthropic-ratelimit-requests-remaining": "0",
                                   "anthropic-ratelimit-requests-reset": "2000-01-01T00:00:00Z"},
                          sent_at=await lim.acquire())
        assert lim.stats.header_rpm == 600 and lim.rate() == pytest.approx(600 * 0.98 / 60)
        t0 = time.monotonic()
        await lim.release(sent_at=await lim.acquire())
        assert time.monotonic() - t0 < 0.09  # the reset time had passed: no pause
        # ... and from tokens per minute: 60,000 tokens/min at ~1,000 tokens a request = ~1 request/s.
        lim = RateLimiter(1024, tokens_per_minute=60_000)
        await lim.release(sent_at=await lim.acquire(1000))
        assert lim.rate() == pytest.approx(0.98)

    asyncio.run(main())
    assert parse_reset("6m0s") == 360 and parse_reset("120ms") == 0.12 and parse_reset("garbage") is None
    assert 9 < parse_reset(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 10))) <= 10


def test_in_flight_grows_to_what_the_pace_needs(tmp_path: Path) -> None:
    # 2,400/min (40/s) at 1 s latency needs ~40 in flight, more than the 16 a limiter starts with; the
    # recipe gives only requests_per_minute (concurrency stays the default ceiling). In flight must
    # grow within the first second (before any answer), without a single 429.
    with serve(latency_s=1.0, rpm=2400, rpm_mode="window", window_s=1.0) as (url, stats):
        c = Client(url, tmp_path, concurrency=ModelSpec().concurrency, requests_per_minute=2400)
        results = c.call(rows(160))
        s = stats()
    assert all(r.ok for r in results) and s.duplicates == 0
    assert s.status(429) <= 2, s.by_status  # under 1 % (timer jitter on a loaded machine)
    assert s.max_in_flight >= 30, s.max_in_flight
    arrivals = sorted(s.arrivals)
    # Before the first answer (1 s), more than the 16 a limiter starts with went out (40 at full pace).
    assert sum(a < arrivals[0] + 1.0 for a in arrivals) >= 24
    st = c.backend.stats()
    assert st["concurrency_ceiling"] == 1024 and 40 <= st["max_concurrency"] < 200


def test_without_a_pace_latency_stops_the_growth(tmp_path: Path) -> None:
    # A server that slows down under load (as vLLM does past its batch size): 20 ms plus 5 ms per
    # request in flight. No pace is known; slow start must stop once latency doubles, far below the
    # ceiling of 1024.
    with serve(latency_s=0.02, load_latency_s=0.005) as (url, stats):
        c = Client(url, tmp_path, concurrency=1024)
        results = c.call(rows(400))
        s = stats()
    assert all(r.ok for r in results)
    st = c.backend.stats()
    assert s.max_in_flight < 100 and st["max_concurrency"] < 100, (s.max_in_flight, st)
    assert st["max_concurrency"] > INITIAL_IN_FLIGHT  # it did grow first


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


def test_500s_retried_then_succeed(tmp_path: Path) -> None:
    with serve(latency_s=0.01) as (url, stats):
        c = Client(url, tmp_path)
        results = c.call(rows(5, "[[500*2]]"))
        s = stats()
    assert all(r.ok for r in results)
    assert s.by_status == {500: 10, 200: 5}
    assert c.backend.stats()["retries"] == 10


def test_400_fails_fast(tmp_path: Path) -> None:
    with serve(latency_s=0.01) as (url, stats):
        c = Client(url, tmp_path)
        results = c.call(rows(4) + rows(1, "[[400]]", tag="bad"))
        s = stats()
    assert all(r.ok for r in results[:4])
    bad = results[4]
    assert bad.error == "http_400"
    assert "HTTP 400" in bad.error_detail and "[[400]] marker" in bad.error_detail
    assert s.by_fault["bad_request"] == 1 and s.total == 5  # one request, no retry
    assert c.backend.stats()["retries"] == 0
    assert c.caller.stats.errors == {"http_400": 1}


def test_malformed_json_retried_then_reported(tmp_path: Path) -> None:
    with serve(latency_s=0.01) as (url, stats):
        c = Client(url, tmp_path, max_retries=2)
        flaky = c.call(rows(3, "[[malformed*1]]"))
        assert all(r.ok for r in flaky) and stats().by_fault == {"malformed": 3, "ok": 3}
        stats.reset()
        broken = c.call(rows(1, "[[malformed]]", tag="m") + rows(1, "[[nochoices]]", tag="n"))
        s = stats()
    for r in broken:
        assert r.error == "bad_response"
        assert "unparseable response" in r.error_detail and "gave up after 3 attempts" in r.error_detail
    assert s.total == 6  # 1 + max_retries attempts each


def test_timeouts_are_retried_then_reported(tmp_path: Path) -> None:
    with serve(latency_s=0.01, slow_s=5) as (url, stats):
        c = Client(url, tmp_path, timeout_s=0.3, max_retries=1)
        results = c.call(rows(1, "[[slow*1]]", tag="once") + rows(1, "[[slow]]", tag="always"))
        s = stats()
    once, always = results
    assert once.ok
    assert always.error == "timeout" and "gave up after 2 attempts" in always.error_detail
    assert s.total == 4
    assert c.backend.stats()["timeouts"] == 3


def test_dropped_connections_and_refused_port(tmp_path: Path) -> None:
    with serve(latency_s=0.01) as (url, stats):
        c = Client(url, tmp_path)
        assert all(r.ok for r in c.call(rows(3, "[[drop*1]]")))
        assert stats().by_fault == {"dropped": 3, "ok": 3}
    # The server is gone now: connection refused, retried, then reported.
    c = Client(url, tmp_path / "gone", max_retries=1)
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


def test_api_key_never_leaks(tmp_path: Path) -> None:
    with serve(latency_s=0.01) as (url, stats):
        c = Client(url, tmp_path, max_retries=1)
        results = c.call(
            rows(3) + rows(1, "[[401]]", tag="auth") + rows(1, "[[400]]", tag="bad")
            + rows(1, "[[500]]", tag="err") + rows(1, "[[malformed]]", tag="mal")
        )
        c.cache.close()
    assert [r.error for r in results] == [None, None, None, "http_401", "http_400", "server_error", "bad_response"]
    # The server echoed the bearer token in its 401 message; the detail must mask it.
    assert "Incorrect API key provided: ***" in results[3].error_detail
    for r in results:
        assert SECRET not in r.error_detail and SECRET not in r.to_json()
    blobs = b"".join(p.read_bytes() for p in tmp_path.glob("requests.sqlite*"))
    assert blobs and SECRET.encode() not in blobs


# ---------------------------------------------------------------------------------------------
# transports


def test_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert proxy_for("http://10.0.0.5:8000/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://alice:s%40cret@proxy.example.invalid:3128")
    p = proxy_for("https://api.openai.com/v1")
    assert p == Proxy("proxy.example.invalid", 3128, "Basic YWxpY2U6c0BjcmV0")  # base64("alice:s@cret")
    assert proxy_for("http://10.0.0.5:8000/v1") is None  # HTTPS_PROXY is for https targets only
    monkeypatch.setenv("ALL_PROXY", "proxy.example.invalid:8080")
    assert proxy_for("http://10.0.0.5:8000/v1") == Proxy("proxy.example.invalid", 8080)
    monkeypatch.setenv("NO_PROXY", "10.0.0.5,api.openai.com")
    assert proxy_for("http://10.0.0.5:8000/v1") is None and proxy_for("https://api.openai.com/v1") is None
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(BackendConfigError, match="only http:// proxies"):
        make_backend(ModelSpec(backend="openai", model="m", base_url="https://x.example.invalid/v1"))


def test_requests_go_through_an_http_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.servers.proxy_server import ProxyServer

    auth = "Basic dTpw"  # u:p
    with serve(latency_s=0.01) as (url, stats), ProxyServer(require_auth=auth) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://u:p@"))
        c = Client(url, tmp_path)
        results = c.call(rows(5))
        s = stats()
    assert all(r.ok for r in results) and s.status(200) == 5
    assert proxy.forwarded and all(t.startswith(url + "/chat/completions") for t in proxy.forwarded)
    assert set(proxy.auth_seen) == {auth} and not proxy.tunnels


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A throwaway self-signed certificate for 127.0.0.1 (made with the openssl command line)."""
    import shutil
    import subprocess

    openssl = shutil.which("openssl")
    assert openssl, "the https tests need the openssl command line tool"
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def test_https_direct_and_through_a_connect_tunnel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   certificate: tuple[str, str]) -> None:
    from tests.servers.proxy_server import ProxyServer

    with serve(latency_s=0.01, tls=certificate) as (url, stats):
        assert url.startswith("https://")
        # The certificate is not trusted yet: a TLS failure is a connection error, retried, reported.
        (r,) = Client(url, tmp_path / "untrusted", max_retries=0).call(rows(1, tag="untrusted"))
        assert r.error == "connection" and stats().total == 0
        monkeypatch.setenv("SSL_CERT_FILE", certificate[0])  # what the system store honours
        assert all(r.ok for r in Client(url, tmp_path / "direct").call(rows(3, tag="direct")))
        with ProxyServer() as proxy:
            monkeypatch.setenv("HTTPS_PROXY", proxy.url)
            assert all(r.ok for r in Client(url, tmp_path / "proxied").call(rows(3, tag="proxied")))
        s = stats()
    assert s.status(200) == 6 and s.duplicates == 0
    port = url.split(":")[2].split("/")[0]
    assert proxy.tunnels and set(proxy.tunnels) == {f"127.0.0.1:{port}"} and not proxy.forwarded


def test_failure_kinds_are_one_table() -> None:
    assert [failure_kind(s) for s in (200, 400, 401, 403, 404, 408, 409, 422, 429, 500, 503, 529)] == [
        None, "bad_request", "auth", "auth", "not_found", "timeout", "bad_request", "bad_request",
        "rate_limited", "server_error", "server_error", "server_error"]
    from cftdata.backends.http import TransportError

    assert failure_kind(exc=TransportError("reset")) == "connection"
    assert failure_kind(exc=asyncio.TimeoutError()) == "timeout"
    assert failure_kind(exc=json.JSONDecodeError("x", "", 0)) == "bad_response"
    assert failure_kind(exc=RuntimeError("a bug")) is None


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


# ---------------------------------------------------------------------------------------------
# through the pipeline: the pipe does not drain between shards


def test_build_keeps_requests_in_flight_across_shards(tmp_path: Path) -> None:
    import yaml

    from cftdata.pipeline import build
    from cftdata.recipe import load_recipe

    src = tmp_path / "source.jsonl"
    src.write_text("".join(json.dumps({"q": f"What is {i} + {i}?", "r": f"{2 * i}"}) + "\n" for i in range(90)))
    recipe = tmp_path / "recipe.yaml"
    with serve(latency_s=0.4, error_rate=0.05, seed=3) as (url, stats):
        recipe.write_text(yaml.safe_dump({
            "version": 1, "name": "online", "source": {"path": str(src), "question": "q", "response": "r"},
            "teacher": {"backend": "openai", "model": "fault-model", "base_url": url, "api_key_env": KEY_ENV,
                        "requests_per_minute": 6000, "params": {"max_tokens": 64}},
            "output": {"dir": str(tmp_path / "out")}, "run": {"shard_size": 10},
        }))
        result = build(load_recipe(recipe))
        s = stats()
        # 9 shards of 10 rows: requests of later shards were on the wire while earlier ones finished.
        assert s.max_in_flight > 10, s.max_in_flight
        assert result.rows == 90 and result.rejected == 0
        assert s.status(200) == 90 and s.duplicates == 0 and s.status(500) > 0
        usage = result.manifest["usage"]["critique"]
        assert usage["calls_made"] == 90 and usage["cache_hits"] == 0 and usage["output_tokens"] == 90 * 8
        stats.reset()
        again = build(load_recipe(recipe))  # everything from the cache: no request
        assert again.rows == 90 and stats().total == 0
        assert again.manifest["usage"]["critique"]["cache_hits"] == 90


def test_build_killed_mid_way_pays_nothing_twice(tmp_path: Path) -> None:
    """kill -9 while answers stream in from the background thread; the rerun asks only for the rest."""
    import signal
    import subprocess
    import sys

    import yaml

    src = tmp_path / "source.jsonl"
    src.write_text("".join(json.dumps({"q": f"What is {i} * {i}?", "r": f"{i * i}"}) + "\n" for i in range(120)))
    recipe = tmp_path / "recipe.yaml"
    env = {**os.environ, "CFTDATA_CACHE_DIR": str(tmp_path / "cache"), KEY_ENV: SECRET}
    with serve(process=True, latency_s=0.2) as (url, stats):
        recipe.write_text(yaml.safe_dump({
            "version": 1, "name": "killed", "source": {"path": str(src), "question": "q", "response": "r"},
            "teacher": {"backend": "openai", "model": "fault-model", "base_url": url, "api_key_env": KEY_ENV,
                        "requests_per_minute": 1200, "params": {"max_tokens": 64}},
            "output": {"dir": str(tmp_path / "out")}, "run": {"shard_size": 20},
        }))
        cmd = [sys.executable, "-m", "cftdata.cli", "build", str(recipe), "-q"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while stats().answered < 40 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = stats().answered
        assert 40 <= first < 120, first
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        s = stats()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["rows_out"] == 120
    # Every answer stored before the kill is reused; only those on the wire at the kill (the server had
    # answered, the client had not stored yet: at most the window, ~20 x 0.2 x 1.25 + 4) are asked again.
    usage = manifest["usage"]["critique"]
    assert usage["cache_hits"] + usage["calls_made"] == 120
    assert s.duplicates <= 20 and usage["cache_hits"] >= first - 20, (s.duplicates, first, usage)
    assert s.answered == 120 + s.duplicates
