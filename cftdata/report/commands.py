"""The ``inspect``, ``diff`` and ``status`` commands. Only click and the standard library are imported
here at module level, so registering them keeps ``cftdata --help`` instant.

Register them on the main group with ``main.add_command(inspect)`` (etc.). User errors raise
:class:`cftdata.errors.CftdataError`, which the main group prints as one paragraph with exit code 2.
"""

from __future__ import annotations

import json
import sys

import click

BUILD_DIR = click.Path(file_okay=True, dir_okay=True, path_type=str)


@click.command("inspect")
@click.argument("build_dir", type=BUILD_DIR)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for index.html and the PNG charts (default: BUILD_DIR/report).")
@click.option("--samples", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many examples to show (chosen uniformly, seeded).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the sampled examples.")
def inspect(build_dir: str, out_dir: str | None, samples: int, seed: int) -> None:
    """Write a self-contained HTML report of a finished build (charts, tables, sampled examples).

    The page (index.html) has its CSS inline and its charts embedded as PNG data, so it opens offline
    and can be mailed or attached as one file; the charts are also saved as PNG files beside it.
    """
    from cftdata.report.inspect_build import inspect_build

    result = inspect_build(build_dir, out_dir, samples=samples, seed=seed)
    click.echo(f"wrote {result.html} ({result.rows:,} rows, {result.samples} sampled examples, "
               f"{len(result.images)} charts as PNG beside it)")


@click.command("diff")
@click.argument("build_a", type=BUILD_DIR)
@click.argument("build_b", type=BUILD_DIR)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def diff(build_a: str, build_b: str, as_json: bool) -> None:
    """Compare two finished builds: rows, rejects, verdicts, critique lengths, tokens, cost, models,
    agreement, and the recipe keys that differ."""
    from cftdata.report.diff import diff_builds, format_plain, print_rich

    result = diff_builds(build_a, build_b)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False, default=str))
    elif sys.stdout.isatty():
        print_rich(result)
    else:
        click.echo(format_plain(result), nl=False)


@click.command("status")
@click.argument("build_dir", type=BUILD_DIR)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(build_dir: str, as_json: bool) -> None:
    """Show what a build has done: per-stage counts, what remains, cost so far, how to resume, and
    how many answers the request cache holds. Works while a build runs, after it was interrupted,
    and after it finished."""
    from cftdata.report.status import build_status, format_status

    info = build_status(build_dir)
    if as_json:
        click.echo(json.dumps(info, indent=2, ensure_ascii=False, default=str))
    else:
        click.echo(format_status(info), nl=False)


COMMANDS = (inspect, diff, status)
