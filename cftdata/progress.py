"""Progress: a rich live display on a terminal, plain log lines otherwise (CI, files).

Per stage: rows done (of the total when known), rows/s, elapsed; model stages add calls made, cache hits,
requests in flight, 429s and retries, tokens and dollars so far.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("cftdata")


class Reporter:
    """Per-stage counters shown as progress bars (TTY) or periodic log lines."""

    def __init__(self, quiet: bool = False, live: bool | None = None, interval_s: float = 10.0,
                 console=None) -> None:
        self.console = console
        self.quiet = quiet
        self.live = (sys.stderr.isatty() if live is None else live) and not quiet
        self.interval_s = interval_s
        self.done: dict[str, int] = {}
        self.fields: dict[str, str] = {}
        self.totals: dict[str, int | None] = {}
        self._last_log = 0.0
        self._progress = None
        self._tasks: dict[str, int] = {}
        self._t0 = time.monotonic()

    def start(self) -> None:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description:<13}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                                      TextColumn("{task.fields[extra]}"), transient=False,
                                      console=self.console)
            self._progress.start()

    def set_total(self, stage: str, total: int | None) -> None:
        self.totals[stage] = total
        if self._progress is not None:
            if stage not in self._tasks:
                self._tasks[stage] = self._progress.add_task(stage, total=total, rate="", extra="")
            else:
                self._progress.update(self._tasks[stage], total=total)

    def advance(self, stage: str, n: int = 1, fields: dict | None = None) -> None:
        self.done[stage] = self.done.get(stage, 0) + n
        if fields is not None:
            self.fields[stage] = "  ".join(f"{k} {v}" for k, v in fields.items() if v is not None)
        if self._progress is not None:
            if stage not in self._tasks:
                self.set_total(stage, self.totals.get(stage))
            rate = self.done[stage] / max(time.monotonic() - self._t0, 1e-6)
            self._progress.update(self._tasks[stage], advance=n, rate=f"{rate:,.1f}/s",
                                  extra=self.fields.get(stage, ""))
        elif not self.quiet and time.monotonic() - self._last_log >= self.interval_s:
            self._last_log = time.monotonic()
            parts = []
            for k, v in self.done.items():
                extra = f" ({self.fields[k]})" if self.fields.get(k) else ""
                parts.append(f"{k} {v}{extra}")
            self.info("progress: " + "; ".join(parts))

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
