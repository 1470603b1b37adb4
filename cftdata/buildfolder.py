"""Publishing a build folder: the finished build in ``.staging/`` replaces the previous one by renames,
with a state that any interruption leaves recoverable.

A build writes everything under ``<out>/.staging/``. Publishing then

1. writes ``publish.json`` (the entries of the new build) into staging and renames ``.staging`` to
   ``.publish``: the commit point. From here on the new build is complete and wins;
2. moves the previous build's entries into ``.previous/`` (``manifest.json`` first);
3. moves the new entries from ``.publish/`` into the folder (``manifest.json`` last);
4. removes ``.publish/`` and ``.previous/``.

So ``manifest.json`` is in the folder only while the folder holds one whole build, old or new: a folder
with a manifest is never a mix. A kill at any step leaves ``.publish/`` (steps 2-3) or ``.previous/``
(step 4); :func:`finish_publish` completes the swap from any of these states and is idempotent. The next
build runs it under its lock before anything else, and readers (``cftdata status`` / ``inspect``) run it
when no build holds the folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cftdata import killpoints

STAGING = ".staging"
PUBLISH = ".publish"
PREVIOUS = ".previous"
#: Every entry a build publishes (the old build's entries are moved out even when the new one lacks them).
ENTRIES = ("manifest.json", "README.md", "data", "rejects.parquet", "dataset_info.json")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def commit(out: Path, entries: list[str]) -> None:
    """Make the complete build in ``<out>/.staging`` the one that wins (step 1), then swap it in."""
    staging = out / STAGING
    missing = [n for n in entries if not (staging / n).exists()]
    if missing:
        raise FileNotFoundError(f"cannot publish {out}: {missing} missing from {staging}")
    finish_publish(out)  # a swap left by an earlier kill completes first (it is older than this build)
    (staging / "publish.json").write_text(json.dumps({"entries": entries}))
    staging.rename(out / PUBLISH)
    killpoints.reached("publish")
    finish_publish(out)


def finish_publish(out: Path) -> bool:
    """Complete an interrupted publish in ``out`` (steps 2-4); True when there was one to complete."""
    pub, old = out / PUBLISH, out / PREVIOUS
    if not pub.is_dir():
        if old.exists():
            _remove(old)
            return True
        return False
    entries = json.loads((pub / "publish.json").read_text())["entries"]
    old.mkdir(exist_ok=True)
    for name in ENTRIES:  # manifest.json first: the folder stops claiming a complete build
        if (out / name).exists() and ((pub / name).exists() or name not in entries):
            _remove(old / name)
            (out / name).rename(old / name)
            killpoints.reached("swap")
    for name in sorted(entries, key=lambda n: n == "manifest.json"):  # manifest.json last
        if (pub / name).exists():
            (pub / name).rename(out / name)
            killpoints.reached("swap")
    pub.rename(old / PUBLISH)  # one rename: no half-deleted .publish/ is ever left
    _remove(old)
    return True
