"""Find and read a build folder: the finished build (``manifest.json``) and/or a running one (``.staging/``).

Only the standard library is used here, so ``cftdata status`` answers fast even on a huge build.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cftdata.errors import CftdataError


@dataclass
class BuildFolder:
    """What is on disk for one build folder (``outputs/<name>/``)."""

    path: Path
    manifest: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    staging: Path | None = None
    data_files: list[Path] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """A manifest is there (a finished build; a rebuild may be running on top of it)."""
        return self.manifest is not None

    @property
    def running(self) -> bool:
        """A ``.staging/`` folder is there: a build is running, or was interrupted."""
        return self.staging is not None

    @property
    def rejects_file(self) -> Path | None:
        p = self.path / "rejects.parquet"
        return p if p.is_file() else None

    @property
    def name(self) -> str:
        if self.manifest:
            return str(self.manifest.get("recipe", {}).get("name") or self.path.name)
        return self.path.name

    def require_finished(self, command: str) -> dict[str, Any]:
        """The manifest, or a user error saying why there is none yet."""
        if self.manifest is not None:
            return self.manifest
        raise CftdataError(
            f"{self.path} has no manifest.json yet: the build is running or was interrupted, so there is "
            f"nothing to {command}. See what is done with `cftdata status {self.path}`; rerun the same "
            "`cftdata build` command to resume it."
        )


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CftdataError(f"cannot read the {what} {path}: {e}. Is this folder a cftdata build "
                           "(outputs/<name>/ written by `cftdata build`)?") from None
    if not isinstance(data, dict):
        raise CftdataError(f"the {what} {path} is not a JSON object; this folder does not look like a "
                           "cftdata build.")
    return data


def _repair_publish(p: Path) -> None:
    """Complete a publish that a kill interrupted (:mod:`cftdata.buildfolder`), unless a build holds the folder."""
    from cftdata.buildfolder import PREVIOUS, PUBLISH, finish_publish
    from cftdata.buildlock import BuildLock, BuildLockedError

    if not ((p / PUBLISH).exists() or (p / PREVIOUS).exists()):
        return
    try:
        with BuildLock(p):
            finish_publish(p)
    except (BuildLockedError, OSError):
        pass  # a build is running (it completes the swap itself), or the folder is read-only


def load_build(path: str | Path) -> BuildFolder:
    """Read a build folder; raise :class:`~cftdata.errors.CftdataError` when it is not one."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CftdataError(f"no such folder: {p}. Pass the output folder of a build, e.g. outputs/<name> "
                           "(the recipe's output.dir).")
    if not p.is_dir():
        raise CftdataError(f"{p} is a file, not a build folder. Pass the output folder of a build, e.g. "
                           "outputs/<name> (the recipe's output.dir).")
    _repair_publish(p)
    folder = BuildFolder(path=p)
    manifest = p / "manifest.json"
    if manifest.is_file():
        folder.manifest = _read_json(manifest, "manifest")
        if "counts" not in folder.manifest or "recipe" not in folder.manifest:
            raise CftdataError(f"{manifest} has no counts or recipe: it was not written by `cftdata build`.")
        folder.data_files = sorted((p / "data").glob("*.parquet"))
    staging = p / ".staging"
    if staging.is_dir():
        folder.staging = staging
        prog = staging / "progress.json"
        folder.progress = _read_json(prog, "progress file") if prog.is_file() else {}
    if folder.manifest is None and folder.staging is None:
        raise CftdataError(
            f"{p} is not a cftdata build: it has neither manifest.json (a finished build) nor .staging/ "
            "(a running or interrupted one). Pass the output folder of a build, e.g. outputs/<name>."
        )
    return folder


def resume_command(info: dict[str, Any] | None) -> str | None:
    """The ``cftdata build`` command line recorded in a manifest or progress file (None if unknown)."""
    if not info or not info.get("recipe_file"):
        return None
    parts = ["cftdata", "build", str(info["recipe_file"])]
    for ov in info.get("overrides") or []:
        parts += ["--set", str(ov)]
    for opt in ("limit", "sample"):
        if info.get(opt) is not None:
            parts += [f"--{opt}", str(info[opt])]
    return shlex.join(parts)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "l": [1, {"x": 2}]}`` -> ``{"a.b": 1, "l[0]": 1, "l[1].x": 2}`` (empty containers kept)."""
    out: dict[str, Any] = {}
    if isinstance(data, dict) and data:
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(data, list) and data:
        for i, v in enumerate(data):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = data
    return out
