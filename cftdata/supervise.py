"""Native crashes become messages: ``cftdata build`` runs in a supervised child process.

A segmentation fault (or bus error, illegal instruction, abort) inside native code, such as llama.cpp in
the local backend, kills the process that runs it: no Python handler can report it from inside. So the CLI
forks before the build: the child builds, the parent only waits. When the child dies by such a signal,
the parent prints one paragraph naming the component that was running native code (recorded by
:func:`native_component`), the signal, the CPU and what to try, and exits 1. The build stays resumable:
answers are committed to the request cache as they arrive.

One mechanism for every component: code about to run native code wraps it in
``with native_component(name, hint):``, which records ``name`` and ``hint`` (a small JSON file the
parent reads after a crash; nothing is written when the process is not supervised). Worker processes of
the build (math-verify, Ray) report their own deaths through :func:`crash_message` as
:class:`NativeCrashError`.

The child dies with its parent (Linux ``PR_SET_PDEATHSIG``): ``kill -9`` of the ``cftdata`` process stops
the build too. SIGINT, SIGTERM and SIGHUP sent to the parent are forwarded (a terminal's Ctrl-C reaches
both: the child takes the two copies of one keypress as one Ctrl-C). ``CFTDATA_SUPERVISE=0`` runs the build in the ``cftdata`` process itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from cftdata.errors import CftdataError

ENV_SUPERVISE = "CFTDATA_SUPERVISE"
ENV_PARENT = "CFTDATA_SUPERVISOR_PID"
ENV_CONTEXT = "CFTDATA_CRASH_CONTEXT"
#: Test-only: ``CFTDATA_TEST_CRASH_IN=<key>`` makes :func:`native_component` with that key really crash
#: (a read of address 0 through ctypes: a genuine SIGSEGV, not a mock).
ENV_TEST_CRASH = "CFTDATA_TEST_CRASH_IN"
CRASH_SIGNALS = {signal.SIGSEGV: "segmentation fault", signal.SIGBUS: "bus error",
                 signal.SIGILL: "illegal instruction", signal.SIGABRT: "abort", signal.SIGFPE: "arithmetic fault"}
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_stack: list[dict[str, str]] = []


class NativeCrashError(CftdataError):
    """Native code crashed in a worker of the build; the message names it and what to try."""

    exit_code = 1


def _write_context() -> None:
    path = os.environ.get(ENV_CONTEXT)
    if not path:
        return
    with contextlib.suppress(OSError):
        Path(path).write_text(json.dumps(_stack))


@contextlib.contextmanager
def native_component(key: str, name: str, hint: str) -> Iterator[None]:
    """While active, a crash of this process is blamed on ``name`` (e.g. "the local backend (llama.cpp),
    model smollm2-135m") with ``hint`` (what to try). ``key`` names the component for the test hook."""
    _stack.append({"name": name, "hint": hint})
    _write_context()
    try:
        if os.environ.get(ENV_TEST_CRASH) == key:
            crash_now()
        yield
    finally:
        _stack.pop()
        _write_context()


def crash_now() -> None:
    """Test-only: a real segmentation fault (a read of address 0 through ctypes), in this process."""
    import ctypes

    ctypes.string_at(0)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def crash_message(component: str | None, sig: int | None, hint: str | None) -> str:
    """The one paragraph for a death by ``sig`` (None: not known here) while ``component`` ran native code."""
    from cftdata.backends.llama_runtime import cpu_info

    where = component or "native code in the build (no component had claimed it)"
    how = f" with {_signal_name(sig)} ({CRASH_SIGNALS.get(sig, 'killed')})" if sig is not None else ""
    text = (f"the build crashed: {where} died{how} on {cpu_info().describe()}. "
            "This is a crash of native code (or of its process), not a problem with your data. ")
    if hint:
        text += hint.rstrip(".") + ". "
    return text + ("Every answer received so far is in the request cache: rerun the same command to resume "
                   "(finished requests are not sent again).")


def _killed_message(sig: int) -> str:
    if sig == signal.SIGKILL:
        return ("the build process was killed (SIGKILL): by `kill -9`, or by the kernel when the machine ran out "
                "of memory (see `dmesg`; lower run.shard_size or in-flight limits). Every answer received so "
                "far is cached: rerun the same command to resume.")
    return (f"the build process was stopped by {_signal_name(sig)}. Every answer received so far is cached: "
            "rerun the same command to resume.")


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


_last_sigint = [0.0]


def _on_sigint(sig: int, frame: object) -> None:
    """Ctrl-C in the child: a terminal sends SIGINT to the child and the parent, which forwards it too; the
    copy that arrives within a second of the first is the same keypress."""
    now = time.monotonic()
    if now - _last_sigint[0] < 1.0:
        return
    _last_sigint[0] = now
    raise KeyboardInterrupt


def _is_cli_process() -> bool:
    """Whether this process is the `cftdata` command itself (the console script, ``python -m cftdata.cli`` or
    ``python -m cftdata.train``), not a program that called a command in process (a test's CliRunner, a
    notebook): only the command may fork and exit with its child's outcome."""
    argv0 = Path(sys.argv[0] if sys.argv and sys.argv[0] else "")
    if argv0.name == "cftdata":
        return True
    try:
        return argv0.resolve().is_relative_to(Path(__file__).resolve().parent)
    except OSError:
        return False


def supervise() -> None:
    """Fork: the child returns and runs the build; the parent waits and exits with the child's outcome
    (a crash by signal becomes a one-paragraph message and exit 1). No-op where not possible or not wanted."""
    if (os.name != "posix" or not hasattr(os, "fork") or os.environ.get(ENV_SUPERVISE, "1") == "0"
            or os.environ.get(ENV_PARENT) or not _is_cli_process()):
        return
    fd, context = tempfile.mkstemp(prefix="cftdata-crash-", suffix=".json")
    os.close(fd)
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        os.environ[ENV_PARENT] = str(parent)
        os.environ[ENV_CONTEXT] = context
        _die_with_parent(parent)
        signal.signal(signal.SIGINT, _on_sigint)
        return
    os._exit(_wait(child, context))


def _wait(child: int, context: str) -> int:
    def forward(sig: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, sig)

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
    try:
        stack = json.loads(Path(context).read_text() or "[]")
    except (OSError, ValueError):
        stack = []
    with contextlib.suppress(OSError):
        os.unlink(context)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    sig = os.WTERMSIG(status)
    if sig == signal.SIGINT:
        return 130
    top = stack[-1] if stack else {}
    message = crash_message(top.get("name"), sig, top.get("hint")) if sig in CRASH_SIGNALS else _killed_message(sig)
    print(f"error: {message}", file=sys.stderr, flush=True)
    # A crash or a kill (OOM) is a failure; a stop asked for with SIGTERM / SIGHUP keeps the shell's 128 + n.
    return 1 if sig in CRASH_SIGNALS or sig == signal.SIGKILL else 128 + sig
