"""The one way the project calls models: through the request cache, then the backend for the misses.

Each answer is written to the cache the moment it arrives, so an interrupted build (or evaluation) keeps
all it got. :class:`ModelCaller` also keeps the counts the manifest reports (calls made, cache hits,
tokens, errors by kind). :class:`ModelLayer` opens callers for model specs: real ones, with the backend
placed where the run's executor puts it, or estimating ones for a dry run (:mod:`cftdata.backends.estimate`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cftdata.backends.base import Backend, OnResult, Request, Result, keys_optional
from cftdata.backends.breaker import CircuitBreaker, Endpoint, public_address
from cftdata.backends.cache import RequestCache
from cftdata.backends.estimate import count_request, estimate_text, expected_output, token_counter
from cftdata.recipe import ModelSpec


@dataclass
class CallStats:
    requests: int = 0
    cache_hits: int = 0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cached_output_tokens: int = 0
    errors: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "calls_made": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "input_tokens_from_cache": self.cached_input_tokens,
            "output_tokens_from_cache": self.cached_output_tokens,
            "errors": dict(self.errors),
        }


Progress = Callable[[int], None]


class ModelCaller:
    """Cache in front of a backend. ``call(requests)`` returns one Result per request, in order.

    Args:
        breaker: Counts systemic failures (refused key, unknown model, nothing listening...) across rows and
            stops the build with :class:`~cftdata.errors.EndpointError` when they repeat
            (:mod:`cftdata.backends.breaker`; with its preflight, the first request the cache cannot answer
            goes alone and a systemic failure of it stops the build after one call). An online backend reports
            every attempt to it; for the others the caller reports each row's result.
    """

    #: Whether answers are stored in the cache (an estimate stores nothing).
    stores = True

    def __init__(self, backend: Backend, cache: RequestCache | None, on_progress: Progress | None = None,
                 breaker: CircuitBreaker | None = None) -> None:
        self.backend = backend
        self.cache = cache
        self.stats = CallStats()
        self.on_progress = on_progress
        self.breaker = breaker
        if breaker is not None and backend.records_attempts:
            backend.breaker = breaker
        # Requests submitted ahead to a backend that delivers them itself (online backends): keys not yet
        # collected by call(), the failures among the finished ones (answers are in the cache), and a
        # second cache connection for the backend's thread, which stores each answer as it arrives.
        self._ahead: set[str] = set()
        self._ahead_done: set[str] = set()
        self._ahead_failed: dict[str, Result] = {}
        self._waiting: set[str] = set()  # keys call() waits for; the last one to finish wakes it (once)
        self._lock = threading.Condition()
        self._bg_cache: RequestCache | None = None
        self._sent_log: Any = None  # a cache.SentLog of the requests the backend sent (what a kill costs)
        self._key_of: dict[int, str] = {}  # id(request) -> its key, for requests handed to the backend
        self._send_lock = threading.Lock()
        if cache is not None and self.stores and backend.reports_sends:
            backend.on_send = self._record_send

    def submit(self, requests: list[Request]) -> None:
        """Start the requests the cache cannot answer on a ``submits_ahead`` backend, without waiting
        (distinct requests once); a later :meth:`call` of the same requests collects the answers."""
        if not self.stores or not self.backend.submits_ahead:
            return
        ns = self.backend.cache_namespace
        keyed = {r.cache_key(ns): r for r in requests}
        found = self.cache.get_many(keyed) if self.cache is not None else {}
        missing = {k: r for k, r in keyed.items() if k not in found and k not in self._ahead}
        if not missing:
            return
        if not getattr(self.backend, "delivers_ahead", False):
            self.backend.submit(list(missing.values()))  # a batch API: call() -> generate() collects
            return
        if self.cache is None:
            return  # answers submitted ahead are kept in the cache only: without one, call() runs them
        if self._bg_cache is None:
            self._bg_cache = RequestCache(self.cache.path, check_same_thread=False)
        keys = list(missing)
        with self._lock:
            self._ahead.update(keys)

        def on_result(j: int, result: Result) -> None:  # in the backend's thread
            key = keys[j]
            self._judge(result)
            with self._lock:
                self._count(result)
                if result.ok:
                    self._bg_cache.put(key, result, ns, missing[key].model)
                else:
                    self._ahead_failed[key] = result
                self._ahead_done.add(key)
                if key in self._waiting:
                    self._waiting.discard(key)
                    if not self._waiting:
                        self._lock.notify_all()

        self._note_keys(missing)
        self.backend.submit(list(missing.values()), on_result)

    def _judge(self, result: Result) -> None:
        """Tell the breaker about a row's result (backends that do not report attempts themselves); a failure
        raises instead once it tripped, so that the row stays unanswered (a rerun sends it again)."""
        if self.breaker is None or self.backend.records_attempts:
            return
        from cftdata.backends.online import kind_of_error

        kind = kind_of_error(result.error)
        self.breaker.record(kind, result.error_detail)
        if kind is not None:
            self.breaker.check()

    def _count(self, result: Result) -> None:
        self.stats.calls += 1
        self.stats.input_tokens += result.input_tokens
        self.stats.output_tokens += result.output_tokens
        if not result.ok:
            self.stats.errors[result.error] += 1

    def _collect_ahead(self, keys: list[str]) -> dict[str, Result]:
        """Wait for requests submitted ahead and take their results (answers from the cache)."""
        wanted = set(keys)
        with self._lock:
            self._waiting = wanted - self._ahead_done
            try:
                while self._waiting:
                    err = self.backend.background_error()
                    if err is not None:
                        raise err
                    self._lock.wait(0.5)
            finally:
                self._waiting = set()
            self._ahead -= wanted
            self._ahead_done -= wanted
            failed = {k: self._ahead_failed.pop(k) for k in wanted if k in self._ahead_failed}
        assert self.cache is not None
        found = self.cache.get_many([k for k in wanted if k not in failed])
        for k in wanted:
            if k not in failed and k not in found:  # the store lost it (a foreign cache cleanup): say so
                failed[k] = Result(error="no_result", error_detail="an answer submitted ahead is not in the cache")
        for r in found.values():
            r.cached = False  # paid in this run
        return {**found, **failed}

    def _note_keys(self, keyed: dict[str, Request]) -> None:
        """Remember the keys of requests about to go to the backend (so a send is logged without rehashing)."""
        if self.backend.on_send is not None:
            with self._send_lock:
                self._key_of.update((id(r), k) for k, r in keyed.items())

    def _record_send(self, request: Request) -> None:
        """The backend sent ``request``: log its key (a run after a kill counts what was in flight)."""
        assert self.cache is not None
        with self._send_lock:
            key = self._key_of.pop(id(request), None) or request.cache_key(self.backend.cache_namespace)
            if self._sent_log is None:
                self._sent_log = self.cache.sent_log()
            self._sent_log.mark(key)

    def close(self) -> None:
        """Stop the backend (and its background thread), then close the second cache connection."""
        self.backend.close()
        if self._bg_cache is not None:
            self._bg_cache.close()
            self._bg_cache = None
        with self._send_lock:
            self._key_of.clear()
            if self._sent_log is not None:
                self._sent_log.close()
                self._sent_log = None

    def call(self, requests: list[Request]) -> list[Result]:
        ns = self.backend.cache_namespace
        keys = [r.cache_key(ns) for r in requests]
        ahead = [k for k in dict.fromkeys(keys) if k in self._ahead]
        collected = self._collect_ahead(ahead) if ahead else {}
        found = self.cache.get_many([k for k in keys if k not in collected]) if self.cache is not None else {}
        results: list[Result | None] = [collected.get(k) or found.get(k) for k in keys]
        self.stats.requests += len(requests)
        # Identical requests in one batch are sent once.
        todo: dict[str, list[int]] = {}
        hits = 0
        for i, (k, r) in enumerate(zip(keys, results, strict=True)):
            if r is None:
                todo.setdefault(k, []).append(i)
            elif k not in collected:
                hits += 1
                self.stats.cache_hits += 1
                self.stats.cached_input_tokens += r.input_tokens
                self.stats.cached_output_tokens += r.output_tokens
        if self.on_progress and (hits or collected):
            self.on_progress(len(requests) - sum(len(v) for v in todo.values()))
        if todo:
            miss_keys = list(todo)
            miss_requests = [requests[todo[k][0]] for k in miss_keys]

            def on_result(j: int, result: Result) -> None:
                key = miss_keys[j]
                self._judge(result)
                with self._lock:
                    self._count(result)
                if result.ok and self.cache is not None and self.stores:
                    self.cache.put(key, result, ns, miss_requests[j].model)
                for i in todo[key]:
                    results[i] = result
                if self.on_progress:
                    self.on_progress(len(todo[key]))

            self._note_keys(dict(zip(miss_keys, miss_requests, strict=True)))
            self._generate(miss_requests, on_result)
        return [
            r if r is not None else Result(error="no_result", error_detail="the backend returned nothing")
            for r in results
        ]

    def _generate(self, requests: list[Request], on_result: OnResult) -> None:
        """Answer the requests the cache did not have."""
        self.backend.generate(requests, on_result)


class EstimatingCaller(ModelCaller):
    """A :class:`ModelCaller` that answers cache misses with estimates and never calls the backend (which is
    built all the same, so a spec the build would refuse is refused here too)."""

    stores = False

    def __init__(self, backend: Backend, cache: RequestCache | None, spec: ModelSpec,
                 on_progress: Progress | None = None) -> None:
        super().__init__(backend, cache, on_progress)
        self.count, self.counting = token_counter(spec)
        self.output_each = expected_output(spec)
        #: The first request that would be sent, as chat messages (a raw prompt as one ``prompt`` turn).
        self.example: list[dict[str, str]] = []

    def _generate(self, requests: list[Request], on_result: OnResult) -> None:
        for i, r in enumerate(requests):
            if not self.example:
                self.example = [{"role": "prompt", "content": r.prompt or ""}] if r.is_raw else r.message_dicts
            tag = r.cache_key(self.backend.cache_namespace)[:8]
            on_result(i, Result(text=estimate_text(self.output_each, tag), finish_reason="stop",
                                input_tokens=count_request(r, self.count), output_tokens=self.output_each))


Placement = Callable[[Backend], Backend]


def endpoint_of(backend: Backend, section: str | None = None) -> Endpoint:
    """What error messages about ``backend`` name (its key variable, never the key)."""
    spec = backend.spec
    return Endpoint(spec.backend, spec.model, public_address(backend.address), backend.key_env, section)


class ModelLayer:
    """Opens a :class:`ModelCaller` per model spec, all sharing one request cache.

    Args:
        cache: The request cache (None: no cache).
        place: Where a backend runs: the run's executor may hand it to its workers (``run.executor: ray``)
            and return a stand-in backend that ships the requests there. Default: in this process.
        estimate: A dry run: callers answer cache misses with estimates (no call is made, no API key needed).
        preflight: Each caller's first paid request goes alone, and a systemic failure of it (refused key,
            unknown model, nothing listening...) stops the build after that one call
            (:class:`~cftdata.backends.breaker.CircuitBreaker`).
    """

    def __init__(self, cache: RequestCache | None, place: Placement | None = None, estimate: bool = False,
                 preflight: bool = False) -> None:
        self.cache = cache
        self.place = place
        self.estimate = estimate
        self.preflight = preflight
        #: API-key variables found unset while opening callers for an estimate.
        self.missing_keys: list[str] = []
        #: label -> (spec, caller) of every caller opened, for reports.
        self.opened: dict[str, tuple[ModelSpec, ModelCaller]] = {}
        #: label -> the recipe section of that caller's model (teacher, respond...), for messages.
        self.sections: dict[str, str] = {}

    def caller(self, spec: ModelSpec, on_progress: Progress | None = None, label: str | None = None,
               section: str | None = None) -> ModelCaller:
        """A cached caller for ``spec`` (``label``: the stage or role it serves; ``section``: the recipe key it
        comes from, named in error messages); backend errors in the spec (unknown options...) raise here,
        before any call."""
        from cftdata.backends import make_backend

        caller: ModelCaller
        if self.estimate:
            with keys_optional() as missing:
                backend = make_backend(spec)
            self.missing_keys += [k for k in missing if k not in self.missing_keys]
            caller = EstimatingCaller(backend, self.cache, spec, on_progress)
        else:
            backend = make_backend(spec)
            breaker = CircuitBreaker(endpoint_of(backend, section), threshold=spec.fail_fast_after,
                                     preflight=self.preflight and spec.fail_fast_after > 0)
            caller = ModelCaller(self.place(backend) if self.place else backend, self.cache, on_progress,
                                 breaker=breaker)
        label = label or f"{spec.backend}:{spec.model}"
        self.opened[label] = (spec, caller)
        if section is not None:
            self.sections[label] = section
        return caller
