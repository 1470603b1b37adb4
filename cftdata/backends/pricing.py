"""Dollar cost of model calls: a price table (cftdata/data/prices.yaml), recipe overrides, batch discount."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml

from cftdata.errors import RecipeError
from cftdata.recipe import ModelSpec


@lru_cache(maxsize=1)
def price_table() -> dict[str, dict[str, float]]:
    return yaml.safe_load(resources.files("cftdata").joinpath("data/prices.yaml").read_text())


def price_for(spec: ModelSpec) -> tuple[float, float] | None:
    """(input, output) dollars per million tokens, or None when unknown / free (local models)."""
    override = spec.options.get("price")
    if override is not None:
        try:
            return float(override["input"]), float(override["output"])
        except (TypeError, KeyError, ValueError):
            raise RecipeError(
                f"{spec.backend}:{spec.model}: options.price must be a mapping {{input: $/M, output: $/M}}."
            ) from None
    from cftdata.backends import BACKENDS

    if spec.backend in BACKENDS and not BACKENDS.get(spec.backend).paid:
        return None
    p = price_table().get(spec.model)
    return (p["input"], p["output"]) if p else None


def discount_for(spec: ModelSpec) -> float:
    from cftdata.backends import BACKENDS

    return float(BACKENDS.get(spec.backend).discount) if spec.backend in BACKENDS else 1.0


def is_paid(spec: ModelSpec) -> bool:
    """Whether calls to this spec's backend are billed (an unknown price then makes a cost estimate incomplete)."""
    from cftdata.backends import BACKENDS

    return spec.backend in BACKENDS and BACKENDS.get(spec.backend).paid


def cost_usd(spec: ModelSpec, input_tokens: int, output_tokens: int) -> float | None:
    price = price_for(spec)
    if price is None:
        return None
    return round((input_tokens * price[0] + output_tokens * price[1]) / 1e6 * discount_for(spec), 6)
