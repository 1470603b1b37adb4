"""Model backends (a registry: ``BACKENDS``), the request cache and rate limiting.

Importing this package registers the built-in backends; SDKs are imported only when a backend runs.
"""

from cftdata.backends import (  # noqa: F401  (registration side effects)
    anthropic_batch,
    anthropic_messages,
    local_llama,
    openai_batch,
    openai_chat,
    vllm_offline,
)
from cftdata.backends.base import BACKENDS, Backend, Request, Result, make_backend

__all__ = ["BACKENDS", "Backend", "Request", "Result", "make_backend"]
