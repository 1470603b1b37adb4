"""The content-addressed request cache: the single source of truth for every model answer.

Key = sha256 of the rendered request (backend namespace, model, messages, sampling params, sample
index). Only successful results are stored, each committed as it arrives (SQLite in WAL mode), so
a rerun or a resume after Ctrl-C / kill -9 never pays for an answer twice, and failures are retried.
The store holds answers only: no API keys, no headers.

What was in flight at a kill: online backends log the key of each request as it goes out
(:class:`SentLog`, an append-only ``sent-<pid>-<n>.keys`` file beside the database, about a microsecond a
request, removed when the run ends normally). A later run reads the logs of processes that are gone; a
lookup that misses one of those keys (sent, never answered: in flight when that run was killed) counts
in :attr:`RequestCache.resent`, so a resumed build can say what the interruption cost.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from cftdata import killpoints
from cftdata.backends.base import Result
from cftdata.errors import CftdataError


class CacheError(CftdataError):
    """The request cache cannot be used (a damaged file); not the user's input, so exit code 1."""

    exit_code = 1


def default_cache_dir() -> Path:
    env = os.environ.get("CFTDATA_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cftdata"


class RequestCache:
    """A SQLite table ``key -> result``. Safe to share between builds (grids share one)."""

    def __init__(self, path: Path, readonly: bool = False, check_same_thread: bool = True) -> None:
        self.path = path
        self.readonly = readonly
        if readonly:  # lookups only: the file must exist, nothing is created or written
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60,
                                       isolation_level=None, check_same_thread=check_same_thread)
            self._db.execute("SELECT 1 FROM results LIMIT 1")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=check_same_thread)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS results ("
                " key TEXT PRIMARY KEY, namespace TEXT, model TEXT, result TEXT NOT NULL, created REAL)"
            )
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise CacheError(
                f"the request cache {path} cannot be opened: {e} (the file is damaged or is not a cftdata "
                f"cache). It may still hold paid answers. Move it aside (mv {path} {path}.broken) and rerun "
                "to start an empty cache (answers not in it are requested again), or set cache.dir / "
                "$CFTDATA_CACHE_DIR to another folder."
            ) from None
        #: Requests started in an earlier run without an answer stored, sent again by this one.
        self.resent = 0
        self._stale: set[str] | None = None  # keys sent by runs that are gone, read on the first miss

    @classmethod
    def open(cls, directory: str | Path | None) -> RequestCache:
        return cls(Path(directory or default_cache_dir()) / "requests.sqlite")

    @classmethod
    def open_readonly(cls, directory: str | Path | None) -> RequestCache | None:
        """The cache for lookups only (a dry run): nothing is created or written; None when there is none."""
        path = Path(directory or default_cache_dir()) / "requests.sqlite"
        if not path.is_file():
            return None
        try:
            return cls(path, readonly=True)
        except sqlite3.Error:
            return None

    def get_many(self, keys: Iterable[str]) -> dict[str, Result]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, Result] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, result FROM results WHERE key IN ({','.join('?' * len(chunk))})"
            for k, blob in self._db.execute(q, chunk):
                out[k] = Result.from_json(blob)
        if not self.readonly:
            self._count_resent([k for k in keys if k not in out])
        return out

    def sent_log(self) -> SentLog:
        """A new log of the requests this process sends (one per sending thread)."""
        return SentLog(self.path.parent)

    def _count_resent(self, missing: list[str]) -> None:
        """Count the misses an earlier run had sent without an answer stored (they will be sent again)."""
        if not missing:
            return
        if self._stale is None:
            self._stale = SentLog.left_by_dead_runs(self.path.parent)
        again = self._stale.intersection(missing)
        self.resent += len(again)
        self._stale -= again

    def put(self, key: str, result: Result, namespace: str = "", model: str = "") -> None:
        if not result.ok or self.readonly:
            return
        self._db.execute(
            "INSERT OR REPLACE INTO results (key, namespace, model, result, created) VALUES (?,?,?,?,?)",
            (key, namespace, model, result.to_json(), time.time()),
        )
        killpoints.reached("answer")

    def __bool__(self) -> bool:  # an empty cache is still a cache (``if cache:`` must not skip it)
        return True

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class SentLog:
    """Keys of the requests one run sent, appended as they go out (``sent-<pid>-<n>.keys``); removed by
    :meth:`close`, so only a run that died leaves one. Written with ``os.write`` on an ``O_APPEND`` file: it
    survives the process (kill -9), not a power loss, which is all a count of lost requests needs."""

    _count = itertools.count()

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"sent-{os.getpid()}-{next(self._count)}.keys"
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # held while this process lives: the kernel drops it at its death

    def mark(self, key: str) -> None:
        if self._fd is not None:
            os.write(self._fd, (key + "\n").encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.path.unlink(missing_ok=True)

    @staticmethod
    def left_by_dead_runs(folder: Path) -> set[str]:
        """The keys in logs whose writer is gone (its lock is free; read, then removed: counted once)."""
        keys: set[str] = set()
        for log in folder.glob("sent-*-*.keys"):
            try:
                fd = os.open(log, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                with os.fdopen(os.dup(fd)) as f:
                    keys.update(k for k in f.read().split() if k)
                log.unlink(missing_ok=True)
            except OSError:
                continue  # a live run's log (or unreadable)
            finally:
                os.close(fd)
        return keys
