"""Progress: a rich live display on a terminal, plain log lines otherwise (CI, files)."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("cftdata")


class Reporter:
    """Per-stage counters shown as progress bars (TTY) or periodic log lines."""

    def __init__(self, quiet: bool = False, live: bool | None = None, interval_s: float = 10.0) -> None:
        self.quiet = quiet
        self.live = (sys.stderr.isatty() if live is None else live) and not quiet
        self.interval_s = interval_s
        self.done: dict[str, int] = {}
        self.totals: dict[str, int | None] = {}
        self._last_log = 0.0
        self._progress = None
        self._tasks: dict[str, int] = {}
        self._t0 = time.monotonic()

    def start(self) -> None:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), transient=False)
            self._progress.start()

    def set_total(self, stage: str, total: int | None) -> None:
        self.totals[stage] = total
        if self._progress is not None:
            if stage not in self._tasks:
                self._tasks[stage] = self._progress.add_task(stage, total=total, rate="")
            else:
                self._progress.update(self._tasks[stage], total=total)

    def advance(self, stage: str, n: int = 1) -> None:
        self.done[stage] = self.done.get(stage, 0) + n
        if self._progress is not None:
            if stage not in self._tasks:
                self.set_total(stage, self.totals.get(stage))
            rate = self.done[stage] / max(time.monotonic() - self._t0, 1e-6)
            self._progress.update(self._tasks[stage], advance=n, rate=f"{rate:,.1f}/s")
        elif not self.quiet and time.monotonic() - self._last_log >= self.interval_s:
            self._last_log = time.monotonic()
            self.info("progress: " + ", ".join(f"{k} {v}" for k, v in self.done.items()))

    def info(self, message: str) -> None:
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(message)
        else:
            log.info(message)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
