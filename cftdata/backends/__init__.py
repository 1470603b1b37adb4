"""The model layer: backends (a registry: ``BACKENDS``), the request cache, the cached caller, pricing.

Every model call of the project goes through here: the build's respond and critique stages, evaluation and
checkpoint selection. Importing this package registers the built-in backends; SDKs and engines are imported
only when a backend runs.
"""

from cftdata.backends import (  # noqa: F401  (registration side effects)
    anthropic_batch,
    anthropic_messages,
    local_llama,
    openai_batch,
    openai_chat,
    transformers_local,
    vllm_offline,
)
from cftdata.backends.base import BACKENDS, Backend, Request, Result
from cftdata.errors import BackendConfigError
from cftdata.recipe import ModelSpec

#: The backends ``auto`` tries, in order, for a model run in this process (``eval``, ``select-checkpoint``).
AUTO_ORDER = ("local", "vllm", "transformers")

__all__ = ["AUTO_ORDER", "BACKENDS", "Backend", "Request", "Result", "make_backend", "resolve_backend"]


def make_backend(spec: ModelSpec) -> Backend:
    """Instantiate the backend a recipe section names."""
    return BACKENDS.get(spec.backend)(spec)


def resolve_backend(model: str, backend: str = "auto") -> str:
    """``backend`` itself (checked against the registry), or for ``auto`` the first of :data:`AUTO_ORDER`
    that can run ``model`` here (a GGUF on llama.cpp, vLLM on a CUDA machine, else transformers)."""
    if backend != "auto":
        BACKENDS.get(backend)
        return backend
    for name in AUTO_ORDER:
        if BACKENDS.get(name).can_run(model):
            return name
    raise BackendConfigError(f"No backend can run {model!r} here: install the train extra (transformers), the "
                             "local extra (llama.cpp, for .gguf files) or vLLM on a GPU machine.")
