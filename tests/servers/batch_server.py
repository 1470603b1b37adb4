"""A loopback fake of the OpenAI Files + Batch APIs and the Anthropic Messages + Message Batches APIs.

The real services cannot be reached from tests, so this server implements their documented wire
formats (starlette app, uvicorn in a background thread, ephemeral port on 127.0.0.1)::

    with BatchServer() as srv:
        srv.openai_url      # "http://127.0.0.1:<port>/v1"  (OpenAI SDK base_url)
        srv.anthropic_url   # "http://127.0.0.1:<port>"     (Anthropic SDK base_url)
        srv.counts          # Counter: openai_batches_created, anthropic_batches_created, items_submitted,
                            # duplicate_items, files_uploaded, polls, messages_requests, by_status_<n> ...

OpenAI: ``POST /v1/files`` (multipart upload, purpose ``batch``), ``GET /v1/files/{id}`` and
``/v1/files/{id}/content``; ``POST /v1/batches`` (input file of ``{"custom_id", "method": "POST",
"url": "/v1/chat/completions", "body"}`` lines, one model per file, ``completion_window`` "24h"),
``GET /v1/batches/{id}`` and ``GET /v1/batches`` (newest first, ``after``/``limit``). Each retrieve
advances the batch one step along ``openai_steps`` (validating -> in_progress -> finalizing, with
growing ``request_counts``), then it ends ``completed`` (or ``expired`` / ``cancelled`` / ``failed``)
with an output file (``{"id", "custom_id", "response": {"status_code": 200, "request_id", "body"},
"error": null}`` lines) and an error file (non-200 responses, ``batch_expired`` / ``batch_cancelled``
error codes).

Anthropic (the key in ``x-api-key`` or, as newer SDKs send it, ``Authorization: Bearer``; an
``anthropic-version`` header required): ``POST /v1/messages``; ``POST /v1/messages/batches`` (``requests`` of ``{"custom_id",
"params"}``, custom_id ``^[a-zA-Z0-9_-]{1,64}$``, unique), ``GET /v1/messages/batches/{id}``
(``processing_status`` in_progress -> ended, ``request_counts``, ``results_url``),
``GET /v1/messages/batches`` and ``GET .../{id}/results`` (JSONL of ``{"custom_id", "result":
{"type": "succeeded" | "errored" | "canceled" | "expired", ...}}``).

Faults are forced by markers in any message (or the system prompt) of a request; ``*N`` limits one
to the first N submissions (or online attempts) of that exact body:

==================  =============================================================================
``[[expire]]``      batch item expires (OpenAI: the whole batch ends ``expired``, the others
                    answered); ``[[cancel]]`` likewise with cancellation
``[[500]]``         item answered 500 / ``api_error`` (retryable); online: HTTP 500
``[[400]]``         item answered 400 / ``invalid_request_error`` (permanent); online: HTTP 400
``[[batchfail]]``   the OpenAI batch holding it fails validation (``status: failed``)
``[[429]]``         online Messages: 429 ``rate_limit_error`` with ``retry-after: 0``
``[[529]]``         online Messages: 529 ``overloaded_error``
``[[401]]``         online Messages: 401 whose message echoes the API key (leak checks)
==================  =============================================================================

Answers are deterministic: ``"echo: <last user message>"`` (cut at ``max_tokens`` x 4 characters or
at a stop sequence). ``duplicate_items`` counts batch items whose exact body was submitted again
while an earlier submission of it was still pending or had succeeded: the client paid twice.
``hold = True`` keeps every batch in progress (to kill a client mid-poll deterministically).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import re
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HOST = "127.0.0.1"
_MARKER = re.compile(r"\[\[(\w+)(?:\*(\d+))?\]\]")
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def body_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _texts(body: dict[str, Any]) -> list[str]:
    out = []
    system = body.get("system")
    if isinstance(system, str):
        out.append(system)
    for m in body.get("messages") or []:
        c = m.get("content")
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, list):
            out.extend(b.get("text", "") for b in c if isinstance(b, dict))
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


class BatchServer:
    """See the module docstring. Attributes may be changed while it runs (under :attr:`lock`)."""

    def __init__(self, api_key: str | None = None, openai_steps: tuple[str, ...] = (
            "validating", "in_progress", "in_progress", "finalizing"),
                 anthropic_steps: int = 2) -> None:
        self.api_key = api_key
        self.openai_steps = openai_steps
        self.anthropic_steps = anthropic_steps
        self.hold = False
        #: ``retry-after`` header value of injected 429s (seconds).
        self.retry_after = "0"
        #: The next N batch retrieves (either API) answer 500.
        self.fail_next_polls = 0
        #: Bodies received by ``POST /v1/messages``, in order.
        self.received_messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        #: ("create", batch id) and ("download", file or batch id), in the order they happened.
        self.events: list[tuple[str, str]] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.openai_batches: dict[str, dict[str, Any]] = {}
        self.anthropic_batches: dict[str, dict[str, Any]] = {}
        self.attempts: Counter[str] = Counter()  # body hash -> submissions / online attempts
        self.body_state: dict[str, str] = {}  # body hash -> pending / succeeded / retryable / failed
        self.headers_seen: list[dict[str, str]] = []
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.app = Starlette(routes=[
            Route("/v1/files", self.upload_file, methods=["POST"]),
            Route("/v1/files/{file_id}", self.get_file, methods=["GET"]),
            Route("/v1/files/{file_id}/content", self.file_content, methods=["GET"]),
            Route("/v1/batches", self.create_openai_batch, methods=["POST"]),
            Route("/v1/batches", self.list_openai_batches, methods=["GET"]),
            Route("/v1/batches/{batch_id}", self.retrieve_openai_batch, methods=["GET"]),
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/messages/batches", self.create_anthropic_batch, methods=["POST"]),
            Route("/v1/messages/batches", self.list_anthropic_batches, methods=["GET"]),
            Route("/v1/messages/batches/{batch_id}", self.retrieve_anthropic_batch, methods=["GET"]),
            Route("/v1/messages/batches/{batch_id}/results", self.anthropic_results, methods=["GET"]),
        ])

    # -- lifetime ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_url(self) -> str:
        return self.url

    def start(self) -> BatchServer:
        config = uvicorn.Config(self.app, host=HOST, port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="batch-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the batch test server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> BatchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers -----------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def _marker(self, body: dict[str, Any], name: str, attempt: int) -> bool:
        """Whether marker ``name`` applies to this attempt (1-based) of this body."""
        for text in _texts(body):
            for m in _MARKER.finditer(text):
                if m.group(1) == name and (m.group(2) is None or attempt <= int(m.group(2))):
                    return True
        return False

    def _submit_item(self, body: dict[str, Any]) -> tuple[str, int]:
        """Count one batch item; return its body hash and attempt number."""
        h = body_hash(body)
        self.counts["items_submitted"] += 1
        if self.body_state.get(h) in ("pending", "succeeded"):
            self.counts["duplicate_items"] += 1
        self.body_state[h] = "pending"
        self.attempts[h] += 1
        return h, self.attempts[h]

    def _check_openai_auth(self, request: Request) -> Response | None:
        self.headers_seen.append(dict(request.headers))
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                           "code": "invalid_api_key"}}, status_code=401)
        return None

    def _check_anthropic_auth(self, request: Request) -> Response | None:
        self.headers_seen.append(dict(request.headers))
        if self.api_key is not None and self.anthropic_key(request) != self.api_key:
            return self._anthropic_error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self._anthropic_error(400, "invalid_request_error", "anthropic-version header is required")
        return None

    @staticmethod
    def anthropic_key(request: Request) -> str | None:
        """The key from ``x-api-key`` (the documented header) or ``Authorization: Bearer`` (newer SDKs)."""
        key = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if key is None and auth.startswith("Bearer "):
            key = auth[len("Bearer "):]
        return key

    @staticmethod
    def _anthropic_error(status: int, etype: str, message: str, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse({"type": "error", "error": {"type": etype, "message": message}},
                            status_code=status, headers=headers)

    @staticmethod
    def answer_text(body: dict[str, Any]) -> str:
        user = [m for m in body.get("messages") or [] if m.get("role") == "user"]
        content = user[-1].get("content") if user else ""
        if isinstance(content, list):
            content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
        return f"echo: {content}"

    # -- OpenAI Files ------------------------------------------------------------------------

    async def upload_file(self, request: Request) -> Response:
        if (denied := self._check_openai_auth(request)) is not None:
            return denied
        raw = await request.body()
        ctype = request.headers.get("content-type", "")
        msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
        fields: dict[str, Any] = {}
        filename = "upload"
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                filename = part.get_filename()
            fields[name] = part.get_payload(decode=True)
        if "file" not in fields or fields.get("purpose") != b"batch":
            return JSONResponse({"error": {"message": "file and purpose=batch are required",
                                           "type": "invalid_request_error"}}, status_code=400)
        with self.lock:
            fid = self._id("file-")
            self.files[fid] = {"data": fields["file"], "filename": filename, "purpose": "batch",
                               "created_at": int(time.time())}
            self.counts["files_uploaded"] += 1
        return JSONResponse(self._file_object(fid))

    def _file_object(self, fid: str) -> dict[str, Any]:
        f = self.files[fid]
        return {"id": fid, "object": "file", "bytes": len(f["data"]), "created_at": f["created_at"],
                "filename": f["filename"], "purpose": f["purpose"], "status": "processed"}

    async def get_file(self, request: Request) -> Response:
        if (denied := self._check_openai_auth(request)) is not None:
            return denied
        fid = request.path_params["file_id"]
        if fid not in self.files:
            return JSONResponse({"error": {"message": f"No such File object: {fid}"}}, status_code=404)
        return JSONResponse(self._file_object(fid))

    async def file_content(self, request: Request) -> Response:
        if (denied := self._check_openai_auth(request)) is not None:
            return denied
        fid = request.path_params["file_id"]
        if fid not in self.files:
            return JSONResponse({"error": {"message": f"No such File object: {fid}"}}, status_code=404)
        self.counts["files_downloaded"] += 1
        self.events.append(("download", fid))
        return Response(self.files[fid]["data"], media_type="application/octet-stream")

    # -- OpenAI Batches ----------------------------------------------------------------------

    async def create_openai_batch(self, request: Request) -> Response:
        if (denied := self._check_openai_auth(request)) is not None:
            return denied
        p = await request.json()
        fid = p.get("input_file_id")
        if p.get("completion_window") != "24h" or p.get("endpoint") != "/v1/chat/completions":
            return JSONResponse({"error": {"message": "bad completion_window or endpoint",
                                           "type": "invalid_request_error"}}, status_code=400)
        if fid not in self.files:
            return JSONResponse({"error": {"message": f"No such File object: {fid}"}}, status_code=404)
        with self.lock:
            lines = [json.loads(x) for x in self.files[fid]["data"].decode().splitlines() if x.strip()]
            errors = []
            ids = [ln.get("custom_id") for ln in lines]
            if len(set(ids)) != len(ids):
                errors.append({"code": "duplicate_custom_id", "message": "custom_id must be unique", "line": None})
            if len({ln.get("body", {}).get("model") for ln in lines}) > 1:
                errors.append({"code": "mismatched_model", "message": "one model per batch", "line": None})
            for n, ln in enumerate(lines, 1):
                if ln.get("method") != "POST" or ln.get("url") != "/v1/chat/completions" or "body" not in ln:
                    errors.append({"code": "invalid_request", "message": "bad line", "line": n})
            if len(lines) > 50_000:
                errors.append({"code": "too_many_requests", "message": "over 50,000 requests", "line": None})
            bid = self._id("batch_")
            now = int(time.time())
            items = []
            fail = False
            for ln in lines:
                h, attempt = self._submit_item(ln.get("body") or {})
                items.append((ln, h, attempt))
                fail = fail or self._marker(ln.get("body") or {}, "batchfail", attempt)
            if fail:
                errors.append({"code": "token_limit_exceeded", "message": "Enqueued token limit reached.",
                               "line": None})
            self.openai_batches[bid] = {
                "id": bid, "object": "batch", "endpoint": p["endpoint"], "errors": None, "input_file_id": fid,
                "completion_window": "24h", "status": "validating", "output_file_id": None,
                "error_file_id": None, "created_at": now, "expires_at": now + 86400,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "metadata": p.get("metadata"), "_items": items, "_polls": 0, "_errors": errors,
            }
            self.counts["openai_batches_created"] += 1
            self.events.append(("create", bid))
            return JSONResponse(self._public(self.openai_batches[bid]))

    @staticmethod
    def _public(b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if not k.startswith("_")}

    def _advance_openai(self, b: dict[str, Any]) -> None:
        if b["status"] in ("completed", "failed", "expired", "cancelled") or self.hold:
            return
        b["_polls"] += 1
        step = b["_polls"] - 1  # the first retrieve still shows steps[0]
        n = len(b["_items"])
        if b["_errors"]:
            b.update(status="failed", failed_at=int(time.time()),
                     errors={"object": "list", "data": b["_errors"]})
            for _, h, _ in b["_items"]:
                self.body_state[h] = "retryable"
            return
        if step < len(self.openai_steps):
            status = self.openai_steps[step]
            in_prog = [s for s in self.openai_steps if s == "in_progress"]
            done = sum(1 for s in self.openai_steps[: step + 1] if s == "in_progress")
            if status in ("in_progress", "finalizing"):
                b["request_counts"] = {"total": n, "completed": n * done // max(1, len(in_prog)), "failed": 0}
            b["status"] = status
            return
        self._finish_openai(b)

    def _finish_openai(self, b: dict[str, Any]) -> None:
        out, err = [], []
        expired = cancelled = False
        for ln, h, attempt in b["_items"]:
            body = ln.get("body") or {}
            cid = ln.get("custom_id")
            rid = self._id("batch_req_")
            if self._marker(body, "expire", attempt):
                expired = True
                err.append({"id": rid, "custom_id": cid, "response": None, "error": {
                    "code": "batch_expired",
                    "message": "This request could not be executed before the completion window expired."}})
                self.body_state[h] = "retryable"
            elif self._marker(body, "cancel", attempt):
                cancelled = True
                err.append({"id": rid, "custom_id": cid, "response": None, "error": {
                    "code": "batch_cancelled", "message": "This request was not executed: the batch was cancelled."}})
                self.body_state[h] = "retryable"
            elif self._marker(body, "500", attempt):
                err.append({"id": rid, "custom_id": cid, "error": None, "response": {
                    "status_code": 500, "request_id": rid, "body": {"error": {
                        "message": "The server had an error processing your request.", "type": "server_error"}}}})
                self.body_state[h] = "retryable"
            elif self._marker(body, "400", attempt):
                err.append({"id": rid, "custom_id": cid, "error": None, "response": {
                    "status_code": 400, "request_id": rid, "body": {"error": {
                        "message": "Invalid value for 'messages'.", "type": "invalid_request_error",
                        "param": "messages", "code": None}}}})
                self.body_state[h] = "failed"
            else:
                text = self.answer_text(body)
                out.append({"id": rid, "custom_id": cid, "error": None, "response": {
                    "status_code": 200, "request_id": rid, "body": self._chat_completion(body, text)}})
                self.body_state[h] = "succeeded"
        now = int(time.time())
        for rows, key in ((out, "output_file_id"), (err, "error_file_id")):
            if rows:
                fid = self._id("file-")
                data = "".join(json.dumps(r) + "\n" for r in rows).encode()
                self.files[fid] = {"data": data, "filename": f"{b['id']}_{key}.jsonl",
                                   "purpose": "batch_output", "created_at": now}
                b[key] = fid
        n = len(b["_items"])
        b["request_counts"] = {"total": n, "completed": len(out), "failed": len(err)}
        if expired:
            b.update(status="expired", expired_at=now)
        elif cancelled:
            b.update(status="cancelled", cancelled_at=now)
        else:
            b.update(status="completed", completed_at=now)

    @staticmethod
    def _chat_completion(body: dict[str, Any], text: str) -> dict[str, Any]:
        prompt = sum(len(t) for t in _texts(body)) // 4 + 1
        return {"id": "chatcmpl-" + body_hash(body)[:12], "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model"), "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                         "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": len(text) // 4 + 1,
                          "total_tokens": prompt + len(text) // 4 + 1}}

    async def retrieve_openai_batch(self, request: Request) -> Response:
        if (denied := self._check_openai_auth(request)) is not None:
            return denied
        bid = request.path_params["batch_id"]
        with self.lock:
            b = self.openai_batches.get(bid)
            if b is None:
                return JSONResponse({"error": {"message": f"No batch found with id '{bid}'."}}, status_code=404)
            if self.fail_next_polls > 0:
                self.fail_next_polls -= 1
                self.counts["polls_failed"] += 1
                return JSONResponse({"error": {"message": "The server had an error.", "type": "server_error"}},
                                    status_code=500)
            self.counts["polls"] += 1
            self._advance_openai(b)
            return JSONResponse(self._public(b))

    async def list_openai_batches(self, request: Request) -> Response:
        if (denied := self._check_openai_auth(request)) is not None:
            return denied
        limit = int(request.query_params.get("limit", 20))
        after = request.query_params.get("after")
        with self.lock:
            ids = sorted(self.openai_batches, reverse=True)
            if after in ids:
                ids = ids[ids.index(after) + 1:]
            page = [self._public(self.openai_batches[i]) for i in ids[:limit]]
            return JSONResponse({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                                 "last_id": page[-1]["id"] if page else None, "has_more": len(ids) > limit})

    # -- Anthropic Messages ------------------------------------------------------------------

    def _message(self, params: dict[str, Any]) -> dict[str, Any]:
        text = self.answer_text(params)
        stop_reason, stop_seq = "end_turn", None
        for s in params.get("stop_sequences") or []:
            if s in text:
                text, stop_reason, stop_seq = text[: text.index(s)], "stop_sequence", s
                break
        if len(text) > int(params["max_tokens"]) * 4:
            text, stop_reason, stop_seq = text[: int(params["max_tokens"]) * 4], "max_tokens", None
        return {"id": "msg_" + body_hash(params)[:20], "type": "message", "role": "assistant",
                "model": params.get("model"), "content": [{"type": "text", "text": text}],
                "stop_reason": stop_reason, "stop_sequence": stop_seq,
                "usage": {"input_tokens": sum(len(t) for t in _texts(params)) // 4 + 1,
                          "output_tokens": len(text) // 4 + 1}}

    @staticmethod
    def _invalid_params(params: dict[str, Any]) -> str | None:
        if not isinstance(params.get("max_tokens"), int):
            return "max_tokens: Field required"
        if not params.get("model"):
            return "model: Field required"
        msgs = params.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return "messages: Field required"
        for m in msgs:
            if m.get("role") not in ("user", "assistant"):
                return "messages: Unexpected role. Use the top-level system parameter for a system prompt."
        return None

    async def messages(self, request: Request) -> Response:
        with self.lock:
            self.counts["messages_requests"] += 1
        if (denied := self._check_anthropic_auth(request)) is not None:
            return denied
        params = await request.json()
        with self.lock:
            self.received_messages.append(params)
            h = body_hash(params)
            self.attempts[h] += 1
            attempt = self.attempts[h]
        status = next((s for s in ("429", "529", "500", "400", "401") if self._marker(params, s, attempt)), None)
        with self.lock:
            self.counts[f"by_status_{status or 200}"] += 1
        if status == "429":
            return self._anthropic_error(429, "rate_limit_error", "Number of requests has exceeded your rate limit.",
                                         {"retry-after": self.retry_after,
                                          "anthropic-ratelimit-requests-limit": "1000"})
        if status == "529":
            return self._anthropic_error(529, "overloaded_error", "Overloaded")
        if status == "500":
            return self._anthropic_error(500, "api_error", "Internal server error")
        if status == "400":
            return self._anthropic_error(400, "invalid_request_error", "messages: text content blocks must be non-empty")
        if status == "401":
            return self._anthropic_error(401, "authentication_error",
                                         f"invalid x-api-key {self.anthropic_key(request)}")
        if (problem := self._invalid_params(params)) is not None:
            return self._anthropic_error(400, "invalid_request_error", problem)
        return JSONResponse(self._message(params), headers={"anthropic-ratelimit-requests-limit": "1000",
                                                            "request-id": "req_" + h[:16]})

    # -- Anthropic Message Batches -----------------------------------------------------------

    async def create_anthropic_batch(self, request: Request) -> Response:
        if (denied := self._check_anthropic_auth(request)) is not None:
            return denied
        p = await request.json()
        reqs = p.get("requests")
        if not isinstance(reqs, list) or not reqs or len(reqs) > 100_000:
            return self._anthropic_error(400, "invalid_request_error", "requests: 1 to 100,000 items")
        ids = [r.get("custom_id") for r in reqs]
        if len(set(ids)) != len(ids) or not all(isinstance(i, str) and _CUSTOM_ID.match(i) for i in ids):
            return self._anthropic_error(400, "invalid_request_error", "custom_id must be unique and match "
                                         "^[a-zA-Z0-9_-]{1,64}$")
        with self.lock:
            bid = self._id("msgbatch_")
            items = [(r, *self._submit_item(r.get("params") or {})) for r in reqs]
            now = time.time()
            self.anthropic_batches[bid] = {"id": bid, "type": "message_batch", "processing_status": "in_progress",
                                           "created_at": _iso(now), "expires_at": _iso(now + 86400),
                                           "ended_at": None, "archived_at": None, "cancel_initiated_at": None,
                                           "results_url": None,
                                           "request_counts": {"processing": len(reqs), "succeeded": 0, "errored": 0,
                                                              "canceled": 0, "expired": 0},
                                           "_items": items, "_polls": 0, "_results": None}
            self.counts["anthropic_batches_created"] += 1
            self.events.append(("create", bid))
            return JSONResponse(self._public(self.anthropic_batches[bid]))

    def _advance_anthropic(self, b: dict[str, Any]) -> None:
        if b["processing_status"] == "ended" or self.hold:
            return
        b["_polls"] += 1
        if b["_polls"] <= self.anthropic_steps:
            return
        results, counts = [], Counter()
        for r, h, attempt in b["_items"]:
            params = r.get("params") or {}
            if self._marker(params, "expire", attempt):
                res, kind, state = {"type": "expired"}, "expired", "retryable"
            elif self._marker(params, "cancel", attempt):
                res, kind, state = {"type": "canceled"}, "canceled", "retryable"
            elif self._marker(params, "500", attempt):
                res = {"type": "errored", "error": {"type": "error", "error": {"type": "api_error",
                                                                              "message": "Internal server error"}}}
                kind, state = "errored", "retryable"
            elif self._marker(params, "400", attempt) or self._invalid_params(params):
                msg = self._invalid_params(params) or "messages: text content blocks must be non-empty"
                res = {"type": "errored", "error": {"type": "error", "error": {"type": "invalid_request_error",
                                                                              "message": msg}}}
                kind, state = "errored", "failed"
            else:
                res, kind, state = {"type": "succeeded", "message": self._message(params)}, "succeeded", "succeeded"
            counts[kind] += 1
            self.body_state[h] = state
            results.append({"custom_id": r["custom_id"], "result": res})
        b["_results"] = results
        b["request_counts"] = {"processing": 0, **{k: counts[k] for k in ("succeeded", "errored", "canceled",
                                                                        "expired")}}
        b["processing_status"] = "ended"
        b["ended_at"] = _iso(time.time())
        b["results_url"] = f"{self.url}/v1/messages/batches/{b['id']}/results"

    async def retrieve_anthropic_batch(self, request: Request) -> Response:
        if (denied := self._check_anthropic_auth(request)) is not None:
            return denied
        bid = request.path_params["batch_id"]
        with self.lock:
            b = self.anthropic_batches.get(bid)
            if b is None:
                return self._anthropic_error(404, "not_found_error", f"message batch {bid} not found")
            if self.fail_next_polls > 0:
                self.fail_next_polls -= 1
                self.counts["polls_failed"] += 1
                return self._anthropic_error(500, "api_error", "Internal server error")
            self.counts["polls"] += 1
            self._advance_anthropic(b)
            return JSONResponse(self._public(b))

    async def list_anthropic_batches(self, request: Request) -> Response:
        if (denied := self._check_anthropic_auth(request)) is not None:
            return denied
        limit = int(request.query_params.get("limit", 20))
        with self.lock:
            ids = sorted(self.anthropic_batches, reverse=True)
            page = [self._public(self.anthropic_batches[i]) for i in ids[:limit]]
            return JSONResponse({"data": page, "has_more": len(ids) > limit,
                                 "first_id": page[0]["id"] if page else None,
                                 "last_id": page[-1]["id"] if page else None})

    async def anthropic_results(self, request: Request) -> Response:
        if (denied := self._check_anthropic_auth(request)) is not None:
            return denied
        bid = request.path_params["batch_id"]
        with self.lock:
            b = self.anthropic_batches.get(bid)
            if b is None or b["_results"] is None:
                return self._anthropic_error(404, "not_found_error", f"no results for message batch {bid}")
            self.counts["results_downloaded"] += 1
            self.events.append(("download", bid))
            data = "".join(json.dumps(r) + "\n" for r in b["_results"]).encode()
        return Response(data, media_type="application/x-jsonl")


@contextlib.contextmanager
def serve(**kwargs: Any):
    """``with serve() as srv:`` a started :class:`BatchServer`."""
    srv = BatchServer(**kwargs).start()
    try:
        yield srv
    finally:
        srv.stop()
