"""Files that let other trainers load a build as is.

``dataset_info.json`` is LLaMA-Factory's dataset registry entry (its documented format, data/README.md of
hiyouga/LLaMA-Factory): copy the entry into LLaMA-Factory's ``data/dataset_info.json`` (or point
``dataset_dir`` at the build folder) and train with ``dataset: <name>``.
"""

from __future__ import annotations

from typing import Any

from cftdata.formats import FORMATS

_SHAREGPT_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                  "assistant_tag": "assistant", "system_tag": "system"}


def llamafactory_entry(name: str, fmt: str) -> dict[str, Any] | None:
    """The ``dataset_info.json`` content for a build in output format ``fmt`` (None if it has no mapping)."""
    family = FORMATS.get(fmt).family if fmt in FORMATS else fmt
    if family == "alpaca":
        entry = {"file_name": "data", "formatting": "alpaca",
                 "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
    elif family == "messages":
        entry = {"file_name": "data", "formatting": "sharegpt", "columns": {"messages": "messages"},
                 "tags": _SHAREGPT_TAGS}
    else:
        return None
    return {name: entry}
