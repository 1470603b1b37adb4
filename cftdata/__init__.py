"""cftdata: build critique fine-tuning (CFT) datasets from YAML recipes.

The public API is small and lazy (heavy libraries load only when used)::

    from cftdata import load_recipe, build
    recipe = load_recipe("recipes/quickstart.yaml", overrides=["source.limit=4"])
    result = build(recipe)
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

# Bounded memory: pyarrow's default allocator (mimalloc) keeps tens of MB of freed pages for the life of
# the process; the system allocator gives them back. Read once, when pyarrow loads: set it before.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

__all__ = ["__version__", "build", "load_recipe"]


def __getattr__(name: str):
    if name == "load_recipe":
        from cftdata.recipe import load_recipe

        return load_recipe
    if name == "build":
        from cftdata.pipeline import build

        return build
    raise AttributeError(name)
