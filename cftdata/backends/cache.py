"""The content-addressed request cache: the single source of truth for every model answer.

Key = sha256 of the rendered request (backend namespace, model, messages, sampling params, sample
index). Only successful results are stored, so a rerun or a resume after Ctrl-C / kill -9 never pays
for an answer twice, and failures are retried. The store holds answers only: no API keys, no headers.

Where an answer lives: the moment it arrives it is appended to this writer's answer journal
(:class:`AnswerJournal`, ``answers-<pid>-<n>.log`` beside the database: one ``write`` on an ``O_APPEND``
file, which survives kill -9), and it is moved into the SQLite table (WAL mode) in batches: at most
:data:`FLUSH_EVERY` answers or :data:`FLUSH_S` seconds after the last move, and when the cache is closed.
One SQLite commit per answer cost more client CPU than the rest of a request together (README
"Performance"). Lookups in this process see answers still in a journal; a later run moves journals left by
runs that are gone into the table before its first lookup and reads those of live runs (a build sharing the
cache), so nothing answered is ever asked again.
:func:`count_answers` counts both places (for ``cftdata status`` and tests).

What was in flight at a kill: online backends log the key of each request as it goes out
(:class:`SentLog`, an append-only ``sent-<pid>-<n>.keys`` file beside the database, about a microsecond a
request, removed when the run ends normally). A later run reads the logs of processes that are gone; a
lookup that misses one of those keys (sent, never answered: in flight when that run was killed) counts
in :attr:`RequestCache.resent`, so a resumed build can say what the interruption cost.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import itertools
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path

from cftdata import killpoints
from cftdata.backends.base import Result
from cftdata.errors import CftdataError

#: Answers kept only in a journal before they are moved into SQLite in one transaction.
FLUSH_EVERY = 256
#: Seconds after the last move into SQLite at which the next answer moves everything pending.
FLUSH_S = 1.0

_INSERT = "INSERT OR REPLACE INTO results (key, namespace, model, result, created) VALUES (?,?,?,?,?)"
_IMPORT = "INSERT OR IGNORE INTO results (key, namespace, model, result, created) VALUES (?,?,?,?,?)"


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
        #: Requests started in an earlier run without an answer stored, sent again by this one.
        self.resent = 0
        self._stale: set[str] | None = None  # keys sent by runs that are gone, read on the first miss
        self._journal: AnswerJournal | None = None  # this writer's answers not yet in SQLite (opened on the first put)
        # Answers journaled, not yet in SQLite: every writer's in this process (a read-only view keeps its own).
        self._pending = _Pending() if readonly else _pending_for(path)
        self._own: list[tuple[str, str, str, str, float]] = []  # (key, ns, model, blob, created) to move
        self._own_lock = threading.RLock()  # put and flush (an exit-time flush may come from another thread)
        self._last_flush = time.monotonic()
        self._imported = False
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
        _OPEN.add(self)

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
        """The stored answers among ``keys`` (those still in a journal of this process included)."""
        keys = list(dict.fromkeys(keys))
        if not self._imported:  # journals of runs that are gone move into SQLite; live runs' are read as they are
            self._imported = True
            if not self.readonly:
                AnswerJournal.import_dead(self.path.parent, self._db)
            self._pending.update_from(AnswerJournal.read_all(self.path.parent))
        out = self._pending.lookup(keys)  # before SQLite: a batch moved meanwhile is in SQLite by then
        rest = [k for k in keys if k not in out]
        for i in range(0, len(rest), 500):
            chunk = rest[i : i + 500]
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
        """Store a successful answer: durable (in the journal) when this returns; failures are not stored."""
        if not result.ok or self.readonly:
            return
        entry = (key, namespace, model, result.to_json(), time.time())
        with self._own_lock:
            if self._journal is None:
                self._journal = AnswerJournal(self.path.parent)
            self._journal.append(entry)
            self._pending.add(key, result)
            self._own.append(entry)
            killpoints.reached("answer")
            if len(self._own) >= FLUSH_EVERY or time.monotonic() - self._last_flush >= FLUSH_S:
                self.flush()

    def flush(self) -> None:
        """Move this writer's journaled answers into SQLite (one transaction), then empty its journal."""
        with self._own_lock:
            if not self._own:
                return
            own = self._own
            _write_many(self._db, _INSERT, own)
            self._own = []
            self._last_flush = time.monotonic()
            if self._journal is not None:
                self._journal.clear()
            self._pending.drop(k for k, *_ in own)

    def __bool__(self) -> bool:  # an empty cache is still a cache (``if cache:`` must not skip it)
        return True

    def __len__(self) -> int:
        self.flush()
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        """Move what is journaled into SQLite and close (a journal that cannot be moved stays for the next run)."""
        _OPEN.discard(self)
        try:
            if not self.readonly:
                self.flush()
                if self._journal is not None:
                    self._journal.close()
                    self._journal = None
        finally:
            self._db.close()


