"""The ``cftdata`` command line. Heavy modules are imported inside commands, so ``--help`` is instant."""

from __future__ import annotations

import json
import logging
import sys

import click

from cftdata import __version__
from cftdata.errors import CftdataError


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "httpx2", "openai", "anthropic", "urllib3", "filelock", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)


class _Group(click.Group):
    """Turns user errors into one paragraph and exit code 2, Ctrl-C into a resume hint."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CftdataError as e:
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: every answer received so far is cached; rerun the same command to "
                       "resume (finished requests are not sent again).", err=True)
            sys.exit(130)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="cftdata")
def main() -> None:
    """Build critique fine-tuning (CFT) datasets from YAML recipes."""


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value, e.g. --set teacher.model=gpt-4o-mini (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), help="Read only the first N source rows.")
@click.option("--sample", type=click.IntRange(min=1), help="Read a seeded uniform sample of N source rows.")
@click.option("--seed", type=int, help="Seed for --sample and seeded stages (sets run.seed).")
@click.option("--grid", "grids", multiple=True, metavar="KEY=V1,V2",
              help="Build one dataset per value (repeatable: the cartesian product) and compare them.")
@click.option("--dry-run", is_flag=True,
              help="Run the stages with estimates instead of model calls: calls, tokens and cost; writes nothing.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final summary.")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for HTTP details).")
def build(recipe: str, overrides: tuple[str, ...], limit: int | None, sample: int | None, seed: int | None,
          grids: tuple[str, ...], dry_run: bool, quiet: bool, verbose: int) -> None:
    """Build the dataset a RECIPE describes (output under outputs/<name>/ by default)."""
    from cftdata.grid import expand_grid

    _setup_logging(verbose, quiet)
    if seed is not None:
        overrides = (*overrides, f"run.seed={seed}")
    variants = expand_grid(recipe, overrides, grids)
    results = []
    for label, rec, var_overrides in variants:
        if label:
            click.echo(f"== grid: {label}")
        if dry_run:
            from cftdata.dryrun import dry_run as estimate
            from cftdata.dryrun import format_estimate

            click.echo("\n".join(format_estimate(estimate(rec, limit, sample))))
            continue
        results.append((label, _build_one(rec, recipe, var_overrides, limit, sample, quiet)))
    if grids and results:
        from cftdata.grid import comparison_table

        click.echo(comparison_table(results))


def _build_one(rec, recipe: str, overrides: tuple[str, ...], limit: int | None, sample: int | None, quiet: bool):
    from cftdata.pipeline import build as run_build
    from cftdata.progress import Reporter

    result = run_build(rec, limit=limit, sample=sample, reporter=Reporter(quiet=quiet), recipe_file=recipe,
                       overrides=overrides)
    m = result.manifest
    verdicts = m["stages"].get("verdict", {}).get("verdicts", {})
    calls = sum(u.get("calls_made", 0) for u in m["usage"].values())
    hits = sum(u.get("cache_hits", 0) for u in m["usage"].values())
    click.echo(f"built {result.output_dir}: {result.rows} rows, {result.rejected} rejected "
               f"(rejects.parquet), verdicts {json.dumps(verdicts)}, model calls {calls} "
               f"(+{hits} from cache), {m['seconds']} s")
    for line in _quality_lines(m["stages"]):
        click.echo(line)
    if rec.hub is not None:
        from cftdata.publish import push_build

        pushed = push_build(result.output_dir, **rec.hub.model_dump())
        click.echo(f"pushed to {pushed.url} (config {pushed.config}, revision {pushed.revision})")
    return result


def _quality_lines(stages: dict) -> list[str]:
    """The build summary's quality lines: parseable verdicts, and the teacher-vs-verifier agreement table."""
    from cftdata.card import parseable_text

    lines = []
    parseable = parseable_text(stages)
    if parseable:
        constraint = (stages.get("critique") or {}).get("verdict_constraint")
        lines.append(f"parseable verdicts: {parseable}" + (f" (verdict constraint {constraint})" if constraint else ""))
    agr = stages.get("agreement")
    if agr:
        ratio = "n/a" if agr.get("agreement") is None else f"{100 * agr['agreement']:.1f}%"
        cells = ", ".join(f"{k} {v}" for k, v in (agr.get("table") or {}).items())
        lines.append(f"teacher vs verifier: agree on {ratio} of {agr.get('decided', 0)} decided rows ({cells}; "
                     f"undecided {agr.get('undecided', 0)})")
    return lines


def _register_commands() -> None:
    """Commands from packages that import only click at module level (heavy imports happen inside them)."""
    from cftdata.publish.commands import push
    from cftdata.report.commands import diff, inspect, status
    from cftdata.train.commands import eval_cmd, eval_compare, select_checkpoint, train

    for command in (push, inspect, diff, status, train, eval_cmd, eval_compare, select_checkpoint):
        main.add_command(command)


_register_commands()


if __name__ == "__main__":
    main()
