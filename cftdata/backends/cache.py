"""The content-addressed request cache: the single source of truth for every model answer.

Key = sha256 of the rendered request (backend namespace, model, messages, sampling params, sample
index). Only successful results are stored, each committed as it arrives (SQLite in WAL mode), so
a rerun or a resume after Ctrl-C / kill -9 never pays for an answer twice, and failures are retried.
The store holds answers only: no API keys, no headers.

Requests an online backend sends are marked *pending* (:meth:`RequestCache.mark_sent`) until their answer
is stored. A request pending since an earlier run was sent and never answered there (in flight when that
run was killed, or failed): a run that looks it up and misses counts it in :attr:`RequestCache.resent`,
so a resumed build can say what the interruption cost.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
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
            self._db.execute("CREATE TABLE IF NOT EXISTS pending (key TEXT PRIMARY KEY, created REAL)")
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
        self._opened = time.time()
        self._stale: set[str] | None = None  # pending from earlier runs, read on the first miss

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

    def mark_sent(self, key: str) -> None:
        """``key``'s request went out: pending until its answer is stored (a write, not made durable by a sync)."""
        self._db.execute("INSERT OR IGNORE INTO pending (key, created) VALUES (?, ?)", (key, time.time()))

    def _count_resent(self, missing: list[str]) -> None:
        """Count the misses an earlier run had sent without an answer stored (they will be sent again)."""
        if not missing:
            return
        if self._stale is None:  # pending from earlier runs and still unanswered (answered ones are dropped)
            with self._transaction():
                self._db.execute("DELETE FROM pending WHERE created < ? AND key IN (SELECT key FROM results)",
                                 (self._opened,))
                self._stale = {k for (k,) in self._db.execute("SELECT key FROM pending WHERE created < ?",
                                                              (self._opened,))}
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

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def __bool__(self) -> bool:  # an empty cache is still a cache (``if cache:`` must not skip it)
        return True

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        """Drop the pending marks this run's answers settled (a killed run leaves them to the next one), close."""
        if not self.readonly:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("DELETE FROM pending WHERE created >= ? AND key IN (SELECT key FROM results)",
                                 (self._opened,))
        self._db.close()