class _Pending:
    """Answers journaled but not yet in SQLite, by every writer of one cache file in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[str, Result] = {}

    def add(self, key: str, result: Result) -> None:
        with self._lock:
            self._results[key] = result

    def update_from(self, entries: dict[str, Result]) -> None:
        with self._lock:
            for k, r in entries.items():
                self._results.setdefault(k, r)

    def drop(self, keys: Iterable[str]) -> None:
        with self._lock:
            for k in keys:
                self._results.pop(k, None)

    def lookup(self, keys: list[str]) -> dict[str, Result]:
        """Copies of the pending answers among ``keys`` (marked cached, as answers read from SQLite are)."""
        with self._lock:
            found = {k: self._results[k] for k in keys if k in self._results}
        return {k: dataclasses.replace(r, cached=True, extra=dict(r.extra)) for k, r in found.items()}


_PENDING: dict[str, _Pending] = {}
_PENDING_LOCK = threading.Lock()
_OPEN: weakref.WeakSet[RequestCache] = weakref.WeakSet()


def _pending_for(path: Path) -> _Pending:
    key = str(path.resolve())
    with _PENDING_LOCK:
        return _PENDING.setdefault(key, _Pending())


@atexit.register
def _flush_open_caches() -> None:
    """At a normal exit, close the caches left open: what they journaled moves into SQLite and their journals go
    (a kill leaves the journal instead, for the next run)."""
    for cache in list(_OPEN):
        with contextlib.suppress(Exception):  # the journal still holds the answers: the next run moves them
            cache.close()


def _create_locked_log(folder: Path, prefix: str, ext: str, counter: itertools.count) -> tuple[Path, int]:
    """A new ``<prefix>-<pid>-<n>.<ext>`` file in ``folder``, opened for appending and ``flock``-ed for as long
    as this process lives (the kernel drops the lock at its death, so a free lock means its writer is gone).
    It is locked under a hidden name first and then linked to its name, so no other process ever sees it
    unlocked; the link fails on a name that exists, so a file a dead run left under a recycled pid is never
    reused (and so never emptied before its answers are moved). A file system without hard links gets the
    name created directly (exclusively too), locked a moment later."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".{prefix}-{os.getpid()}-{threading.get_ident()}.new"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        linkable = True
        while True:
            path = folder / f"{prefix}-{os.getpid()}-{next(counter)}.{ext}"
            try:
                if linkable:
                    os.link(staging, path)
                    return path, fd
                direct = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            except FileExistsError:
                continue
            except OSError:
                if not linkable:
                    raise
                linkable = False
                continue
            os.close(fd)
            fd = direct
            fcntl.flock(fd, fcntl.LOCK_EX)
            return path, fd
    except BaseException:
        os.close(fd)
        raise
    finally:
        staging.unlink(missing_ok=True)


