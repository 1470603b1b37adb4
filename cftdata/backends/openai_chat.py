"""``openai``: Chat Completions on any OpenAI-compatible server (OpenAI, vLLM serve, SGLang, llama.cpp, ...).

The key comes from ``OPENAI_API_KEY`` (or the variable ``api_key_env`` names); it is required only
for api.openai.com. Failures are classified by status code and exception type, never by message:
429 -> rate limited (Retry-After honoured), 5xx / connection / timeout / unparseable body -> retried,
other 4xx -> that row fails fast with the status kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cftdata.backends.base import BACKENDS, Request, Result, api_key_from_env
from cftdata.backends.limits import parse_retry_after
from cftdata.backends.online import OnlineBackend, Retryable

#: Parameters the SDK takes as keywords; anything else goes in the body as is (top_k, min_p, ...).
_SDK_PARAMS = {
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop", "presence_penalty",
    "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "response_format", "reasoning_effort",
}


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    sdk = {k: v for k, v in params.items() if k in _SDK_PARAMS}
    body = {k: v for k, v in params.items() if k not in _SDK_PARAMS}
    return sdk, body


@BACKENDS.register("openai")
class OpenAIChatBackend(OnlineBackend):
    name = "openai"
    paid = True

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self._api_key = api_key_from_env(spec, "OPENAI_API_KEY", required=spec.base_url is None)
        self._client = None
        self._max_tokens_field = spec.options.get("max_tokens_field", "max_tokens")

    @property
    def cache_namespace(self) -> str:
        return f"openai:{(self.spec.base_url or 'https://api.openai.com/v1').rstrip('/')}"

    def _get_client(self):
        if self._client is None:
            import openai

            self._client = openai.AsyncOpenAI(
                api_key=self._api_key or "EMPTY",
                base_url=self.spec.base_url,
                max_retries=0,
                timeout=self.spec.timeout_s,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def send(self, request: Request) -> tuple[Result, Mapping[str, str] | None]:
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
            raise Retryable("server_error", _status_detail(e), parse_retry_after(dict(e.response.headers))) from None
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
        except Exception as e:  # the body was not a chat completion (malformed JSON, no choices)
            raise Retryable("server_error", f"unparseable response: {type(e).__name__}") from None
        usage = completion.usage
        return (
            Result(
                text=choice.message.content,
                finish_reason=choice.finish_reason,
                input_tokens=(usage.prompt_tokens or 0) if usage else 0,
                output_tokens=(usage.completion_tokens or 0) if usage else 0,
            ),
            headers,
        )


def _status_detail(e) -> str:
    """Status and the server's message, never the request (which could hold secrets in headers)."""
    body = getattr(e, "body", None)
    msg = body.get("message") if isinstance(body, dict) else None
    if msg is None and isinstance(body, dict) and isinstance(body.get("error"), dict):
        msg = body["error"].get("message")
    return f"HTTP {e.status_code}: {msg or type(e).__name__}"[:1000]
