"""``openai-batch``: the OpenAI Batch API (half price, answers within 24 h), through the ``openai`` SDK.

The paper's MetaMath / NuminaMath / GPT-4o-mini critiques were made this way. Each batch is a JSONL
file of ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`` lines uploaded
with ``files.create(purpose="batch")`` and started with ``batches.create(completion_window="24h")``;
``batches.retrieve`` is polled through validating -> in_progress -> finalizing -> completed (or
failed / expired / cancelled), then the ``output_file_id`` and ``error_file_id`` files are
downloaded (``files.content``, streamed) and matched back by custom_id.

Limits: one model per batch, at most 50,000 requests and 200 MB per input file (this backend keeps
under 190 MB). Item outcomes: a 200 response -> the answer; ``batch_expired`` / ``batch_cancelled``
/ HTTP 408, 409, 429, 5xx -> resubmitted in a new batch (up to ``max_rounds``); other HTTP statuses
-> ``http_<status>`` at once. A whole batch that ``failed`` validation is resubmitted like an
expired one, then reported as ``batch_failed`` with the provider's messages.

The uploaded file id is persisted before ``batches.create`` (called without SDK retries), so a kill
or a lost answer in between is recovered by finding the batch that uses that file
(``batches.list``) instead of creating a second one.

Shares the cache namespace of the ``openai`` backend (``openai:<base_url>``): online and batch
answers to the same request are interchangeable. The key comes from ``OPENAI_API_KEY`` (or
``api_key_env``), required only for api.openai.com. Options: see :mod:`cftdata.backends.batch`,
plus ``max_tokens_field`` (``max_completion_tokens`` for reasoning models).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from cftdata.backends.anthropic_messages import status_detail
from cftdata.backends.base import BACKENDS, Request, Result, api_key_from_env
from cftdata.backends.batch import (
    BatchBackend,
    BatchJob,
    Outcome,
    Polled,
    Retry,
    translate_sdk_errors,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
ENDPOINT = "/v1/chat/completions"
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
#: HTTP statuses of single items that a new batch may well answer.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
#: Per-item error codes (``error.code`` in the error file) that mean "not attempted in time".
RETRY_CODES = {"batch_expired": "batch_expired", "batch_cancelled": "batch_canceled"}


def _translate(what: str, secret: str | None, gone_on_404: bool = False):
    """SDK exceptions -> the engine's (see :func:`~cftdata.backends.batch.translate_sdk_errors`)."""
    import openai

    return translate_sdk_errors(openai, what, lambda e: status_detail(e, secret), RETRY_STATUSES, 'Check OPENAI_API_KEY (or the variable api_key_env names): batches belong to the project of the key that created them.', gone_on_404)


def outcome_from_line(line: dict[str, Any]) -> Outcome:
    """One line of an output or error file -> a Result, or a Retry for resubmission."""
    err = line.get("error")
    resp = line.get("response") or {}
    if err:
        code = (err.get("code") if isinstance(err, dict) else None) or "batch_error"
        message = (err.get("message") if isinstance(err, dict) else str(err)) or ""
        if code in RETRY_CODES:
            return Retry(RETRY_CODES[code], message)
        if code in ("server_error", "rate_limit_exceeded", "timeout"):
            return Retry(code, message)
        return Result(error=code, error_detail=message[:2000])
    status = resp.get("status_code")
    body = resp.get("body") or {}
    if status == 200:
        try:
            choice = body["choices"][0]
            usage = body.get("usage") or {}
            return Result(
                text=choice["message"].get("content"),
                finish_reason=choice.get("finish_reason"),
                input_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
            )
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            return Retry("server_error", "a 200 answer that is not a chat completion")
    berr = body.get("error") if isinstance(body, dict) else None
    message = (berr.get("message") if isinstance(berr, dict) else None) or ""
    if status in RETRY_STATUSES or status is None:
        return Retry(f"http_{status}" if status else "server_error", message)
    return Result(error=f"http_{status}", error_detail=f"HTTP {status}: {message}"[:2000])


