"""The canonical row every stage reads and writes, and the reject record for rows that fail.

Rows are plain dicts (cheap to build, to shard and to write to parquet). The keys below are the
contract between stages; stages add their own columns (``response``, ``critique``, ``verdict``...).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]

#: Keys every source row carries after mapping.
CANONICAL_KEYS = ("id", "source", "question", "reference_solution", "reference_answer", "response", "meta")


def stable_id(source: str, index: int | str) -> str:
    """A stable row id: 16 hex chars of sha256(source + original index). Reruns line up on it."""
    return hashlib.sha256(f"{source}\x1f{index}".encode()).hexdigest()[:16]


@dataclass
class Reject:
    """A row that failed a stage. Every failed row becomes one of these; nothing is dropped silently."""

    id: str
    stage: str
    reason: str
    detail: str = ""
    row: Row = field(default_factory=dict)

    def to_record(self) -> dict[str, str]:
        return {
            "id": self.id,
            "stage": self.stage,
            "reason": self.reason,
            "detail": self.detail,
            "row": json.dumps(self.row, ensure_ascii=False, default=str),
        }


@dataclass
class StageOutput:
    """What a stage returns for one shard: the rows that go on, and the ones it rejected."""

    rows: list[Row]
    rejects: list[Reject] = field(default_factory=list)

    @classmethod
    def concat(cls, parts: Iterable[StageOutput]) -> StageOutput:
        """One output of several (a stage that runs one model after another over the same shard)."""
        out = cls([])
        for part in parts:
            out.rows += part.rows
            out.rejects += part.rejects
        return out


def id_part(label: str) -> str:
    """A generator's or teacher's label as a piece of a row id (letters, digits, ``-``, ``_``; the rest ``_``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_") or "x"
