"""``openai``: Chat Completions on any OpenAI-compatible server (OpenAI, vLLM serve, SGLang, llama.cpp, ...).

The key comes from ``OPENAI_API_KEY`` (or the variable ``api_key_env`` names); it is required only
for api.openai.com. Failures are classified by status code and exception type, never by message:
429 -> rate limited (Retry-After honoured), 5xx / connection / timeout / unparseable body -> retried,
other 4xx -> that row fails fast with the status kept (``http_400``...). Error details hold the status
and the server's message, with the API key masked should a server echo it.

Two transports with the same request body and the same classification (``options.http_client``):

* ``lean``: :class:`~cftdata.backends.online.HTTPClient`, a keep-alive HTTP/1.1 client on asyncio
  streams that parses the JSON itself: ~0.2 ms of CPU per request, so one core drives thousands of
  requests a minute;
* ``sdk``: the ``openai`` SDK (``AsyncOpenAI``, one client per run): proxies, HTTP/2 and the SDK's
  own headers, at ~2-4 ms of CPU per request;
* ``auto`` (default): ``lean`` for plain ``http://`` servers (local vLLM, SGLang, llama.cpp) unless a proxy
  is configured for them (``HTTP_PROXY``, ``ALL_PROXY`` not bypassed by ``NO_PROXY``); ``sdk`` for ``https://``
  endpoints, api.openai.com included.

Other options: ``max_tokens_field`` (send ``max_tokens`` under another name, e.g.
``max_completion_tokens`` for OpenAI reasoning models).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cftdata.backends.base import BACKENDS, Request, Result, api_key_from_env
from cftdata.backends.limits import parse_retry_after
from cftdata.backends.online import HTTPClient, OnlineBackend, Retryable, TransportError
from cftdata.errors import BackendConfigError
from cftdata.recipe import ModelSpec

DEFAULT_BASE_URL = "https://api.openai.com/v1"

#: Parameters the SDK takes as keywords; anything else goes in the body as is (top_k, min_p, ...).
_SDK_PARAMS = {
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop", "presence_penalty",
    "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "response_format", "reasoning_effort",
}
_HTTP_CLIENTS = ("auto", "lean", "sdk")


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(SDK keyword arguments, extra body fields)."""
    sdk = {k: v for k, v in params.items() if k in _SDK_PARAMS}
    body = {k: v for k, v in params.items() if k not in _SDK_PARAMS}
    return sdk, body


