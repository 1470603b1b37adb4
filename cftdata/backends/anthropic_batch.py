"""``anthropic-batch``: the Anthropic Message Batches API (half price, answers within 24 h).

Needs the ``anthropic`` extra. A batch is ``messages.batches.create(requests=[{"custom_id",
"params"}])`` where ``params`` is exactly the Messages API body the ``anthropic`` backend would send
(:func:`~cftdata.backends.anthropic_messages.message_params`: top-level ``system``, required
``max_tokens``...). ``messages.batches.retrieve`` is polled until ``processing_status`` is
``ended`` (in_progress / canceling / ended, with request counts processing / succeeded / errored /
canceled / expired), then ``messages.batches.results`` streams the JSONL results
(``{"custom_id", "result": {"type": succeeded | errored | canceled | expired, ...}}``).

Limits: 100,000 requests or 256 MB per batch (this backend keeps under 240 MB). Item outcomes:
succeeded -> the answer (stop_reason mapped as in the online backend); canceled / expired, and
errored with ``api_error`` / ``overloaded_error`` / ``rate_limit_error`` -> resubmitted in a new
batch (up to ``max_rounds``); other errors (``invalid_request_error``...) -> ``http_<status>`` at
once with the provider's message.

A kill between ``batches.create`` and the state write (milliseconds) is recovered by looking for a
batch of the same size created since (``batches.list``); a wrong guess costs nothing, because
custom_ids are request cache keys: lines that are not ours are ignored and ours, missing, are
resubmitted.

Shares the cache namespace of the ``anthropic`` backend (``anthropic:<base_url>``). The key comes
from ``ANTHROPIC_API_KEY`` (or ``api_key_env``), required only for api.anthropic.com. Options: see
:mod:`cftdata.backends.batch`, plus ``default_max_tokens`` (1024).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cftdata.backends.anthropic_messages import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_TOKENS,
    anthropic_namespace,
    message_params,
    result_from_message,
    status_detail,
)
from cftdata.backends.base import BACKENDS, Request, Result, api_key_from_env
from cftdata.backends.batch import (
    BatchBackend,
    BatchJob,
    Outcome,
    Polled,
    Retry,
    TransientError,
    translate_sdk_errors,
)
from cftdata.errors import BackendConfigError

#: Anthropic error types -> HTTP status (https://docs.anthropic.com/en/api/errors).
ERROR_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "timeout_error": 504, "overloaded_error": 529,
}
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def _translate(what: str, secret: str | None, gone_on_404: bool = False):
    """SDK exceptions -> the engine's (see :func:`~cftdata.backends.batch.translate_sdk_errors`)."""
    import anthropic

    return translate_sdk_errors(anthropic, what, lambda e: status_detail(e, secret), RETRY_STATUSES, 'Check ANTHROPIC_API_KEY (or the variable api_key_env names): batches belong to the workspace of the key that created them.', gone_on_404)


def outcome_from_result(result: dict[str, Any]) -> Outcome:
    """The ``result`` object of one results line -> a Result, or a Retry for resubmission."""
    kind = result.get("type")
    if kind == "succeeded":
        return result_from_message(result.get("message") or {})
    if kind == "expired":
        return Retry("batch_expired", "the batch's 24h window ended first")
    if kind == "canceled":
        return Retry("batch_canceled", "the batch was canceled")
    err = result.get("error") or {}
    inner = err.get("error") if isinstance(err.get("error"), dict) else err
    etype = inner.get("type") or "api_error"
    message = inner.get("message") or ""
    status = ERROR_STATUS.get(etype, 400)
    if status in RETRY_STATUSES:
        return Retry(f"http_{status}", f"{etype}: {message}")
    return Result(error=f"http_{status}", error_detail=f"HTTP {status} {etype}: {message}"[:2000])


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return obj.model_dump(mode="json")


