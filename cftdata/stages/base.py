"""The stage contract: rows in -> rows + rejects out, one shard at a time.

A stage is a small class registered in :data:`STAGES`. The pipeline builds the enabled stages in
:data:`STAGE_ORDER`, feeds each shard through them in order, and collects rejects. A stage:

* declares the columns it adds (``columns``: name -> pyarrow type), so every shard has one schema;
* never drops a row silently: a row it cannot handle becomes a :class:`~cftdata.rows.Reject`;
* keeps whatever counters it wants to report in :meth:`summary` (goes to the manifest);
* may keep state across shards (dedup indexes do), but must bound it or say so in its docstring.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from cftdata.registry import Registry
from cftdata.rows import Row, StageOutput

if TYPE_CHECKING:
    from cftdata.backends.cache import RequestCache
    from cftdata.progress import Reporter
    from cftdata.recipe import Recipe


@dataclass
class BuildContext:
    """What every stage may use: the recipe, the request cache, the progress reporter, the output dir."""

    recipe: Recipe
    cache: RequestCache | None
    reporter: Reporter
    output_dir: Path
    dry_run: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


class Stage(ABC):
    """One step of the pipeline. Subclasses set ``name`` and ``columns`` and implement ``process``."""

    name: ClassVar[str]
    #: Columns this stage adds to rows (pool schema).
    columns: ClassVar[dict[str, pa.DataType]] = {}

    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx

    @classmethod
    def enabled(cls, recipe: Recipe) -> bool:
        """Whether the recipe turns this stage on."""
        return True

    @abstractmethod
    def process(self, rows: list[Row]) -> StageOutput:
        """Handle one shard."""

    def summary(self) -> dict[str, Any]:
        """Stage-specific numbers for the manifest."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release backends, pools, files."""


STAGES: Registry[type[Stage]] = Registry("stage")

#: The order rows flow through the per-shard stages. Cheap filters run before paid model calls.
STAGE_ORDER: list[str] = ["dedup", "decontaminate", "respond", "verify", "critique", "verdict", "agreement"]