def uses_proxy(url: str) -> bool:
    """Whether the environment routes ``url`` through a proxy (what httpx's ``trust_env`` would do)."""
    import urllib.request

    u = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(u.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(u.netloc.rpartition("@")[2], proxies)


def result_from_completion(data: Any) -> Result:
    """A Result from a Chat Completions JSON body; raises (KeyError, TypeError...) if it is not one."""
    choice = data["choices"][0]
    message = choice.get("message") or {}
    usage = data.get("usage") or {}
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise TypeError(f"message content is {type(content).__name__}, not a string")
    return Result(
        text=content,
        finish_reason=choice.get("finish_reason"),
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
    )


def error_message(status: int, body: bytes, fallback: str) -> str:
    """``HTTP <status>: <the server's message>`` from an OpenAI-style error body."""
    msg = None
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message")
        elif isinstance(err, str):
            msg = err
    return f"HTTP {status}: {msg or fallback}"[:1000]


@BACKENDS.register("openai")
class OpenAIChatBackend(OnlineBackend):
    """Chat Completions, one HTTP request per row (see the module docstring)."""

    name = "openai"
    paid = True

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._api_key = api_key_from_env(spec, "OPENAI_API_KEY", required=spec.base_url is None)
        if self._api_key:
            self.secrets.append(self._api_key)
        self._client: Any = None
        self._http: HTTPClient | None = None
        self._max_tokens_field = spec.options.get("max_tokens_field", "max_tokens")
        mode = spec.options.get("http_client", "auto")
        if mode not in _HTTP_CLIENTS:
            raise BackendConfigError(
                f"Backend 'openai' (model {spec.model!r}): options.http_client must be one of "
                f"{', '.join(_HTTP_CLIENTS)}, not {mode!r}."
            )
        self._base_url = (spec.base_url or DEFAULT_BASE_URL).rstrip("/")
        if mode == "auto":
            # The lean client for plain-http servers (local vLLM / SGLang / llama.cpp, where client CPU per
            # request matters at thousands of requests a minute); the official SDK for https endpoints
            # (OpenAI and hosted providers: TLS, HTTP/2, proxies) and whenever a proxy applies.
            lean = self._base_url.startswith("http://") and not uses_proxy(self._base_url)
            self.transport = "lean" if lean else "sdk"
        else:
            self.transport = mode

    @property
    def cache_namespace(self) -> str:
        return f"openai:{self._base_url}"

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "transport": self.transport}

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def send(self, request: Request) -> tuple[Result, Mapping[str, str] | None]:
        if self.transport == "lean":
            return await self._send_lean(request)
        return await self._send_sdk(request)

    # -- lean transport -------------------------------------------------------------------------

    def _get_http(self) -> HTTPClient:
        if self._http is None:
            headers = {}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            for env, name in (("OPENAI_ORG_ID", "OpenAI-Organization"), ("OPENAI_PROJECT_ID", "OpenAI-Project")):
                if os.environ.get(env) and self.spec.base_url is None:
                    headers[name] = os.environ[env]
            self._http = HTTPClient(self._base_url, headers, max_idle=max(64, self.spec.concurrency * 2))
        return self._http

    def body(self, request: Request) -> dict[str, Any]:
        """The JSON body of a request: model, messages and the sampling parameters as given."""
        params = request.param_dict
        if "max_tokens" in params and self._max_tokens_field != "max_tokens":
            params[self._max_tokens_field] = params.pop("max_tokens")
        return {"model": request.model, "messages": request.message_dicts, **params}

    async def _send_lean(self, request: Request) -> tuple[Result, Mapping[str, str] | None]:
        payload = json.dumps(self.body(request), ensure_ascii=False, separators=(",", ":")).encode()
        try:
            resp = await self._get_http().request("POST", "/chat/completions", payload)
        except TransportError as e:
            raise Retryable("connection", str(e)) from None
        status, headers = resp.status, resp.headers
        if status == 429:
            detail = error_message(status, resp.body, "RateLimitError")
            raise Retryable("rate_limited", detail, parse_retry_after(headers), headers)
        if status >= 500:
            detail = error_message(status, resp.body, "InternalServerError")
            raise Retryable("server_error", detail, parse_retry_after(headers), headers)
        if not 200 <= status < 300:
            return Result(error=f"http_{status}", error_detail=error_message(status, resp.body, resp.reason)), headers
        try:
            return result_from_completion(json.loads(resp.body)), headers
        except Exception as e:  # the body was not a chat completion (malformed JSON, no choices)
            raise Retryable("server_error", f"unparseable response: {type(e).__name__}", headers=headers) from None

    # -- SDK transport --------------------------------------------------------------------------

    def _get_client(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.AsyncOpenAI(
                api_key=self._api_key or "EMPTY",
                base_url=self.spec.base_url,
                max_retries=0,
                timeout=self.spec.timeout_s,
            )
        return self._client

    async def _send_sdk(self, request: Request) -> tuple[Result, Mapping[str, str] | None]:
        import openai

        client = self._get_client()
        sdk, body = split_params(request.param_dict)
        if "max_tokens" in sdk and self._max_tokens_field != "max_tokens":
            sdk[self._max_tokens_field] = sdk.pop("max_tokens")
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=request.model, messages=request.message_dicts, extra_body=body or None, **sdk
            )
        except openai.RateLimitError as e:
            headers = dict(e.response.headers)
            raise Retryable("rate_limited", _status_detail(e), parse_retry_after(headers), headers) from None
        except openai.InternalServerError as e:
            headers = dict(e.response.headers)
            raise Retryable("server_error", _status_detail(e), parse_retry_after(headers), headers) from None
        except openai.APITimeoutError:
            raise Retryable("timeout", "request timed out") from None
        except openai.APIConnectionError as e:
            raise Retryable("connection", type(e.__cause__ or e).__name__) from None
        except openai.APIStatusError as e:
            return Result(error=f"http_{e.status_code}", error_detail=_status_detail(e)), dict(e.response.headers)
        headers = dict(raw.headers)
        try:
            completion = raw.parse()
            choice = completion.choices[0]
            content = choice.message.content
        except Exception as e:  # the body was not a chat completion (malformed JSON, no choices)
            raise Retryable("server_error", f"unparseable response: {type(e).__name__}", headers=headers) from None
        usage = completion.usage
        return (
            Result(
                text=content,
                finish_reason=choice.finish_reason,
                input_tokens=(usage.prompt_tokens or 0) if usage else 0,
                output_tokens=(usage.completion_tokens or 0) if usage else 0,
            ),
            headers,
        )


def _status_detail(e: Any) -> str:
    """Status and the server's message, never the request (which could hold secrets in headers)."""
    body = getattr(e, "body", None)
    msg = body.get("message") if isinstance(body, dict) else None
    if msg is None and isinstance(body, dict) and isinstance(body.get("error"), dict):
        msg = body["error"].get("message")
    return f"HTTP {e.status_code}: {msg or type(e).__name__}"[:1000]
