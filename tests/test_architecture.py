"""The layout is the architecture: checked on cftdata's real import graph (every import, lazy ones inside
functions and typing-only ones included), built from the source with :mod:`ast`.

* no import cycles between cftdata's modules (the root package ``cftdata`` is a lazy facade for users,
  ``from cftdata import __version__`` is not a dependency on it);
* the data pipeline never imports the trainer (``cftdata.train``), only the CLI registers its commands;
* the model layer (``cftdata.backends``) knows no stage, pipeline, executor or trainer;
* stages know no executor but its contract (``cftdata.executors.base``), executors know no stage;
* the executor is chosen in one place: ``run.executor`` is read only by :func:`cftdata.executors.make_executor`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "cftdata"


def _module_names() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


MODULES = _module_names()


def _target(name: str) -> str | None:
    """The cftdata module an imported name lives in (``cftdata.a.b.func`` -> ``cftdata.a.b``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            names = [f"{base}.{a.name}" for a in node.names] or [base]
        else:
            continue
        for n in names:
            if n.startswith("cftdata"):
                t = _target(n)
                if t and t != module and t != "cftdata":
                    out.add(t)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return out


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _importers(package: str) -> dict[str, set[str]]:
    return {m: {t for t in deps if _in(t, package)} for m, deps in GRAPH.items()
            if not _in(m, package) and any(_in(t, package) for t in deps)}


def test_the_graph_is_the_real_one():
    """Guards the checker itself: known edges are found (lazy imports inside functions included)."""
    assert "cftdata.backends.caller" in GRAPH["cftdata.stages.model_calls"]
    assert "cftdata.stages.select" in GRAPH["cftdata.pipeline"]  # imported inside a method
    assert "cftdata.train.commands" in GRAPH["cftdata.cli"]
    assert len(GRAPH) > 60


def test_no_import_cycles():
    assert _cycles() == []


def test_the_data_pipeline_never_imports_the_trainer():
    assert set(_importers("cftdata.train")) <= {"cftdata.cli"}


@pytest.mark.parametrize("layer, forbidden", [
    ("cftdata.backends", ["cftdata.stages", "cftdata.pipeline", "cftdata.executors", "cftdata.train",
                          "cftdata.dryrun", "cftdata.cli", "cftdata.sources"]),
    ("cftdata.stages", ["cftdata.executors.local", "cftdata.executors.ray_data", "cftdata.pipeline",
                        "cftdata.dryrun", "cftdata.cli", "cftdata.train"]),
    ("cftdata.executors", ["cftdata.stages", "cftdata.pipeline", "cftdata.sources", "cftdata.train"]),
    ("cftdata.quality", ["cftdata.stages", "cftdata.pipeline", "cftdata.backends", "cftdata.executors"]),
    ("cftdata.verify", ["cftdata.stages", "cftdata.pipeline", "cftdata.backends", "cftdata.executors"]),
])
def test_layers_import_downward_only(layer, forbidden):
    bad = sorted((m, t) for m, deps in GRAPH.items() if _in(m, layer) for t in deps
                 if any(_in(t, f) for f in forbidden))
    assert bad == []


def test_the_executor_is_chosen_in_one_place():
    readers = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
                     if ".executor ==" in p.read_text() or ".executor !=" in p.read_text()
                     or "run.executor)" in p.read_text())
    assert readers == ["cftdata/executors/__init__.py"]
    ray_importers = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
                           if "import ray" in p.read_text())
    assert ray_importers == ["cftdata/executors/ray_data.py"]


def test_select_names_one_thing():
    """Three modules were named ``select``: the select stage keeps the name; selection strategies are
    ``quality/selectors.py``, checkpoint selection ``train/checkpoints.py``."""
    assert sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("select*.py")) == [
        "cftdata/quality/selectors.py", "cftdata/stages/select.py"]
