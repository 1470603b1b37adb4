"""Where the heavy stages run: in this process (``run.executor: local``, the default) or as Ray Data jobs
(``run.executor: ray``, the optional ``ray`` extra) for the ``vllm`` generation backend and the verify stage.

Ray is imported only when the Ray executor is used; see :mod:`cftdata.executors.ray_data` and
``docs/scale-out.md``.
"""

from __future__ import annotations

EXECUTORS = ("local", "ray")

__all__ = ["EXECUTORS"]