class _LockedLog:
    """An append-only file of one live writer, ``<PREFIX>-<pid>-<n>.<EXT>`` in a cache folder, written with
    ``os.write`` on an ``O_APPEND`` file (it survives kill -9, not a power loss). The writer holds an exclusive
    ``flock`` on it while it lives, so a log whose lock is free was left by a run that is gone."""

    PREFIX = ""
    EXT = ""
    _count = itertools.count()

    def __init__(self, folder: Path) -> None:
        self.path, fd = _create_locked_log(folder, self.PREFIX, self.EXT, self._count)
        self._fd: int | None = fd

    def _append(self, data: bytes) -> None:
        if self._fd is not None:
            os.write(self._fd, data)

    def close(self) -> None:
        """The run ends normally: the log goes."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.path.unlink(missing_ok=True)

    @classmethod
    def _left_by_dead_runs(cls, folder: Path) -> Iterator[str]:
        """The text of each log in ``folder`` whose writer is gone; a log is removed once the consumer asks for
        the next one (so one that raised while handling its text stays for the next run)."""
        for log in folder.glob(f"{cls.PREFIX}-*-*.{cls.EXT}"):
            try:
                fd = os.open(log, os.O_RDONLY)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    with os.fdopen(os.dup(fd), errors="replace") as f:
                        text = f.read()
                except OSError:
                    continue  # a live run's log (or unreadable)
                yield text
                log.unlink(missing_ok=True)
            finally:
                os.close(fd)


class AnswerJournal(_LockedLog):
    """One writer's answers not yet moved into SQLite: ``answers-<pid>-<n>.log``, a line per answer
    (``[key, namespace, model, created]`` as JSON, a tab, the answer's JSON), emptied after each move into
    SQLite; :meth:`import_dead` moves the journals of runs that are gone into SQLite and removes them."""

    PREFIX, EXT = "answers", "log"

    def append(self, entry: tuple[str, str, str, str, float]) -> None:
        key, namespace, model, blob, created = entry
        head = json.dumps([key, namespace, model, created], ensure_ascii=False)
        self._append(f"{head}\t{blob}\n".encode())

    def clear(self) -> None:
        """Everything in it is in SQLite now."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)

    @staticmethod
    def parse(text: str) -> list[tuple[str, str, str, str, float]]:
        """The complete entries of a journal's text (a line cut short by a kill is skipped)."""
        entries = []
        for line in text.splitlines():
            head, sep, blob = line.partition("\t")
            if not sep:
                continue
            try:
                key, namespace, model, created = json.loads(head)
                json.loads(blob)
            except (ValueError, TypeError):
                continue
            entries.append((str(key), str(namespace), str(model), blob, float(created)))
        return entries

    @classmethod
    def entries_in(cls, folder: Path) -> Iterator[tuple[str, str, str, str, float]]:
        """Every journaled entry in ``folder``, live writers' too, without moving anything."""
        for log in folder.glob(f"{cls.PREFIX}-*-*.{cls.EXT}") if folder.is_dir() else ():
            try:
                text = log.read_text(errors="replace")
            except OSError:
                continue
            yield from cls.parse(text)

    @classmethod
    def read_all(cls, folder: Path) -> dict[str, Result]:
        """Every journaled answer in ``folder``, live writers' too, without moving anything."""
        out: dict[str, Result] = {}
        for key, _, _, blob, _ in cls.entries_in(folder):
            if key not in out:
                out[key] = Result.from_json(blob)
        return out

    @classmethod
    def import_dead(cls, folder: Path, db: sqlite3.Connection) -> int:
        """Move the journals of runs that are gone (their lock is free) into SQLite; how many answers."""
        moved = 0
        for text in cls._left_by_dead_runs(folder):
            entries = cls.parse(text)
            if entries:
                _write_many(db, _IMPORT, entries)
            moved += len(entries)
        return moved


def _write_many(db: sqlite3.Connection, sql: str, rows: list[tuple[str, str, str, str, float]]) -> None:
    """``rows`` through ``sql`` in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany(sql, rows)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def count_answers(folder: str | Path) -> dict[str, int]:
    """Answers stored in the cache folder per model: the SQLite table and the journals not yet moved into it
    (read-only: nothing is created or moved)."""
    folder = Path(folder)
    db_path = folder / "requests.sqlite"
    by_model: dict[str, int] = {}
    journaled: dict[str, str] = {}
    for key, _, model, _, _ in AnswerJournal.entries_in(folder):
        journaled.setdefault(key, model)
    if db_path.is_file():
        db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            try:
                for model, n in db.execute("SELECT model, COUNT(*) FROM results GROUP BY model"):
                    by_model[str(model)] = int(n)
                keys = list(journaled)
                for i in range(0, len(keys), 500):
                    chunk = keys[i : i + 500]
                    q = f"SELECT key FROM results WHERE key IN ({','.join('?' * len(chunk))})"
                    for (k,) in db.execute(q, chunk):
                        journaled.pop(k, None)
            except sqlite3.OperationalError:  # the table is not created yet
                pass
        finally:
            db.close()
    for model in journaled.values():
        by_model[model] = by_model.get(model, 0) + 1
    return by_model


class SentLog(_LockedLog):
    """Keys of the requests one run sent, appended as they go out (``sent-<pid>-<n>.keys``); removed by
    :meth:`close`, so only a run that died leaves one (all a count of lost requests needs)."""

    PREFIX, EXT = "sent", "keys"

    def mark(self, key: str) -> None:
        self._append((key + "\n").encode())

    @classmethod
    def left_by_dead_runs(cls, folder: Path) -> set[str]:
        """The keys in logs whose writer is gone (read, then removed: counted once)."""
        keys: set[str] = set()
        for text in cls._left_by_dead_runs(folder):
            keys.update(k for k in text.split() if k)
        return keys
