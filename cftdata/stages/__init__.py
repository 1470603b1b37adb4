"""Pipeline stages (a registry: ``STAGES``), run in ``STAGE_ORDER`` over shards of rows."""

from cftdata.stages import (  # noqa: F401  (registration side effects)
    agreement,
    critique,
    decontaminate,
    dedup,
    panel,
    refine,
    respond,
    verdict,
    verify,
)
from cftdata.stages.base import STAGE_ORDER, STAGES, BuildContext, Stage

__all__ = ["STAGES", "STAGE_ORDER", "BuildContext", "Stage"]
