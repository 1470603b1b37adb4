"""The request cache's answer journal: answers are durable the moment ``put`` returns, before they are moved
into SQLite in batches, and every later reader (a resumed build, a dry run, ``cftdata status``) sees them.

Real processes and real files throughout: a writer in a child process that is SIGKILLed or kept alive holding
its journal's lock, as a build is."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from cftdata.backends.base import Result
from cftdata.backends.cache import AnswerJournal, RequestCache, count_answers

WRITER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from cftdata.backends.base import Result
    from cftdata.backends.cache import RequestCache
    folder, n, end = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    cache = RequestCache.open(folder)
    for i in range(n):
        cache.put(f"k{i}", Result(text=f"answer {i}", input_tokens=3, output_tokens=2), "ns", "m")
    print("written", flush=True)
    if end == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.readline()  # "live": keep the journal (and its lock) until told to go
    if end == "live-kill":
        os.kill(os.getpid(), signal.SIGKILL)
""")


def writer(folder: Path, n: int, end: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(n), end],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "written"
    return proc


def sqlite_keys(folder: Path) -> set[str]:
    """What the SQLite table itself holds (to tell "moved" from "still journaled")."""
    import sqlite3

    db = sqlite3.connect(folder / "requests.sqlite")
    try:
        return {k for (k,) in db.execute("SELECT key FROM results")}
    finally:
        db.close()


def journals(folder: Path) -> list[Path]:
    return sorted(folder.glob("answers-*.log"))


def test_answers_of_a_killed_writer_are_read_moved_and_never_asked_again(tmp_path):
    """50 answers (fewer than one batch) then kill -9: nothing is in SQLite yet, all 50 are in the journal;
    the next run's first lookup moves them into SQLite (marked cached) and removes the journal."""
    proc = writer(tmp_path, 50, "kill")
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert sqlite_keys(tmp_path) == set()
    assert len(journals(tmp_path)) == 1
    assert count_answers(tmp_path) == {"m": 50}

    cache = RequestCache.open(tmp_path)
    got = cache.get_many([f"k{i}" for i in range(60)])
    assert sorted(got) == sorted(f"k{i}" for i in range(50))
    assert got["k7"].text == "answer 7" and got["k7"].cached and got["k7"].output_tokens == 2
    assert sqlite_keys(tmp_path) == set(got) and journals(tmp_path) == []
    cache.close()
    assert count_answers(tmp_path) == {"m": 50}


def test_a_full_batch_moves_into_sqlite_while_the_writer_runs(tmp_path):
    """Past one batch, answers are in SQLite even though the writer was killed before it could close."""
    proc = writer(tmp_path, 300, "kill")
    assert proc.wait(timeout=60) == -signal.SIGKILL
    moved = sqlite_keys(tmp_path)
    assert len(moved) >= 256
    assert count_answers(tmp_path) == {"m": 300}  # the rest is journaled, counted once
    cache = RequestCache.open(tmp_path)
    assert len(cache.get_many(f"k{i}" for i in range(300))) == 300
    cache.close()


def test_a_live_writers_journal_is_seen_but_not_taken(tmp_path):
    """While a writer lives, another build sharing the cache reads its journaled answers but does not move them
    (the journal's lock is held); so do a read-only view (the dry run) and ``count_answers``. After the writer
    is killed, the next run moves them."""
    proc = writer(tmp_path, 10, "live-kill")
    try:
        other = RequestCache.open(tmp_path)
        assert other.get_many(["k1", "k99"])["k1"].text == "answer 1"
        assert len(journals(tmp_path)) == 1 and sqlite_keys(tmp_path) == set()
        other.close()
        view = RequestCache.open_readonly(tmp_path)
        assert view is not None and view.get_many(["k1", "k9"])["k9"].text == "answer 9"
        view.close()
        assert count_answers(tmp_path) == {"m": 10}
    finally:
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == -signal.SIGKILL
    again = RequestCache.open(tmp_path)
    assert len(again.get_many(f"k{i}" for i in range(10))) == 10
    again.close()
    assert journals(tmp_path) == []


def test_a_clean_close_moves_everything_and_removes_the_journal(tmp_path):
    proc = writer(tmp_path, 5, "live")
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.wait(timeout=60) == 0  # the interpreter's exit flushes open caches
    assert sqlite_keys(tmp_path) == {f"k{i}" for i in range(5)} and journals(tmp_path) == []

    cache = RequestCache.open(tmp_path)
    cache.put("x", Result(text="x"), "ns", "m")
    assert cache.get_many(["x"])["x"].text == "x"  # this process's own unmoved answer
    cache.close()
    assert "x" in sqlite_keys(tmp_path) and journals(tmp_path) == []


def test_a_line_cut_short_by_a_kill_is_skipped(tmp_path):
    good = json.dumps(["a", "ns", "m", 1.0]) + "\t" + Result(text="kept").to_json() + "\n"
    cut = json.dumps(["b", "ns", "m", 1.0]) + "\t" + Result(text="lost").to_json()[:9]
    (tmp_path / "answers-999999-0.log").write_text(good + cut)
    assert count_answers(tmp_path) == {"m": 1}
    cache = RequestCache.open(tmp_path)
    assert set(cache.get_many(["a", "b"])) == {"a"}
    cache.close()


def test_a_journal_left_under_a_recycled_name_is_not_reused(tmp_path, monkeypatch):
    """A dead run's journal under the very name this process would pick (a pid recycled, as in containers)
    is neither appended to nor emptied: this writer takes the next free name, and the dead one is moved."""
    monkeypatch.setattr(AnswerJournal, "_count", itertools.count())
    left = tmp_path / f"answers-{os.getpid()}-0.log"
    left.write_text(json.dumps(["old", "ns", "m", 1.0]) + "\t" + Result(text="old answer").to_json() + "\n")
    cache = RequestCache(tmp_path / "requests.sqlite")  # no lookup first: the put opens the journal
    cache.put("new", Result(text="new answer"), "ns", "m")
    cache.flush()  # empties this writer's own journal only
    assert "old answer" in left.read_text()
    assert [p.name for p in journals(tmp_path)] == [left.name, f"answers-{os.getpid()}-1.log"]
    cache.close()
    fresh = RequestCache.open(tmp_path)
    assert fresh.get_many(["old"])["old"].text == "old answer"
    fresh.close()
    assert sqlite_keys(tmp_path) == {"old", "new"} and journals(tmp_path) == []
