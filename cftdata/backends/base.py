"""The client protocol every model backend implements, and the plain types it exchanges.

A backend takes fully rendered :class:`Request` objects and reports one :class:`Result` per request
through a callback as soon as it has it (so the cache stores it at once, and Ctrl-C or a crash loses
nothing finished). Async HTTP clients, batch APIs and in-process engines all fit this shape.
Backends never raise for a single failed request: the failure is a Result with ``error`` set.

A request is one of two kinds: chat ``messages`` (rendered by the model's own chat template, what every
API takes), or a raw ``prompt`` string sent as it is (what the paper's evaluation needs: its literal
Qwen ChatML prompt, whatever the model's template). Backends that can take raw prompts say so with
:attr:`Backend.raw_prompts`; callers check it before any request is made.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from cftdata.errors import BackendConfigError
from cftdata.recipe import ModelSpec
from cftdata.registry import Registry

if TYPE_CHECKING:
    from cftdata.backends.breaker import CircuitBreaker


@dataclass(frozen=True)
class Request:
    """One rendered request: chat ``messages``, or a raw ``prompt`` (then ``messages`` is empty).
    ``sample`` tells apart repeated samples of the same prompt."""

    model: str
    messages: tuple[tuple[str, str], ...]
    params: tuple[tuple[str, Any], ...] = ()
    sample: int = 0
    prompt: str | None = None

    @classmethod
    def make(cls, model: str, messages: list[dict[str, str]], params: dict[str, Any], sample: int = 0) -> Request:
        """A chat request (the model's chat template renders the messages)."""
        return cls(
            model=model,
            messages=tuple((m["role"], m["content"]) for m in messages),
            params=tuple(sorted(params.items())),
            sample=sample,
        )

    @classmethod
    def raw(cls, model: str, prompt: str, params: dict[str, Any], sample: int = 0) -> Request:
        """A raw-prompt request: ``prompt`` goes to the model as it is, no chat template applied."""
        return cls(model=model, messages=(), params=tuple(sorted(params.items())), sample=sample, prompt=prompt)

    @property
    def is_raw(self) -> bool:
        return self.prompt is not None

    @property
    def text(self) -> str:
        """Everything the model reads, as one string (for token estimates)."""
        return self.prompt if self.prompt is not None else "\n".join(c for _, c in self.messages)

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
        if self.prompt is not None:  # chat requests keep the keys they always had
            body["prompt"] = self.prompt
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
        d = {"text": self.text, "finish_reason": self.finish_reason, "input_tokens": self.input_tokens,
             "output_tokens": self.output_tokens, "error": self.error, "error_detail": self.error_detail,
             "extra": self.extra}
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_json(cls, blob: str) -> Result:
        return cls(**json.loads(blob), cached=True)


OnResult = Callable[[int, Result], None]


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first stop string (the stop string itself removed)."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if 0 <= i < cut:
            cut = i
    return text[:cut]


class Backend(ABC):
    """A model behind some API. Subclasses register themselves in :data:`BACKENDS`."""

    name: ClassVar[str]
    #: Whether the backend is billed per token (used for cost estimates).
    paid: ClassVar[bool] = False
    #: Price factor of this backend's tokens (batch APIs bill half).
    discount: ClassVar[float] = 1.0
    #: Rows per shard this backend wants at least (batch APIs: each call waits for whole batches, so a
    #: shard should fill one). The pipeline raises ``run.shard_size`` to it.
    min_shard_rows: ClassVar[int | None] = None
    #: Whether the backend takes raw-prompt requests (:meth:`Request.raw`), not only chat messages.
    raw_prompts: ClassVar[bool] = False
    #: Whether the backend calls :attr:`on_send` with each request as its first attempt goes out (online
    #: backends); the ModelCaller then logs it, so that a run after a kill knows what was in flight.
    reports_sends: ClassVar[bool] = False
    on_send: Callable[[Request], None] | None = None
    #: An in-process engine that a scale-out executor may run on its workers (one engine per worker),
    #: built there from the spec: it must need nothing but the spec.
    scale_out: ClassVar[bool] = False
    #: Whether the engine needs an accelerator (GPU) on the worker that runs it.
    accelerator: ClassVar[bool] = False
    #: The engine does not give its memory back when closed (vLLM): run one model per process when
    #: several models are evaluated one after the other.
    process_per_model: ClassVar[bool] = False
    #: Whether :meth:`submit` starts work that :meth:`generate` later collects (online and batch APIs):
    #: the pipeline then starts every shard's calls before any shard waits (see ``pipeline.Build._map_phase``).
    submits_ahead: ClassVar[bool] = False
    #: The environment variable holding the API key when the recipe's ``api_key_env`` names none.
    key_env_default: ClassVar[str | None] = None
    #: Whether the backend reports every attempt to its :attr:`breaker` itself (online APIs: a row may take
    #: several attempts); otherwise the caller records each row's result.
    records_attempts: ClassVar[bool] = False
    #: Set by the model layer: counts systemic failures across rows and stops the build when they repeat.
    breaker: CircuitBreaker | None = None

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    @property
    def address(self) -> str:
        """Where requests go, for messages: the base URL, or the model (file) of an in-process engine."""
        return self.spec.base_url or self.spec.model

    @property
    def key_env(self) -> str | None:
        """The environment variable the API key is read from (never the key itself)."""
        return self.spec.api_key_env or self.key_env_default

    def probe(self, spend: bool) -> str:
        """Check that this backend can work, with one minimal request (``spend``) or, where the provider
        allows, without spending anything (a models list). Return what was checked; raise
        :class:`~cftdata.errors.EndpointError` or :class:`~cftdata.errors.BackendConfigError` naming the
        problem. Default: nothing to check before the first request."""
        return "nothing to check before the first request"

    @property
    def cache_namespace(self) -> str:
        """Requests with the same namespace and content give interchangeable answers."""
        return f"{self.name}:{self.spec.base_url or ''}"

    @abstractmethod
    def generate(self, requests: Sequence[Request], on_result: OnResult) -> None:
        """Run every request; call ``on_result(index, result)`` once per request as it finishes."""

    def check(self, requests: Sequence[Request]) -> None:  # noqa: B027 - optional hook
        """Raise :class:`~cftdata.errors.BackendConfigError` for requests this backend cannot take (unknown
        sampling parameters...), before any is sent."""

    def submit(self, requests: Sequence[Request]) -> None:  # noqa: B027 - optional hook
        """Start ``requests`` without waiting (``submits_ahead`` backends); a later :meth:`generate` of the
        same requests collects them. The work must be persisted, so that a rerun after a kill resumes it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients, processes, models."""

    def stats(self) -> dict[str, Any]:
        """Counters for the manifest (retries, 429s...)."""
        return {}

    @classmethod
    def can_run(cls, model: str) -> bool:
        """Whether this backend can run ``model`` here, with what is installed (for ``backend: auto``)."""
        return False


BACKENDS: Registry[type[Backend]] = Registry("backend")


#: Set while backends are built for an estimate (a dry run): a missing API key is noted, not an error.
_missing_keys: ContextVar[list[str] | None] = ContextVar("cftdata_missing_keys", default=None)


@contextmanager
def keys_optional() -> Iterator[list[str]]:
    """Build backends without their API keys (nothing will be sent); yields the variables found unset."""
    missing: list[str] = []
    token = _missing_keys.set(missing)
    try:
        yield missing
    finally:
        _missing_keys.reset(token)


def api_key_from_env(spec: ModelSpec, default_env: str | None, required: bool) -> str | None:
    """Read the API key from the environment variable the recipe names. Never logs the value."""
    env = spec.api_key_env or default_env
    if env is None:
        return None
    key = os.environ.get(env)
    if not key and required:
        missing = _missing_keys.get()
        if missing is not None:
            missing.append(env)
            return None
        raise BackendConfigError(
            f"Backend {spec.backend!r} (model {spec.model!r}) needs an API key in the environment variable "
            f"{env}, which is not set. Export it, or name another variable with api_key_env."
        )
    return key or None
