"""One build per output folder: an OS lock (``flock``) on ``<output>/.cftdata-build.lock``.

The lock file holds who owns it (pid, host, recipe, start time) for the message a second build prints;
the kernel's ``flock`` is the only truth about whether a build is running. A build killed with ``kill -9``
(or a machine that lost power) leaves the file but not the lock: the kernel released it when the process
died, so the next build takes it over and overwrites the stale details. The file is removed when the
build ends; a process that locked a file unlinked under it checks the inode and tries again.

``flock`` is advisory and per machine: two machines writing one folder on a network file system are not
serialised (NFS may emulate it); the lock holds the hostname so the message says where a build runs.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from cftdata.errors import CftdataError

LOCK_NAME = ".cftdata-build.lock"
#: How long a new build waits for the build child of a killed `cftdata` process to die and release the lock.
ORPHAN_GRACE_S = 10.0


class BuildLockedError(CftdataError):
    """Another build is writing the same output folder."""


def _owner(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 65536, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


class BuildLock:
    """The exclusive right to write one output folder. ``with BuildLock(folder, recipe_file): ...``

    ``previous`` is set when this build took over the lock file of a build that died without releasing
    it (its details: pid, recipe, started)."""

    def __init__(self, folder: Path, recipe_file: str | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.recipe_file = recipe_file
        self.previous: dict[str, Any] | None = None
        self._fd: int | None = None

    def acquire(self) -> BuildLock:
        """Take the lock or raise :class:`BuildLockedError` at once (waits only, up to ``ORPHAN_GRACE_S``, for the
        dying build child of a killed `cftdata` process)."""
        if self.folder.exists() and not self.folder.is_dir():
            raise CftdataError(f"output.dir {self.folder} is an existing file, not a folder: point output.dir at a "
                               "folder (or remove the file).")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise CftdataError(f"output.dir {self.folder} cannot be created: a file is in its path where a folder "
                               "should be.") from None
        orphan_deadline: float | None = None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                owner = _owner(fd)
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if self._orphaned(owner):
                    # The `cftdata` process was killed; its build child dies with it (PDEATHSIG) a moment
                    # later and the kernel releases the lock then: wait for that, briefly.
                    orphan_deadline = orphan_deadline or time.monotonic() + ORPHAN_GRACE_S
                    if time.monotonic() < orphan_deadline:
                        time.sleep(0.05)
                        continue
                raise BuildLockedError(self._busy_message(owner)) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file between our open and our lock: lock the new one
        stale = _owner(fd)
        if stale.get("pid"):
            self.previous = stale
        # The pid a user sees and would stop: the `cftdata` process (the supervisor), not its build child.
        pid = int(os.environ.get("CFTDATA_SUPERVISOR_PID") or os.getpid())
        info = {"pid": pid, "build_pid": os.getpid(), "host": socket.gethostname(), "recipe": self.recipe_file,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "started_unix": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    @staticmethod
    def _orphaned(owner: dict[str, Any]) -> bool:
        """The lock's `cftdata` process is gone on this host while a process it started still holds the lock."""
        pid = owner.get("pid")
        return owner.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)

    def _busy_message(self, owner: dict[str, Any]) -> str:
        pid = owner.get("pid", "?")
        host = owner.get("host")
        where = f"pid {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")
        recipe = owner.get("recipe") or "a recipe given through the Python API"
        started = owner.get("started", "an unknown time")
        if self._orphaned(owner):
            where += " (its process is gone, but a process it started still holds the lock)"
        return (f"another build is writing {self.folder}: {where}, recipe {recipe}, started {started} UTC. "
                f"Two builds never share an output folder. Wait for it to finish (`cftdata status "
                f"{self.folder}` shows its progress), stop it (kill {pid}; its answers are cached and a rerun "
                f"resumes), or build into another folder with --set output.dir=<path>.")

    def release(self) -> None:
        """Remove the lock file and release the lock (in this order, so nobody locks a file that then vanishes
        unnoticed: a waiting process checks the inode)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> BuildLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(folder: Path) -> dict[str, Any] | None:
    """The owner's details when a build holds ``folder``'s lock now, else None (no lock taken, nothing written)."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _owner(fd) or {"pid": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
