"""Test-only kill points: ``CFTDATA_TEST_KILL_AT=<point>[:<n>]`` SIGKILLs the build at the n-th time it
reaches ``<point>`` (default the first), as ``kill -9`` would, so tests kill at exact phases, not after sleeps.

Points (see :data:`POINTS`): ``source`` (a source shard read), ``answer`` (a model answer stored in the
request cache), ``verify`` (a shard verified), ``select`` (the select phase done), ``write`` (a data
file written), ``card`` (manifest and card written in staging), ``publish`` (staging committed) and
``swap`` (each rename of the swap into the build folder). Unset (always, outside tests), :func:`reached`
is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "CFTDATA_TEST_KILL_AT"
POINTS = ("source", "answer", "verify", "select", "write", "card", "publish", "swap")
_seen: dict[str, int] = {}


def reached(point: str) -> None:
    """Mark that the build reached ``point``; dies by SIGKILL here when the environment asks for it."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _seen[point] = _seen.get(point, 0) + 1
    if _seen[point] >= int(nth or 1):
        kill_now()


def kill_now() -> None:
    """SIGKILL this build as ``kill -9`` would: its supervising parent first (see :mod:`cftdata.supervise`),
    then this process. Nothing runs after this (no ``finally``, no ``atexit``)."""
    parent = os.environ.get("CFTDATA_SUPERVISOR_PID")
    if parent and int(parent) == os.getppid():
        os.kill(int(parent), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
