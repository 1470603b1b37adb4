"""``anthropic``: the Anthropic Messages API (``POST /v1/messages``).

Sent through the one HTTP transport of the online backends
(:class:`~cftdata.backends.http.HTTPClient`: no SDK on this path, ~20 times less client CPU per
request). The key comes from ``ANTHROPIC_API_KEY`` (or the variable ``api_key_env`` names) and goes
in ``x-api-key`` with ``anthropic-version: 2023-06-01``; it is required only when ``base_url`` is
unset (api.anthropic.com). ``anthropic-ratelimit-*`` headers feed the rate limiter.

How a rendered :class:`~cftdata.backends.base.Request` becomes a Messages call
(:func:`message_params`, shared with the ``anthropic-batch`` backend):

* ``system`` messages go to the top-level ``system`` parameter (several are joined by a blank line);
* ``max_tokens`` is required by the API: the request's own, else ``options.default_max_tokens``,
  else 1024;
* ``stop`` becomes ``stop_sequences``; parameters the Messages API does not have (``seed``,
  ``presence_penalty``, ``frequency_penalty``, ``logit_bias``, ``logprobs``, ...) are dropped with
  one warning; anything else (``temperature``, ``top_p``, ``top_k``, ``thinking``...) is sent as is.

Answers (:func:`result_from_message`): the text blocks joined; ``stop_reason`` end_turn /
stop_sequence -> ``"stop"``, max_tokens / model_context_window_exceeded -> ``"length"``, refusal ->
``"content_filter"``, tool_use -> ``"tool_calls"``; usage input / output tokens.

Failures are classified like every online backend's (:func:`~cftdata.backends.online.failure_kind`):
429 -> rate limited (``retry-after`` honoured), 529 overloaded / other 5xx / connection / timeout /
408 -> retried, other 4xx -> that row fails fast as ``http_<status>``. Error details hold the status
and the server's message only, with the key masked should a server echo it.
"""

from __future__ import annotations

import logging
from typing import Any

from cftdata.backends.base import BACKENDS, Request, Result, api_key_from_env
from cftdata.backends.online import HTTPBackend

log = logging.getLogger("cftdata.backends.anthropic")

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 1024
ANTHROPIC_VERSION = "2023-06-01"

#: OpenAI-style sampling parameters the Messages API rejects; dropped (with one warning).
UNSUPPORTED_PARAMS = frozenset({
    "seed", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "n",
    "response_format", "reasoning_effort", "max_completion_tokens", "min_p", "repetition_penalty",
})

#: Messages API ``stop_reason`` -> the OpenAI-style ``finish_reason`` the rest of cftdata uses.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
    "tool_use": "tool_calls",
}

_warned: set[str] = set()


def anthropic_namespace(base_url: str | None) -> str:
    """Cache namespace shared by ``anthropic`` and ``anthropic-batch`` (their answers are interchangeable)."""
    return f"anthropic:{(base_url or DEFAULT_BASE_URL).rstrip('/')}"


def message_params(request: Request, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    """The full Messages API body for one request (what a batch item's ``params`` holds)."""
    system = [c for r, c in request.messages if r == "system"]
    messages = [{"role": r, "content": c} for r, c in request.messages if r != "system"]
    params = dict(request.param_dict)
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": int(params.pop("max_tokens", None) or default_max_tokens),
        "messages": messages,
    }
    if system:
        body["system"] = "\n\n".join(system)
    stop = params.pop("stop", None)
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    dropped = sorted(k for k in params if k in UNSUPPORTED_PARAMS)
    for k in dropped:
        params.pop(k)
        if k not in _warned:
            _warned.add(k)
            log.warning("The Anthropic Messages API has no parameter %r; it is not sent.", k)
    body.update(params)
    return body


def result_from_message(message: Any) -> Result:
    """A :class:`Result` from an SDK ``Message`` (or a plain dict in the same shape)."""
    get = message.get if isinstance(message, dict) else lambda k, d=None: getattr(message, k, d)
    parts = []
    for block in get("content") or []:
        btype = block.get("type") if isinstance(block, dict) else getattr(block, "type", None)
        if btype == "text":
            parts.append(block["text"] if isinstance(block, dict) else block.text)
    stop = get("stop_reason")
    usage = get("usage")
    uget = (usage.get if isinstance(usage, dict) else lambda k, d=None: getattr(usage, k, d)) if usage else None
    return Result(
        text="".join(parts),
        finish_reason=FINISH_REASONS.get(stop, stop),
        input_tokens=int((uget("input_tokens") or 0) if uget else 0),
        output_tokens=int((uget("output_tokens") or 0) if uget else 0),
    )


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` masked (servers may echo the key in messages)."""
    return text.replace(secret, "***") if secret and len(secret) >= 4 else text


def status_detail(e: Any, secret: str | None = None) -> str:
    """Status and the server's message, never the request (its headers hold the key); key masked."""
    body = getattr(e, "body", None)
    msg = None
    if isinstance(body, dict):
        err = body.get("error")
        msg = err.get("message") if isinstance(err, dict) else body.get("message")
    return redact(f"HTTP {e.status_code}: {msg or type(e).__name__}", secret)[:1000]


@BACKENDS.register("anthropic")
class AnthropicMessagesBackend(HTTPBackend):
    """Claude models over the Messages API, one HTTP request per row (see the module docstring)."""

    name = "anthropic"
    key_env_default = "ANTHROPIC_API_KEY"
    paid = True
    endpoint = "/v1/messages"
    models_path = "/v1/models"

    def __init__(self, spec) -> None:
        super().__init__(spec, spec.base_url or DEFAULT_BASE_URL)
        self._api_key = api_key_from_env(spec, "ANTHROPIC_API_KEY", required=spec.base_url is None)
        if self._api_key:
            self.secrets.append(self._api_key)
        self._default_max_tokens = int(spec.options.get("default_max_tokens", DEFAULT_MAX_TOKENS))

    @property
    def cache_namespace(self) -> str:
        return anthropic_namespace(self.spec.base_url)

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def body(self, request: Request) -> dict[str, Any]:
        return message_params(request, self._default_max_tokens)

    def parse(self, data: Any) -> Result:
        if not isinstance(data, dict) or data.get("type") != "message":
            raise TypeError("not a Messages API message")
        return result_from_message(data)
