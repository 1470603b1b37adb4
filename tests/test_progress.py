"""Progress output: plain log lines when not a TTY, a rich display on one; -q silences progress."""

import logging

from cftdata.progress import Reporter


def test_plain_lines_when_not_a_tty(caplog):
    caplog.set_level(logging.INFO, logger="cftdata")
    r = Reporter(live=False, interval_s=0)
    r.start()
    r.advance("source", 10)
    r.advance("critique", 4, {"calls": 3, "cached": 1, "in flight": 2, "429s": 0, "tokens": 900, "$": "0.0100"})
    r.stop()
    text = caplog.text
    assert "progress: source 10" in text
    assert "critique 4 (calls 3  cached 1  in flight 2  429s 0  tokens 900  $ 0.0100)" in text


def test_quiet_prints_nothing(caplog):
    caplog.set_level(logging.INFO, logger="cftdata")
    r = Reporter(quiet=True, interval_s=0)
    r.advance("source", 10)
    r.info("hello")
    assert caplog.text == ""


def test_rich_display_on_a_terminal():
    from io import StringIO

    from rich.console import Console

    buf = StringIO()
    r = Reporter(live=True, console=Console(file=buf, force_terminal=True, width=200))
    r.start()
    r.set_total("critique", 10)
    r.advance("critique", 5, {"calls": 5, "429s": 1, "$": "0.0200"})
    r.stop()
    out = buf.getvalue()
    assert "critique" in out and "5/10" in out and "429s 1" in out and "$ 0.0200" in out
