"""The stage contract: rows in -> rows + rejects out, one shard at a time.

A stage is a small class registered in :data:`STAGES`. The pipeline builds the enabled stages in
:data:`STAGE_ORDER`, feeds each shard through them in order, and collects rejects. A stage:

* declares the columns it adds (``columns``: name -> pyarrow type), so every shard has one schema;
* never drops a row silently: a row it cannot handle becomes a :class:`~cftdata.rows.Reject`;
* says how many rows come out per row in when nothing is rejected (:attr:`Stage.fanout`: ``n`` for a respond
  stage sampling ``n`` responses), so the pipeline checks ``in x fanout = out + rejected``;
* says the least shard size it wants (:attr:`Stage.min_shard_rows`);
* may start a shard's model calls ahead (:attr:`Stage.submits_ahead`, :meth:`Stage.submit`): the pipeline then
  starts every shard's calls before any shard waits for its answers (online and batch APIs);
* keeps whatever counters it wants to report in :meth:`summary` (goes to the manifest);
* may keep state across shards (dedup indexes do), but must bound it or say so in its docstring.

Stages call models only through ``ctx.models`` (cached callers; estimating ones in a dry run) and run
scale-out work only through ``ctx.executor.map``: they never know which executor runs, nor whether calls
are real.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from cftdata.registry import Registry
from cftdata.rows import Row, StageOutput

if TYPE_CHECKING:
    from cftdata.backends.caller import ModelLayer
    from cftdata.executors.base import Executor
    from cftdata.progress import Reporter
    from cftdata.recipe import Recipe


@dataclass
class BuildContext:
    """What every stage may use: the recipe, the model layer (cached callers), the executor (where scale-out
    work runs), the progress reporter and the output dir."""

    recipe: Recipe
    models: ModelLayer
    executor: Executor
    reporter: Reporter
    output_dir: Path


class Stage(ABC):
    """One step of the pipeline. Subclasses set ``name`` and ``columns`` and implement ``process``."""

    name: ClassVar[str]
    #: Columns this stage adds to rows (pool schema).
    columns: ClassVar[dict[str, pa.DataType]] = {}
    #: Whether the stage opens model callers when built (``cftdata check`` builds only these to find the
    #: recipe's endpoints).
    calls_models: ClassVar[bool] = False

    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx

    @property
    def fanout(self) -> int:
        """Rows out per row in, before rejects (1 for every stage but a sampling respond stage)."""
        return 1

    @property
    def min_shard_rows(self) -> int | None:
        """The least rows per shard this stage wants (None: any); the pipeline raises ``run.shard_size``."""
        return None

    @classmethod
    def enabled(cls, recipe: Recipe) -> bool:
        """Whether the recipe turns this stage on."""
        return True

    @abstractmethod
    def process(self, rows: list[Row]) -> StageOutput:
        """Handle one shard."""

    @property
    def submits_ahead(self) -> bool:
        """Whether :meth:`submit` starts this stage's model calls (an online or batch API) for a shard without
        waiting. The pipeline then submits every shard before any shard's :meth:`process` waits."""
        return False

    def submit(self, rows: list[Row]) -> None:  # noqa: B027 - optional hook
        """Start the work :meth:`process` will need for these rows, without waiting for it."""

    def config_hint(self, reason: str) -> str | None:
        """For a reject reason that, on every row, means a recipe mistake rather than bad rows (``no_response``
        with ``respond.mode: existing``...): what to set in the recipe. None: a per-row reason."""
        return None

    def summary(self) -> dict[str, Any]:
        """Stage-specific numbers for the manifest."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release backends, pools, files."""


STAGES: Registry[type[Stage]] = Registry("stage")

#: The order rows flow through the per-shard stages. Cheap filters run before paid model calls.
STAGE_ORDER: list[str] = ["dedup", "decontaminate", "respond", "verify", "critique", "verdict", "agreement", "panel", "refine"]


#: Rows a stage must have rejected, all for one configuration reason, before :class:`ConfigRejectGuard` stops.
GUARD_ROWS = 16


class ConfigRejectGuard:
    """Stops a build whose first rows at a stage are ALL rejected for one configuration reason.

    A stage names such reasons with :meth:`Stage.config_hint`. While no row has come out of a stage and every
    reject so far has the same configuration reason, the guard counts; at :data:`GUARD_ROWS` rows it raises a
    :class:`~cftdata.errors.RecipeError` naming the recipe key to set (exit 2). The stages run in order on
    each shard, so later (paid) stages never see those rows. One row out, or one other reason, and the guard
    stands down for that stage: per-row problems stay per-row rejects.
    """

    def __init__(self, rows: int = GUARD_ROWS) -> None:
        self.rows = rows
        self.seen: dict[str, int] = {}
        self.reasons: dict[str, set[str]] = {}
        self.done: set[str] = set()

    def observe(self, stage: Stage, rows_in: int, out: StageOutput) -> None:
        name = stage.name
        if name in self.done or rows_in == 0:
            return
        reasons = self.reasons.setdefault(name, set())
        reasons.update(r.reason for r in out.rejects)
        if out.rows or len(reasons) != 1 or stage.config_hint(next(iter(reasons))) is None:
            self.done.add(name)
            return
        self.seen[name] = self.seen.get(name, 0) + rows_in
        if self.seen[name] >= self.rows:
            from cftdata.errors import RecipeError

            reason = next(iter(reasons))
            detail = out.rejects[0].detail
            raise RecipeError(
                f"Stage {name!r} rejected every one of the first {self.seen[name]} rows as {reason!r} ({detail}): "
                f"that is the recipe, not the rows. {stage.config_hint(reason)} Stopped before any later stage "
                f"(no critique was requested for these rows); nothing was published.")
