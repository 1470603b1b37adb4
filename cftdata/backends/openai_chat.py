"""``openai``: Chat Completions on any OpenAI-compatible server (OpenAI, vLLM serve, SGLang, llama.cpp, ...).

The key comes from ``OPENAI_API_KEY`` (or the variable ``api_key_env`` names); it is required only
for api.openai.com, where ``OPENAI_ORG_ID`` / ``OPENAI_PROJECT_ID`` are sent too. Requests go
through the one HTTP transport of the online backends, :class:`~cftdata.backends.http.HTTPClient`
(https, proxies from the environment, keep-alive; chosen by measurement over the ``openai`` SDK and
``httpx``: see ``benchmarks/transports.py``). Failures are classified by
:func:`~cftdata.backends.online.failure_kind`: 429 -> rate limited (Retry-After honoured), 5xx /
connection / timeout / unparseable body -> retried, other 4xx -> that row fails fast with the status
kept (``http_400``...). Error details hold the status and the server's message, with the API key
masked should a server echo it.

Options: ``max_tokens_field`` (send ``max_tokens`` under another name, e.g.
``max_completion_tokens`` for OpenAI reasoning models).
"""

from __future__ import annotations

import os
from typing import Any

from cftdata.backends.base import BACKENDS, Request, Result, api_key_from_env
from cftdata.backends.online import HTTPBackend
from cftdata.recipe import ModelSpec

DEFAULT_BASE_URL = "https://api.openai.com/v1"


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


@BACKENDS.register("openai")
class OpenAIChatBackend(HTTPBackend):
    """Chat Completions, one HTTP request per row (see the module docstring)."""

    name = "openai"
    key_env_default = "OPENAI_API_KEY"
    paid = True
    endpoint = "/chat/completions"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec, spec.base_url or DEFAULT_BASE_URL)
        self._api_key = api_key_from_env(spec, "OPENAI_API_KEY", required=spec.base_url is None)
        if self._api_key:
            self.secrets.append(self._api_key)
        self._max_tokens_field = spec.options.get("max_tokens_field", "max_tokens")

    @property
    def cache_namespace(self) -> str:
        return f"openai:{self._base_url}"

    def headers(self) -> dict[str, str]:
        headers = {}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        for env, name in (("OPENAI_ORG_ID", "OpenAI-Organization"), ("OPENAI_PROJECT_ID", "OpenAI-Project")):
            if os.environ.get(env) and self.spec.base_url is None:
                headers[name] = os.environ[env]
        return headers

    def body(self, request: Request) -> dict[str, Any]:
        """The JSON body of a request: model, messages and the sampling parameters as given."""
        params = request.param_dict
        if "max_tokens" in params and self._max_tokens_field != "max_tokens":
            params[self._max_tokens_field] = params.pop("max_tokens")
        return {"model": request.model, "messages": request.message_dicts, **params}

    def parse(self, data: Any) -> Result:
        return result_from_completion(data)
