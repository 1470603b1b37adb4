"""Reports on builds: ``cftdata inspect`` (an HTML page), ``cftdata diff`` (two builds) and ``cftdata status``.

Everything here reads what a build wrote (``manifest.json``, ``data/train-*.parquet``, ``rejects.parquet``,
``.staging/progress.json``) and never changes it. The click commands live in
:mod:`cftdata.report.commands`, which imports only click and the standard library at module level so
``cftdata --help`` stays instant; polars and matplotlib are imported when a command runs.
"""

from __future__ import annotations

__all__ = ["BuildFolder", "load_build"]


def __getattr__(name: str):  # lazy: ``from cftdata.report import load_build`` without importing polars
    if name in __all__:
        from cftdata.report import folder

        return getattr(folder, name)
    raise AttributeError(name)