@BACKENDS.register("openai-batch")
class OpenAIBatchBackend(BatchBackend):
    """Chat Completions through the OpenAI Batch API (see the module docstring)."""

    name = "openai-batch"
    key_env_default = "OPENAI_API_KEY"
    default_base_url = DEFAULT_BASE_URL
    max_requests_limit = 50_000
    max_bytes_limit = 190_000_000  # documented limit: 200 MB per input file

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self._api_key = api_key_from_env(spec, "OPENAI_API_KEY", required=spec.base_url is None)
        self._max_tokens_field = spec.options.get("max_tokens_field", "max_tokens")
        self._client = None

    @property
    def cache_namespace(self) -> str:
        return f"openai:{(self.spec.base_url or DEFAULT_BASE_URL).rstrip('/')}"

    def _list_batches(self) -> None:
        with _translate("listing batches", self._api_key):
            self._get_client().with_options(max_retries=0).batches.list(limit=1)

    def _get_client(self):
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                api_key=self._api_key or "EMPTY",
                base_url=self.spec.base_url,
                max_retries=self.spec.max_retries,
                timeout=self.spec.timeout_s,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _group(self, request: Request) -> str:
        return request.model  # one model per batch file

    def _encode(self, custom_id: str, request: Request) -> dict[str, Any]:
        params = request.param_dict
        if "max_tokens" in params and self._max_tokens_field != "max_tokens":
            params[self._max_tokens_field] = params.pop("max_tokens")
        body = {"model": request.model, "messages": request.message_dicts, **params}
        return {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}

    def _prepare(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        data = "".join(json.dumps(it, ensure_ascii=False, separators=(",", ":")) + "\n" for it in items).encode()
        with _translate("uploading a batch input file", self._api_key):
            f = self._get_client().files.create(file=("cftdata-batch.jsonl", data, "application/jsonl"),
                                                purpose="batch")
        return {"input_file_id": f.id}

    def _create(self, items: list[dict[str, Any]], prepared: dict[str, Any], job: BatchJob) -> str:
        client = self._get_client().with_options(max_retries=0)  # a blind retry could start it twice
        with _translate("creating a batch", self._api_key):
            batch = client.batches.create(
                input_file_id=prepared["input_file_id"], endpoint=ENDPOINT, completion_window="24h",
                metadata={"cftdata_job": job.data["set_hash"][:32]},
            )
        return batch.id

    def _find_orphan(self, pending: dict[str, Any], job: BatchJob) -> str | None:
        file_id = pending.get("input_file_id")
        if not file_id:
            return None
        with _translate("listing batches", self._api_key):
            page = self._get_client().batches.list(limit=100)
            for _ in range(5):
                for b in page.data:
                    if b.input_file_id == file_id and b.id not in job.batches:
                        return b.id
                if not page.has_next_page():
                    break
                page = page.get_next_page()
        return None

    def _retrieve(self, batch_id: str) -> Polled:
        with _translate(f"polling batch {batch_id}", self._api_key, gone_on_404=True):
            b = self._get_client().batches.retrieve(batch_id)
        rc = b.request_counts
        counts = {"total": rc.total, "completed": rc.completed, "failed": rc.failed} if rc else {}
        return Polled(status=b.status, counts=counts, ended=b.status in ENDED, handle=b)

    def _collect(self, batch_id: str, polled: Polled) -> tuple[Iterator[tuple[str, Outcome]], Retry]:
        b = polled.handle
        if b.status == "failed":
            errs = (b.errors.data if b.errors and b.errors.data else None) or []
            detail = "; ".join(f"{e.code}: {e.message}" for e in errs)[:1000]
            default = Retry("batch_failed", detail or "the batch failed validation")
        elif b.status == "expired":
            default = Retry("batch_expired", "the 24h completion window ended first")
        elif b.status == "cancelled":
            default = Retry("batch_canceled", "the batch was cancelled")
        else:
            default = Retry("missing", f"not in the output or error file of batch {batch_id}")
        files = [fid for fid in (b.output_file_id, b.error_file_id) if fid]
        return self._lines(files), default

    def _lines(self, file_ids: list[str]) -> Iterator[tuple[str, Outcome]]:
        client = self._get_client()
        for fid in file_ids:
            with (_translate(f"downloading file {fid}", self._api_key),
                  client.files.with_streaming_response.content(fid) as resp):
                for raw in resp.iter_lines():
                    if not raw.strip():
                        continue
                    try:
                        line = json.loads(raw)
                    except ValueError:
                        continue
                    cid = line.get("custom_id")
                    if isinstance(cid, str):
                        yield cid, outcome_from_line(line)
