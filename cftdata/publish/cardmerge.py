"""Merge a build's dataset card into the card already in a repository (several builds = named configs).

A repository can hold several builds as named configs (like ``WebInstruct-CFT-4K``, ``-50K``,
``-600K``). Pushing one config must not drop the others, so the new card is merged into the existing
one:

* metadata: the ``configs`` entry of the pushed config is replaced (or appended), the other entries are
  kept as they are; list fields (``language``, ``task_categories``, ``tags``) become the ordered union;
  ``license`` becomes the list of both when they differ; ``size_categories`` is the larger of the two
  while other configs remain; a ``dataset_info`` entry of the pushed config (features written by another
  tool for the old data) is dropped; ``pretty_name`` and any other key already in the card are kept;
* body: the section of the pushed config (between its ``<!-- cftdata:config NAME:start/end -->``
  markers) replaces the old one, or is appended; the rest of the body (other configs, anything written
  by hand) is kept.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from cftdata.card import SIZE_CATEGORIES, section_markers

_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)(?:\r?\n)?^---[ \t]*(?:\r?\n|\Z)", re.DOTALL | re.MULTILINE)


class CardError(ValueError):
    """The existing card's YAML metadata cannot be read."""


def split_card(text: str) -> tuple[dict[str, Any], str]:
    """(metadata, body) of a README; a card without a YAML block has empty metadata."""
    m = _FRONT.match(text)
    if not m:
        return {}, text
    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError as e:
        raise CardError(f"the YAML metadata block of the existing README.md is not valid YAML ({e})") from None
    if not isinstance(meta, dict):
        raise CardError("the YAML metadata block of the existing README.md is not a mapping")
    return meta, text[m.end():]


def join_card(meta: dict[str, Any], body: str) -> str:
    """A README from metadata and body."""
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n" + body


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _union(a: Any, b: Any) -> list[Any]:
    out: list[Any] = []
    for x in _as_list(a) + _as_list(b):
        if x not in out:
            out.append(x)
    return out


def _size_rank(label: Any) -> int:
    return SIZE_CATEGORIES.index(label) if label in SIZE_CATEGORIES else -1


def config_names(meta: dict[str, Any]) -> list[str]:
    """The config names declared in card metadata."""
    return [c.get("config_name", "default") for c in _as_list(meta.get("configs")) if isinstance(c, dict)]


def merge_metadata(old: dict[str, Any], new: dict[str, Any], config: str) -> dict[str, Any]:
    """Existing metadata updated with one config's new metadata (see the module doc)."""
    out = dict(old)
    new_entry = next(c for c in new["configs"] if c.get("config_name") == config)
    configs = [c for c in _as_list(old.get("configs")) if isinstance(c, dict)]
    others = [c for c in configs if c.get("config_name", "default") != config]
    for i, c in enumerate(configs):
        if c.get("config_name", "default") == config:
            configs[i] = new_entry
            break
    else:
        configs.append(new_entry)
    for key, value in new.items():
        if key == "configs":
            continue
        if key not in out or out[key] in (None, "", []):
            out[key] = value
        elif key in ("language", "task_categories", "tags"):
            out[key] = _union(out[key], value)
        elif key == "license":
            lic = _union(out[key], value)
            out[key] = lic[0] if len(lic) == 1 else lic
        elif key == "size_categories":
            old_size = max(_as_list(out[key]), key=_size_rank, default=None)
            new_size = _as_list(value)[0]
            out[key] = [max(old_size, new_size, key=_size_rank) if others else new_size]
    out["configs"] = configs
    _drop_dataset_info(out, config)
    return out


def _drop_dataset_info(meta: dict[str, Any], config: str) -> None:
    """Remove ``dataset_info`` (features, sizes) recorded for ``config`` by another tool: it described the old
    data, and ``datasets`` would cast the new files to those features."""
    info = meta.get("dataset_info")
    if isinstance(info, dict) and info.get("config_name", "default") == config:
        del meta["dataset_info"]
    elif isinstance(info, list):
        kept = [i for i in info if not (isinstance(i, dict) and i.get("config_name", "default") == config)]
        if kept:
            meta["dataset_info"] = kept
        else:
            del meta["dataset_info"]


def extract_section(body: str, config: str) -> str | None:
    """The marked section of ``config`` in a card body (markers included), or None."""
    start, end = section_markers(config)
    i = body.find(start)
    j = body.find(end, i + 1) if i >= 0 else -1
    return body[i:j + len(end)] if i >= 0 and j >= 0 else None


def merge_body(old: str, new_section: str, config: str) -> str:
    """The existing body with ``config``'s section replaced by ``new_section`` (or appended)."""
    current = extract_section(old, config)
    if current is not None:
        return old.replace(current, new_section, 1)
    return old.rstrip("\n") + "\n\n" + new_section + "\n"


def merge_card(existing: str | None, new: str, config: str) -> str:
    """The card to upload: ``new`` (the card of one build published as ``config``) merged into ``existing``
    (the repository's README, None when it has none)."""
    if existing is None or not existing.strip():
        return new
    old_meta, old_body = split_card(existing)
    new_meta, new_body = split_card(new)
    section = extract_section(new_body, config)
    if section is None:  # pragma: no cover - render_card always marks the section
        raise CardError(f"the new card has no section for config {config!r}")
    return join_card(merge_metadata(old_meta, new_meta, config), merge_body(old_body, section, config))
