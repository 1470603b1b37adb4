"""Publishing builds to the Hugging Face Hub: ``cftdata push`` and :func:`push_build`.

* :mod:`cftdata.publish.push`: the upload (one commit per push), dry runs, error messages;
* :mod:`cftdata.publish.cardmerge`: merging one config's card into the repository's card;
* :mod:`cftdata.publish.redact`: keeping secrets out of the card and the uploaded manifest;
* :mod:`cftdata.publish.commands`: the click command (click and stdlib only at import time).

Names are imported lazily so that importing this package (the CLI does) costs nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PushError", "PushResult", "dry_run", "push_build"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cftdata.publish import push

        return getattr(push, name)
    raise AttributeError(f"module 'cftdata.publish' has no attribute {name!r}")
