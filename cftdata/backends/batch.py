"""Shared machinery of the batch backends (``openai-batch``, ``anthropic-batch``): half price, 24 h.

A batch backend implements the same :meth:`~cftdata.backends.base.Backend.generate` as every other
backend; inside, it submits the requests as provider batches, polls them, and reports each answer
through ``on_result`` as soon as its batch's output is downloaded. What makes it safe to kill:

* **State on disk before polling.** Every batch id, and which requests it holds, is written (atomic
  rename, fsync) to a JSON state file the moment the provider accepts the batch, before the first
  poll. The file is keyed by the hash of the set of request cache keys
  (``<state_dir>/<backend>-<hash>.json``), so rerunning the same requests finds it and resumes
  polling instead of paying again. A rerun of a *subset* (the usual case: the request cache already
  holds what the first run delivered) adopts the still-pending batches of any unfinished state file
  of the same backend and namespace. Nothing in the file is secret: batch ids, file ids, cache keys,
  counts, timestamps; never a key or a prompt.
* **custom_id = the request's cache key** (64 hex characters: within both providers' limits), so
  every output line names its request unambiguously, whichever run or batch it comes from. The state
  maps each custom_id to the batch that holds it (``items``), with its attempt count and outcome.
* **Resubmission.** Items that expired, were canceled, hit a server error, or are missing from the
  output go into a new batch as soon as their batch ends, up to ``max_rounds`` submissions per item;
  then they are reported as Result errors (``batch_expired``, ``batch_canceled``, ...). Per-item
  client errors (HTTP 4xx in the error file) are reported at once as ``http_<status>``. A rerun
  retries failed items afresh (failures are never cached).
* **Visible life cycle.** Each poll builds a :class:`BatchStatus` (validating / in_progress /
  finalizing / completed ..., with the provider's request counts), logged on the ``cftdata.batch``
  logger (INFO when it changes) and passed to ``backend.status_callback`` when one is set.

Options (``options:`` of the model section): ``state_dir`` (default
``<$CFTDATA_CACHE_DIR or ~/.cache/cftdata>/batches``), ``poll_interval_s`` (30), ``max_rounds`` (3),
``max_batch_requests`` and ``max_batch_bytes`` (default and ceiling: the provider's limits).
Finished state files move to ``<state_dir>/finished/`` (an audit trail of batch ids; nothing reads
them again). One state file is driven by one process at a time.

* **Submit ahead, wait once.** :meth:`BatchBackend.submit` creates (and persists) the batches of a
  request set without polling; the pipeline calls it for every shard before the first shard waits,
  so a build of many shards is one wait, not one per shard. A later ``generate`` of the same set
  polls the batches ``submit`` made (a rerun after a kill finds them in the state file). Requests an
  earlier ``submit`` of the same backend already holds are not submitted twice.

A ``generate`` call returns when all its batches have ended (up to the providers' 24 h window).
``spec.stall_timeout_s`` bounds only a run of failing polls (then
:class:`~cftdata.errors.NoProgressError`, state kept); a rejected key stops at once with
:class:`~cftdata.errors.BackendConfigError` (state kept, rerun resumes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from cftdata.backends.base import Backend, OnResult, Request, Result
from cftdata.backends.breaker import ProbeFailed
from cftdata.backends.cache import default_cache_dir
from cftdata.errors import BackendConfigError, NoProgressError

log = logging.getLogger("cftdata.batch")

STATE_VERSION = 1


@dataclass
class BatchStatus:
    """One poll of one provider batch, as shown to the user."""

    backend: str
    batch_id: str
    #: The provider's own word: validating / in_progress / finalizing / completed / expired /
    #: failed / cancelled (OpenAI), in_progress / canceling / ended (Anthropic).
    status: str
    #: The provider's request counts (OpenAI: total / completed / failed; Anthropic: processing /
    #: succeeded / errored / canceled / expired).
    counts: dict[str, int]
    #: Requests in the batch.
    size: int
    #: Submission round of the batch (1 = first submission, 2 = first resubmission, ...).
    round: int
    ended: bool
    elapsed_s: float = 0.0

    def describe(self) -> str:
        counts = " ".join(f"{k}={v}" for k, v in self.counts.items())
        return (f"{self.backend} batch {self.batch_id} (round {self.round}, {self.size} requests): "
                f"{self.status}{' ' + counts if counts else ''} after {self.elapsed_s:.0f}s")


@dataclass
class Retry:
    """An item outcome that calls for resubmission (expired, canceled, server error, missing)."""

    reason: str
    detail: str = ""


Outcome = Result | Retry


@dataclass
class Polled:
    """What a provider's :meth:`BatchBackend._retrieve` reports: a status plus its raw object."""

    status: str
    counts: dict[str, int]
    ended: bool
    handle: Any = None