@BACKENDS.register("anthropic-batch")
class AnthropicBatchBackend(BatchBackend):
    """Claude models through the Message Batches API (see the module docstring)."""

    name = "anthropic-batch"
    key_env_default = "ANTHROPIC_API_KEY"
    default_base_url = DEFAULT_BASE_URL
    max_requests_limit = 100_000
    max_bytes_limit = 240_000_000  # documented limit: 256 MB per batch

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self._api_key = api_key_from_env(spec, "ANTHROPIC_API_KEY", required=spec.base_url is None)
        self._default_max_tokens = int(spec.options.get("default_max_tokens", DEFAULT_MAX_TOKENS))
        self._client = None

    @property
    def cache_namespace(self) -> str:
        return anthropic_namespace(self.spec.base_url)

    def _list_batches(self) -> None:
        with _translate("listing message batches", self._api_key):
            self._get_client().with_options(max_retries=0).messages.batches.list(limit=1)

    def _get_client(self):
        if self._client is None:
            try:
                import anthropic
            except ImportError:  # pragma: no cover - depends on the environment
                raise BackendConfigError(
                    "The anthropic-batch backend needs the anthropic SDK: pip install -e '.[anthropic]'."
                ) from None
            self._client = anthropic.Anthropic(
                api_key=self._api_key or "EMPTY",
                base_url=(self.spec.base_url or DEFAULT_BASE_URL).rstrip("/"),
                max_retries=self.spec.max_retries,
                timeout=self.spec.timeout_s,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _encode(self, custom_id: str, request: Request) -> dict[str, Any]:
        return {"custom_id": custom_id, "params": message_params(request, self._default_max_tokens)}

    def _create(self, items: list[dict[str, Any]], prepared: dict[str, Any], job: BatchJob) -> str:
        client = self._get_client().with_options(max_retries=0)  # a blind retry could start it twice
        with _translate("creating a message batch", self._api_key):
            batch = client.messages.batches.create(requests=items)
        return batch.id

    def _find_orphan(self, pending: dict[str, Any], job: BatchJob) -> str | None:
        since = float(pending.get("started_at", 0)) - 300  # clock skew margin
        size = len(pending["custom_ids"])
        with _translate("listing message batches", self._api_key):
            page = self._get_client().messages.batches.list(limit=100)
            for b in page.data:  # newest first
                if b.created_at.timestamp() < since:
                    break
                rc = b.request_counts
                total = rc.processing + rc.succeeded + rc.errored + rc.canceled + rc.expired
                if total == size and b.id not in job.batches:
                    return b.id
        return None

    def _retrieve(self, batch_id: str) -> Polled:
        with _translate(f"polling message batch {batch_id}", self._api_key, gone_on_404=True):
            b = self._get_client().messages.batches.retrieve(batch_id)
        rc = b.request_counts
        counts = {"processing": rc.processing, "succeeded": rc.succeeded, "errored": rc.errored,
                  "canceled": rc.canceled, "expired": rc.expired}
        return Polled(status=b.processing_status, counts=counts, ended=b.processing_status == "ended", handle=b)

    def _collect(self, batch_id: str, polled: Polled) -> tuple[Iterator[tuple[str, Outcome]], Retry]:
        return self._lines(batch_id), Retry("missing", f"not in the results of message batch {batch_id}")

    def _lines(self, batch_id: str) -> Iterator[tuple[str, Outcome]]:
        import anthropic

        with _translate(f"downloading the results of message batch {batch_id}", self._api_key, gone_on_404=True):
            try:
                decoder = self._get_client().messages.batches.results(batch_id)
            except anthropic.APIStatusError:
                raise
            except anthropic.AnthropicError as e:  # no results_url yet: not ended after all
                raise TransientError(f"results of {batch_id} not available: {type(e).__name__}") from None
            try:
                for line in decoder:
                    d = _as_dict(line)
                    cid = d.get("custom_id")
                    if isinstance(cid, str):
                        yield cid, outcome_from_result(d.get("result") or {})
            finally:
                decoder.close()

