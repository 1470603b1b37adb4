"""Model backends (a registry: ``BACKENDS``), the request cache and rate limiting.

Importing this package registers the built-in backends; SDKs are imported only when a backend runs.
"""

from cftdata.backends import local_llama, openai_chat  # noqa: F401  (registration side effects)
from cftdata.backends.base import BACKENDS, Backend, Request, Result, make_backend

__all__ = ["BACKENDS", "Backend", "Request", "Result", "make_backend"]
