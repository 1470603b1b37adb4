"""The ``anthropic`` online backend (Messages API).

The real Anthropic API cannot be reached from tests, so the backend is tested against the documented
wire format (``POST /v1/messages``, its error bodies and headers) served by the local server
:mod:`tests.servers.batch_server`: success, 429 (retry-after), 529 overloaded, 400 and 401.
"""

from __future__ import annotations

import asyncio

import pytest

from cftdata.backends.anthropic_messages import (
    AnthropicMessagesBackend,
    anthropic_namespace,
    message_params,
    result_from_message,
)
from cftdata.backends.base import Request, Result
from cftdata.backends.online import Retryable
from cftdata.errors import BackendConfigError
from cftdata.recipe import ModelSpec
from tests.servers.batch_server import BatchServer

SECRET = "sk-ant-test-SECRET-0123456789"


@pytest.fixture(scope="module")
def server():
    with BatchServer(api_key=SECRET) as srv:
        yield srv


@pytest.fixture
def backend(server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    spec = ModelSpec(backend="anthropic", model="claude-test", base_url=server.anthropic_url, concurrency=4,
                     max_retries=3)
    return AnthropicMessagesBackend(spec)


def req(text: str, system: str | None = "You are a science expert.", **params) -> Request:
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return Request.make("claude-test", msgs, params)


def run(backend, requests) -> dict[int, list[Result]]:
    out: dict[int, list[Result]] = {}
    backend.generate(requests, lambda i, r: out.setdefault(i, []).append(r))
    return out


def send_once(backend, request: Request):
    """One raw attempt (``send``), its client closed on the same event loop."""

    async def go():
        try:
            return await backend.send(request)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_message_params_maps_the_openai_shape():
    r = req("Question: 1+1", temperature=0.3, top_p=0.95, stop=["[END]"], seed=7, presence_penalty=0.1)
    p = message_params(r)
    assert p["system"] == "You are a science expert."
    assert p["messages"] == [{"role": "user", "content": "Question: 1+1"}]
    assert p["max_tokens"] == 1024  # required by the API: defaulted
    assert p["stop_sequences"] == ["[END]"]
    assert p["temperature"] == 0.3 and p["top_p"] == 0.95
    assert "seed" not in p and "presence_penalty" not in p and "stop" not in p
    assert message_params(req("x", max_tokens=3200))["max_tokens"] == 3200
    assert "system" not in message_params(req("x", system=None))


def test_result_from_message_maps_stop_reasons():
    for stop, finish in [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
                         ("refusal", "content_filter")]:
        r = result_from_message({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                                 "stop_reason": stop, "usage": {"input_tokens": 5, "output_tokens": 2}})
        assert (r.text, r.finish_reason, r.input_tokens, r.output_tokens) == ("ab", finish, 5, 2)


def test_success_sends_the_documented_body(server, backend):
    n0 = len(server.received_messages)
    out = run(backend, [req("Question: 2+2", temperature=0.3, stop=["[END]"]), req("abcdefghij" * 5, max_tokens=3)])
    assert out[0][0].ok and out[0][0].text == "echo: Question: 2+2" and out[0][0].finish_reason == "stop"
    assert out[1][0].finish_reason == "length" and len(out[1][0].text) == 12
    assert out[0][0].input_tokens > 0 and out[0][0].output_tokens > 0
    bodies = server.received_messages[n0:]
    assert len(bodies) == 2
    first = next(b for b in bodies if b["messages"][0]["content"] == "Question: 2+2")
    assert first["system"] == "You are a science expert." and first["max_tokens"] == 1024
    assert first["stop_sequences"] == ["[END]"] and first["temperature"] == 0.3
    assert all(m["role"] != "system" for b in bodies for m in b["messages"])
    headers = server.headers_seen[-1]
    assert SECRET in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
    assert headers.get("anthropic-version")
    assert backend.stats()["server_rpm_limit"] == 1000.0  # anthropic-ratelimit-* headers reach the limiter


def test_429_is_retried_with_retry_after(server, backend):
    server.retry_after = "2"
    try:
        with pytest.raises(Retryable) as e:
            send_once(backend, req("rate limited once [[429*1]] a"))
    finally:
        server.retry_after = "0"
    assert e.value.kind == "rate_limited" and e.value.retry_after == 2.0
    out = run(backend, [req("rate limited once [[429*1]] b")])
    assert out[0][0].ok and out[0][0].text.startswith("echo: rate limited once")
    assert backend.stats()["rate_limited"] == 1 and backend.stats()["retries"] == 1


def test_529_overloaded_is_retried(server, backend):
    with pytest.raises(Retryable) as e:
        send_once(backend, req("overloaded [[529*1]] a"))
    assert e.value.kind == "server_error"
    out = run(backend, [req("overloaded [[529*1]] b"), req("server error [[500*1]]")])
    assert all(r[0].ok for r in out.values())
    s = backend.stats()
    assert s["server_errors"] == 2 and s["retries"] == 2 and s["failed"] == 0, s


def test_400_fails_fast(server, backend):
    n0 = server.counts["messages_requests"]
    out = run(backend, [req("bad [[400]]")])
    r = out[0][0]
    assert r.error == "http_400" and "text content blocks" in r.error_detail
    assert server.counts["messages_requests"] - n0 == 1  # not retried
    assert backend.stats()["retries"] == 0


def test_401_error_never_shows_the_key(server, backend):
    out = run(backend, [req("who am I [[401]]")])
    r = out[0][0]
    assert r.error == "http_401"
    assert SECRET not in r.error_detail and SECRET not in r.to_json() and "***" in r.error_detail


def test_key_required_without_base_url(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(BackendConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicMessagesBackend(ModelSpec(backend="anthropic", model="claude-test"))
    monkeypatch.setenv("MY_CLAUDE_KEY", SECRET)
    b = AnthropicMessagesBackend(ModelSpec(backend="anthropic", model="claude-test", api_key_env="MY_CLAUDE_KEY"))
    assert b.cache_namespace == "anthropic:https://api.anthropic.com"


def test_namespace():
    assert anthropic_namespace(None) == "anthropic:https://api.anthropic.com"
    assert anthropic_namespace("http://127.0.0.1:9/") == "anthropic:http://127.0.0.1:9"
