"""The client protocol every model backend implements, and the plain types it exchanges.

A backend takes fully rendered :class:`Request` objects and reports one :class:`Result` per request
through a callback as soon as it has it (so the cache stores it at once, and Ctrl-C or a crash loses
nothing finished). Async HTTP clients, batch APIs and in-process engines all fit this shape.
Backends never raise for a single failed request: the failure is a Result with ``error`` set.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from cftdata.errors import BackendConfigError
from cftdata.recipe import ModelSpec
from cftdata.registry import Registry


@dataclass(frozen=True)
class Request:
    """One chat request, rendered. ``sample`` tells apart repeated samples of the same prompt."""

    model: str
    messages: tuple[tuple[str, str], ...]
    params: tuple[tuple[str, Any], ...] = ()
    sample: int = 0

    @classmethod
    def make(cls, model: str, messages: list[dict[str, str]], params: dict[str, Any], sample: int = 0) -> Request:
        return cls(
            model=model,
            messages=tuple((m["role"], m["content"]) for m in messages),
            params=tuple(sorted(params.items())),
            sample=sample,
        )

    @property
    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def cache_key(self, namespace: str) -> str:
        """sha256 of the canonical JSON of everything that determines the answer."""
        body = {
            "ns": namespace,
            "model": self.model,
            "messages": self.messages,
            "params": self.params,
            "sample": self.sample,
        }
        blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Result:
    """What came back for one request. ``error`` is a short machine-readable class, or None."""

    text: str | None = None
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    error_detail: str = ""
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("cached")
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_json(cls, blob: str) -> Result:
        return cls(**json.loads(blob), cached=True)


OnResult = Callable[[int, Result], None]


class Backend(ABC):
    """A model behind some API. Subclasses register themselves in :data:`BACKENDS`."""

    name: ClassVar[str]
    #: Whether the backend is billed per token (used for cost estimates).
    paid: ClassVar[bool] = False
    #: Rows per shard this backend wants at least (batch APIs: each call waits for whole batches, so a
    #: shard should fill one). The pipeline raises ``run.shard_size`` to it.
    min_shard_rows: ClassVar[int | None] = None

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    @property
    def cache_namespace(self) -> str:
        """Requests with the same namespace and content give interchangeable answers."""
        return f"{self.name}:{self.spec.base_url or ''}"

    @abstractmethod
    def generate(self, requests: Sequence[Request], on_result: OnResult) -> None:
        """Run every request; call ``on_result(index, result)`` once per request as it finishes."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients, processes, models."""

    def stats(self) -> dict[str, Any]:
        """Counters for the manifest (retries, 429s...)."""
        return {}


BACKENDS: Registry[type[Backend]] = Registry("backend")


def api_key_from_env(spec: ModelSpec, default_env: str | None, required: bool) -> str | None:
    """Read the API key from the environment variable the recipe names. Never logs the value."""
    env = spec.api_key_env or default_env
    if env is None:
        return None
    key = os.environ.get(env)
    if not key and required:
        raise BackendConfigError(
            f"Backend {spec.backend!r} (model {spec.model!r}) needs an API key in the environment variable "
            f"{env}, which is not set. Export it, or name another variable with api_key_env."
        )
    return key or None


def make_backend(spec: ModelSpec) -> Backend:
    """Instantiate the backend a recipe section names."""
    import cftdata.backends  # noqa: F401  (registers the built-in backends)

    return BACKENDS.get(spec.backend)(spec)