class TransientError(Exception):
    """A control-plane call failed in a way worth trying again later (5xx, 429, connection)."""


class BatchGone(Exception):
    """The provider no longer knows this batch (404): its items are resubmitted."""


class PermanentError(Exception):
    """The provider refused a submission for good (4xx): its items fail with ``http_<status>``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def default_state_dir() -> Path:
    return default_cache_dir() / "batches"


def set_hash(keys: Iterable[str]) -> str:
    """sha256 of the sorted, distinct request keys: the identity of a batch job."""
    return hashlib.sha256("\n".join(sorted(set(keys))).encode()).hexdigest()


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class BatchJob:
    """The persisted state of one ``generate`` call: its batches and where each request is.

    ``items[custom_id]`` = ``{"batch": id | None, "attempts": n, "state": s, "reason": r}`` with
    state ``todo`` (to submit), ``submitted`` (in ``batch``, not yet delivered), ``ok`` or
    ``error`` (delivered). ``batches[id]`` = ``{"round", "size", "submitted_at", "status",
    "ended", ...provider fields}``. ``pending`` lists submissions started but not yet confirmed
    (an uploaded OpenAI input file, say), so a kill in between can be recovered.
    """

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def new(cls, path: Path, backend: str, namespace: str, job_hash: str) -> BatchJob:
        now = time.time()
        return cls(path, {
            "version": STATE_VERSION, "backend": backend, "namespace": namespace, "set_hash": job_hash,
            "created_at": now, "updated_at": now, "finished": False,
            "batches": {}, "pending": [], "items": {},
        })

    @classmethod
    def load(cls, path: Path) -> BatchJob | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("Ignoring unreadable batch state file %s.", path)
            return None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            log.warning("Ignoring batch state file %s (unknown format).", path)
            return None
        return cls(path, data)

    @property
    def items(self) -> dict[str, dict[str, Any]]:
        return self.data["items"]

    @property
    def batches(self) -> dict[str, dict[str, Any]]:
        return self.data["batches"]

    @property
    def pending(self) -> list[dict[str, Any]]:
        return self.data["pending"]

    def save(self) -> None:
        self.data["updated_at"] = time.time()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path, json.dumps(self.data, separators=(",", ":")))

    def finish(self) -> None:
        """Mark finished and move to ``finished/`` (kept as an audit trail of batch ids)."""
        self.data["finished"] = True
        self.save()
        done = self.path.parent / "finished"
        done.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            os.replace(self.path, done / f"{self.path.stem}-{int(time.time() * 1000)}.json")


@dataclass
class _Run:
    """In-memory bookkeeping of one ``generate`` call."""

    job: BatchJob
    requests: dict[str, Request]
    where: dict[str, list[int]]
    on_result: OnResult
    delivered: set[str] = field(default_factory=set)
    sources: list[BatchJob] = field(default_factory=list)


class BatchBackend(Backend):
    """The provider-independent batch engine. Subclasses implement the ``_`` provider hooks."""

    paid: ClassVar[bool] = True
    #: Batch APIs bill half the online price (used by cost estimates).
    discount: ClassVar[float] = 0.5
    submits_ahead = True
    #: The provider's API root when the recipe gives no base_url.
    default_base_url: ClassVar[str] = ""
    #: The provider's per-batch limits (bytes with a safety margin under the documented maximum).
    max_requests_limit: ClassVar[int]
    max_bytes_limit: ClassVar[int]

    def __init__(self, spec) -> None:
        super().__init__(spec)
        opts = spec.options
        self.state_dir = Path(opts.get("state_dir") or default_state_dir()).expanduser()
        self.poll_interval_s = float(opts.get("poll_interval_s", 30))
        self.max_rounds = max(1, int(opts.get("max_rounds", 3)))
        self.max_batch_requests = max(1, min(int(opts.get("max_batch_requests", self.max_requests_limit)),
                                             self.max_requests_limit))
        self.max_batch_bytes = max(1, min(int(opts.get("max_batch_bytes", self.max_bytes_limit)),
                                          self.max_bytes_limit))
        #: Called with a :class:`BatchStatus` after every poll (a progress display, a test hook).
        self.status_callback: Callable[[BatchStatus], None] | None = None
        self.counters: dict[str, int] = {
            "batches_created": 0, "batches_resumed": 0, "items_submitted": 0, "items_resubmitted": 0,
            "items_redelivered": 0, "polls": 0, "poll_errors": 0, "failed": 0,
        }
        self._last_shown: dict[str, tuple[str, tuple]] = {}
        #: Request keys handed to :meth:`submit` so far (never submitted twice by this backend).
        self._submitted: set[str] = set()
        #: Jobs :meth:`submit` opened, by state path: (job, adopted sources, results already known).
        self._prepared: dict[Path, tuple[BatchJob, list[BatchJob], dict[str, Result]]] = {}

    def stats(self) -> dict[str, Any]:
        return dict(self.counters)

    # -- provider hooks ------------------------------------------------------------------------

    def _group(self, request: Request) -> str:
        """Requests with different groups never share a batch (OpenAI: one model per batch)."""
        return ""

    @abstractmethod
    def _encode(self, custom_id: str, request: Request) -> dict[str, Any]:
        """The batch item for one request (a JSONL line / a ``requests`` entry)."""

    def _prepare(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Work before creating a batch whose result must be persisted first (an upload)."""
        return {}

    @abstractmethod
    def _create(self, items: list[dict[str, Any]], prepared: dict[str, Any], job: BatchJob) -> str:
        """Create the batch; return its id. Raise TransientError / PermanentError."""

    def _find_orphan(self, pending: dict[str, Any], job: BatchJob) -> str | None:
        """After a kill between submission and persistence: the batch created for ``pending``, if any."""
        return None

    @abstractmethod
    def _retrieve(self, batch_id: str) -> Polled:
        """Poll a batch. Raise TransientError, BatchGone or BackendConfigError."""

    @abstractmethod
    def _collect(self, batch_id: str, polled: Polled) -> tuple[Iterator[tuple[str, Outcome]], Retry]:
        """The outcomes of an ended batch, streamed; and the Retry for items it does not mention."""

    # -- the engine ----------------------------------------------------------------------------

    def _list_batches(self) -> None:
        """List one batch (auth check; spends nothing). Raise like the other hooks."""
        raise NotImplementedError

    @property
    def address(self) -> str:
        return (self.spec.base_url or self.default_base_url).rstrip("/")

    def probe(self, spend: bool) -> str:
        """The key and the endpoint through a batch list (free: a batch backend never needs a paid probe).
        A refused key raises :class:`~cftdata.errors.BackendConfigError`, as in a build."""
        try:
            self._list_batches()
        except TransientError as e:
            raise ProbeFailed("connection", str(e)) from None
        except (PermanentError, BatchGone) as e:
            raise ProbeFailed("not_found", str(e)) from None
        return "OK, key accepted by the batch list; nothing spent"

    def _index(self, requests: Sequence[Request]) -> tuple[dict[str, Request], dict[str, list[int]]]:
        """Distinct requests by cache key, and where each key occurs in ``requests``."""
        ns = self.cache_namespace
        where: dict[str, list[int]] = {}
        by_key: dict[str, Request] = {}
        for i, r in enumerate(requests):
            k = r.cache_key(ns)
            where.setdefault(k, []).append(i)
            by_key.setdefault(k, r)
        return by_key, where

    def submit(self, requests: Sequence[Request]) -> None:
        """Create and persist the batches of ``requests`` (less those submitted before); do not wait."""
        by_key, _ = self._index(requests)
        by_key = {k: r for k, r in by_key.items() if k not in self._submitted}
        if not by_key:
            return
        self._submitted.update(by_key)
        job, sources = self._open_job(self.cache_namespace, by_key)
        early: dict[str, Result] = {}  # items settled at once (too large, refused): delivered by generate
        keys = list(by_key)
        run = _Run(job, by_key, {k: [i] for i, k in enumerate(keys)},
                   lambda i, result: early.__setitem__(keys[i], result), sources=sources)
        for pend in list(job.pending):
            self._recover(job, pend)
        self._submit_todo(run)
        self._prepared[job.path] = (job, sources, early)

    def generate(self, requests: Sequence[Request], on_result: OnResult) -> None:
        ns = self.cache_namespace
        by_key, where = self._index(requests)
        if not by_key:
            return
        prepared = self._prepared.pop(self._job_path(set_hash(by_key)), None)
        if prepared is not None and set(prepared[0].items) == set(by_key):
            job, sources, early = prepared
        else:
            (job, sources), early = self._open_job(ns, by_key), {}
        run = _Run(job, by_key, where, on_result, sources=sources)
        for k, result in early.items():
            run.delivered.add(k)
            for i in where[k]:
                on_result(i, result)
        try:
            self._drive(run)
        except BaseException as e:
            if not isinstance(e, BackendConfigError):
                log.warning("%s: stopped (%s). Batch state kept in %s; rerun the same command to resume "
                            "polling (nothing is resubmitted).", self.name, type(e).__name__, job.path)
            raise
        job.finish()
        for src in sources:
            self._retire_source(src, run)

    def _job_path(self, job_hash: str) -> Path:
        return self.state_dir / f"{self.name}-{job_hash[:32]}.json"

    def _open_job(self, ns: str, by_key: dict[str, Request]) -> tuple[BatchJob, list[BatchJob]]:
        """Resume the state of this exact request set, or start one (adopting pending batches).

        Returns the job and the other jobs it adopted batches from.
        """
        sources: list[BatchJob] = []
        job_hash = set_hash(by_key)
        path = self._job_path(job_hash)
        job = BatchJob.load(path) if path.exists() else None
        if job is not None and job.data.get("namespace") == ns and set(job.items) == set(by_key):
            resumed = {it["batch"] for it in job.items.values() if it["state"] in ("submitted", "ok")}
            self.counters["batches_resumed"] += len(resumed)
            log.info("%s: resuming %s (%d requests, %d batches to poll).", self.name, path, len(by_key),
                     len(resumed))
        else:
            job = BatchJob.new(path, self.name, ns, job_hash)
            for k in by_key:
                job.items[k] = {"batch": None, "attempts": 0, "state": "todo", "reason": ""}
            sources = self._adopt(job)
        for it in job.items.values():
            if it["state"] == "ok":  # delivered by an earlier run, asked again: fetch again, free
                it["state"] = "submitted"
                self.counters["items_redelivered"] += 1
            elif it["state"] == "error":  # a rerun retries failures
                it.update(batch=None, attempts=0, state="todo")
        job.save()
        return job, sources

    def _adopt(self, job: BatchJob) -> list[BatchJob]:
        """Take over still-pending batches of other unfinished jobs that hold some of our requests."""
        sources: list[BatchJob] = []
        if not self.state_dir.is_dir():
            return sources
        for p in sorted(self.state_dir.glob(f"{self.name}-*.json")):
            if p == job.path:
                continue
            other = BatchJob.load(p)
            if other is None or other.data.get("namespace") != job.data["namespace"] or other.data.get("finished"):
                continue
            taken = 0
            for k, it in other.items.items():
                mine = job.items.get(k)
                if mine is None or mine["state"] != "todo" or it.get("batch") is None:
                    continue
                if it["state"] not in ("submitted", "ok") or it["batch"] not in other.batches:
                    continue
                job.items[k] = {**it, "state": "submitted"}
                job.batches.setdefault(it["batch"], dict(other.batches[it["batch"]]))
                taken += 1
            if taken:
                sources.append(other)
                log.info("%s: adopting %d pending requests from %s.", self.name, taken, p)
        job.data["adopted_from"] = [s.path.name for s in sources]
        self.counters["batches_resumed"] += len(job.batches)
        return sources

    def _retire_source(self, src: BatchJob, run: _Run) -> None:
        """A job whose every request has since been delivered (by it or by us) is finished."""
        fresh = BatchJob.load(src.path) if src.path.exists() else None
        if fresh is None:
            return
        if all(it["state"] in ("ok", "error") or k in run.delivered for k, it in fresh.items.items()):
            fresh.finish()

    def _drive(self, run: _Run) -> None:
        job = run.job
        last_ok = time.monotonic()
        while True:
            for pend in list(job.pending):
                self._recover(job, pend)
            self._submit_todo(run)
            active = sorted({it["batch"] for it in job.items.values() if it["state"] == "submitted"})
            if not active and not any(it["state"] == "todo" for it in job.items.values()):
                return
            ended_any = False
            for batch_id in active:
                try:
                    polled = self._retrieve(batch_id)
                except TransientError as e:
                    self.counters["poll_errors"] += 1
                    log.warning("%s: polling batch %s failed (%s); trying again.", self.name, batch_id, e)
                    continue
                except BatchGone as e:
                    log.warning("%s: batch %s is gone (%s); its requests are resubmitted.", self.name, batch_id, e)
                    self._requeue(job, batch_id, Retry("batch_gone", str(e)))
                    job.batches[batch_id].update(ended=True, status="gone")
                    job.save()
                    ended_any = True
                    continue
                except BackendConfigError as e:
                    raise BackendConfigError(f"{e} The batch state is kept in {job.path}; rerun to resume.") from None
                last_ok = time.monotonic()
                self.counters["polls"] += 1
                self._show(batch_id, job.batches[batch_id], polled)
                if polled.ended:
                    self._consume(run, batch_id, polled)
                    ended_any = True
            if time.monotonic() - last_ok > self.spec.stall_timeout_s:
                raise NoProgressError(
                    f"Backend {self.name!r}: no batch could be polled for {self.spec.stall_timeout_s:g}s. "
                    f"The batch state is kept in {job.path}; rerun the same command to resume."
                )
            if not ended_any:
                time.sleep(self.poll_interval_s)

    def _recover(self, job: BatchJob, pend: dict[str, Any]) -> None:
        """A submission that was started but not confirmed: find its batch, else resubmit its items."""
        try:
            found = self._find_orphan(pend, job)
        except TransientError as e:
            log.warning("%s: could not look for an unconfirmed batch (%s); trying again.", self.name, e)
            return
        ids = [c for c in pend["custom_ids"] if c in job.items]
        if found:
            log.info("%s: found batch %s submitted before the interruption.", self.name, found)
            self._register(job, found, ids, pend.get("round", 1), {k: v for k, v in pend.items() if k != "custom_ids"})
        job.pending.remove(pend)
        job.save()

    def _register(self, job: BatchJob, batch_id: str, ids: list[str], rnd: int, extra: dict[str, Any]) -> None:
        extra = {k: v for k, v in extra.items() if k not in ("round", "started_at")}
        job.batches[batch_id] = {"round": rnd, "size": len(ids), "submitted_at": time.time(),
                                 "status": "submitted", "ended": False, **extra}
        for c in ids:
            it = job.items[c]
            it.update(batch=batch_id, state="submitted", attempts=it["attempts"] + 1)

    def _submit_todo(self, run: _Run) -> None:
        job = run.job
        blocked = {c for p in job.pending for c in p["custom_ids"]}  # submission not yet confirmed
        todo = [k for k, it in job.items.items() if it["state"] == "todo" and k not in blocked]
        if not todo:
            return
        ready = []
        for k in todo:
            it = job.items[k]
            if it["attempts"] >= self.max_rounds:
                reason = it.get("reason") or "batch_failed"
                self._deliver(run, k, Result(
                    error=reason.split(":", 1)[0],
                    error_detail=f"no answer after {it['attempts']} batch submissions: {reason}"[:2000]))
            else:
                ready.append(k)
        groups: dict[str, list[str]] = {}
        for k in ready:
            groups.setdefault(self._group(run.requests[k]), []).append(k)
        for keys in groups.values():
            for chunk in self._chunks(run, keys):
                self._submit_chunk(run, chunk)
        job.save()

    def _chunks(self, run: _Run, keys: list[str]) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        chunk: list[tuple[str, dict[str, Any]]] = []
        size = 0
        for k in keys:
            item = self._encode(k, run.requests[k])
            n = len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()) + 1
            if n > self.max_batch_bytes:
                self._deliver(run, k, Result(
                    error="request_too_large",
                    error_detail=f"the request is {n} bytes, over the batch limit of {self.max_batch_bytes}"))
                continue
            if chunk and (len(chunk) >= self.max_batch_requests or size + n > self.max_batch_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append((k, item))
            size += n
        if chunk:
            yield chunk

    def _submit_chunk(self, run: _Run, chunk: list[tuple[str, dict[str, Any]]]) -> None:
        job = run.job
        ids = [k for k, _ in chunk]
        items = [item for _, item in chunk]
        rnd = max(job.items[k]["attempts"] for k in ids) + 1
        try:
            prepared = self._prepare(items)
        except TransientError as e:
            log.warning("%s: preparing a batch of %d requests failed (%s); trying again.", self.name, len(ids), e)
            return
        except PermanentError as e:
            self._fail_chunk(run, ids, e)
            return
        pend = {"custom_ids": ids, "round": rnd, "started_at": time.time(), **prepared}
        job.pending.append(pend)
        job.save()
        try:
            batch_id = self._create(items, prepared, job)
        except TransientError as e:
            # It may have been created all the same: the next cycle looks for it before resubmitting.
            log.warning("%s: creating a batch of %d requests failed (%s); checking again.", self.name, len(ids), e)
            return
        except PermanentError as e:
            job.pending.remove(pend)
            self._fail_chunk(run, ids, e)
            return
        job.pending.remove(pend)
        self._register(job, batch_id, ids, rnd, prepared)
        job.save()  # persisted before the first poll
        self.counters["batches_created"] += 1
        self.counters["items_submitted"] += len(ids)
        if rnd > 1:
            self.counters["items_resubmitted"] += len(ids)
        log.info("%s: submitted batch %s (%d requests, round %d); state in %s.",
                 self.name, batch_id, len(ids), rnd, job.path)

    def _fail_chunk(self, run: _Run, ids: list[str], e: PermanentError) -> None:
        for k in ids:
            self._deliver(run, k, Result(error=f"http_{e.status}", error_detail=e.detail[:2000]))
        run.job.save()

    def _show(self, batch_id: str, rec: dict[str, Any], polled: Polled) -> None:
        status = BatchStatus(
            backend=self.name, batch_id=batch_id, status=polled.status, counts=dict(polled.counts),
            size=int(rec.get("size", 0)), round=int(rec.get("round", 1)), ended=polled.ended,
            elapsed_s=time.time() - float(rec.get("submitted_at", time.time())),
        )
        rec["status"] = polled.status
        sig = (polled.status, tuple(sorted(polled.counts.items())))
        last = self._last_shown.get(batch_id)
        if last != sig:
            hint = ""
            if polled.status == "finalizing" and (last is None or last[0] != "finalizing"):
                hint = " (the provider is writing the output files; big batches stay here a while)"
            log.info("%s%s", status.describe(), hint)
            self._last_shown[batch_id] = sig
        else:
            log.debug("%s", status.describe())
        if self.status_callback is not None:
            self.status_callback(status)

    def _consume(self, run: _Run, batch_id: str, polled: Polled) -> None:
        """Download an ended batch and deliver (or requeue) every request of ours it holds."""
        job = run.job
        mine = {k for k, it in job.items.items() if it["batch"] == batch_id and it["state"] == "submitted"}
        try:
            outcomes, default = self._collect(batch_id, polled)
            for cid, outcome in outcomes:
                if cid not in mine:
                    continue
                mine.discard(cid)
                self._settle(run, cid, outcome)
        except TransientError as e:
            log.warning("%s: downloading batch %s failed (%s); trying again.", self.name, batch_id, e)
            job.save()
            return
        except (BatchGone, PermanentError) as e:
            log.warning("%s: the results of batch %s cannot be read (%s); its requests are resubmitted.",
                        self.name, batch_id, e)
            default = Retry("results_unavailable", str(e))
        for k in mine:
            self._settle(run, k, default)
        job.batches[batch_id].update(ended=True, status=polled.status)
        job.save()

    def _settle(self, run: _Run, key: str, outcome: Outcome) -> None:
        it = run.job.items[key]
        if isinstance(outcome, Retry):
            it.update(batch=None, state="todo", reason=f"{outcome.reason}: {outcome.detail}" if outcome.detail
                      else outcome.reason)
        else:
            self._deliver(run, key, outcome)

    def _requeue(self, job: BatchJob, batch_id: str, retry: Retry) -> None:
        for it in job.items.values():
            if it["batch"] == batch_id and it["state"] == "submitted":
                it.update(batch=None, state="todo", reason=retry.reason)

    def _deliver(self, run: _Run, key: str, result: Result) -> None:
        it = run.job.items[key]
        it["state"] = "ok" if result.ok else "error"
        if not result.ok:
            it["reason"] = result.error or ""
            self.counters["failed"] += 1
        run.delivered.add(key)
        for i in run.where[key]:
            run.on_result(i, result)


@contextlib.contextmanager
def translate_sdk_errors(sdk: Any, what: str, detail: Callable[[Exception], str], retry_statuses: frozenset[int],
                         key_hint: str, gone_on_404: bool = False) -> Iterator[None]:
    """Exceptions of a Stainless-generated SDK (``openai``, ``anthropic``: the same hierarchy) -> the engine's
    (transient / gone / permanent / bad key), by exception type and status code, never by message text."""
    try:
        yield
    except (sdk.AuthenticationError, sdk.PermissionDeniedError) as e:
        raise BackendConfigError(f"The provider refused the API key while {what} ({detail(e)}). {key_hint}") from None
    except sdk.NotFoundError as e:
        if gone_on_404:
            raise BatchGone(detail(e)) from None
        raise PermanentError(404, detail(e)) from None
    except (sdk.RateLimitError, sdk.InternalServerError) as e:
        raise TransientError(f"{what}: {detail(e)}") from None
    except sdk.APITimeoutError:
        raise TransientError(f"{what}: timed out") from None
    except sdk.APIConnectionError as e:
        raise TransientError(f"{what}: {type(e.__cause__ or e).__name__}") from None
    except sdk.APIStatusError as e:
        if e.status_code in retry_statuses:
            raise TransientError(f"{what}: {detail(e)}") from None
        raise PermanentError(e.status_code, detail(e)) from None

