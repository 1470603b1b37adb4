"""The one way stages call models: through the request cache, then the backend for the misses.

Each answer is written to the cache the moment it arrives, so an interrupted build keeps all it got.
:class:`ModelCaller` also keeps the counts the manifest reports (calls made, cache hits, tokens,
errors by kind).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cftdata.backends.base import Backend, Request, Result
from cftdata.backends.cache import RequestCache


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


class ModelCaller:
    """Cache in front of a backend. ``call(requests)`` returns one Result per request, in order."""

    def __init__(self, backend: Backend, cache: RequestCache | None, on_progress=None) -> None:
        self.backend = backend
        self.cache = cache
        self.stats = CallStats()
        self.on_progress = on_progress

    def call(self, requests: list[Request]) -> list[Result]:
        ns = self.backend.cache_namespace
        keys = [r.cache_key(ns) for r in requests]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        results: list[Result | None] = [found.get(k) for k in keys]
        self.stats.requests += len(requests)
        # Identical requests in one batch are sent once.
        todo: dict[str, list[int]] = {}
        for i, (k, r) in enumerate(zip(keys, results, strict=True)):
            if r is None:
                todo.setdefault(k, []).append(i)
            else:
                self.stats.cache_hits += 1
                self.stats.cached_input_tokens += r.input_tokens
                self.stats.cached_output_tokens += r.output_tokens
        if self.on_progress and self.stats.cache_hits:
            self.on_progress(len(requests) - sum(len(v) for v in todo.values()))
        if todo:
            miss_keys = list(todo)
            miss_requests = [requests[todo[k][0]] for k in miss_keys]

            def on_result(j: int, result: Result) -> None:
                key = miss_keys[j]
                self.stats.calls += 1
                self.stats.input_tokens += result.input_tokens
                self.stats.output_tokens += result.output_tokens
                if result.ok:
                    if self.cache is not None:
                        self.cache.put(key, result, ns, miss_requests[j].model)
                else:
                    self.stats.errors[result.error] += 1
                for i in todo[key]:
                    results[i] = result
                if self.on_progress:
                    self.on_progress(len(todo[key]))

            self.backend.generate(miss_requests, on_result)
        return [
            r if r is not None else Result(error="no_result", error_detail="the backend returned nothing")
            for r in results
        ]
