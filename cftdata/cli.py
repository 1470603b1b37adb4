"""The ``cftdata`` command line. Heavy modules are imported inside commands, so ``--help`` is instant."""

from __future__ import annotations

import json
import logging
import sqlite3
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
        except OSError as e:  # disk full, read-only folder, a file removed under the build
            where = f" {e.filename}" if e.filename else ""
            _fail(f"a file operation failed{where}: {e.strerror or e}. If the disk is full or the folder is "
                  "read-only, free space or fix its permissions (or point output.dir / cache.dir elsewhere), then "
                  "rerun the same command: every answer received so far is cached.", 1)
        except sqlite3.Error as e:
            _fail(f"the request cache failed: {e}. If the disk is full, free space; if the cache file is "
                  "damaged, move it aside (or set cache.dir / $CFTDATA_CACHE_DIR to another folder) and rerun.", 1)
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
@click.option("--no-preflight", "no_preflight", is_flag=True,
              help="Skip the preflight (each endpoint's first paid request sent alone, stopping the build if it fails "
                   "systemically; in a dry run: the free checks, such as the models list).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final summary.")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for HTTP details).")
def build(recipe: str, overrides: tuple[str, ...], limit: int | None, sample: int | None, seed: int | None,
          grids: tuple[str, ...], dry_run: bool, no_preflight: bool, quiet: bool, verbose: int) -> None:
    """Build the dataset a RECIPE describes (output under outputs/<name>/ by default)."""
    from cftdata.grid import expand_grid

    _setup_logging(verbose, quiet)
    if seed is not None:
        overrides = (*overrides, f"run.seed={seed}")
    variants = expand_grid(recipe, overrides, grids)
    if not dry_run:
        from cftdata.supervise import supervise

        supervise()  # from here on, in a child process whose native crashes the parent reports
    results = []
    for label, rec, var_overrides in variants:
        if label:
            click.echo(f"== grid: {label}")
        if dry_run:
            from cftdata.dryrun import dry_run as estimate
            from cftdata.dryrun import format_estimate

            click.echo("\n".join(format_estimate(estimate(rec, limit, sample, preflight=not no_preflight))))
            continue
        results.append((label, _build_one(rec, recipe, var_overrides, limit, sample, quiet, not no_preflight)))
    if grids and results:
        from cftdata.grid import comparison_table

        click.echo(comparison_table(results))


def _build_one(rec, recipe: str, overrides: tuple[str, ...], limit: int | None, sample: int | None, quiet: bool,
               preflight: bool = True):
    from cftdata.pipeline import build as run_build
    from cftdata.progress import Reporter

    result = run_build(rec, limit=limit, sample=sample, reporter=Reporter(quiet=quiet), recipe_file=recipe,
                       overrides=overrides, preflight=preflight)
    m = result.manifest
    verdicts = m["stages"].get("verdict", {}).get("verdicts", {})
    calls = sum(u.get("calls_made", 0) for u in m["usage"].values())
    hits = sum(u.get("cache_hits", 0) for u in m["usage"].values())
    click.echo(f"built {result.output_dir}: {result.rows} rows, {result.rejected} rejected "
               f"(rejects.parquet), verdicts {json.dumps(verdicts)}, model calls {calls} "
               f"(+{hits} from cache), {m['seconds']} s")
    resume = m.get("resume") or {}
    if resume.get("resumed"):
        click.echo(f"resumed an interrupted build: {resume['answers_from_cache']} answers recovered from the "
                   f"cache, {resume['sent']} requests sent, of which {resume['resent']} had been sent before without "
                   "an answer stored (in flight when it stopped, or failed)")
    for line in _quality_lines(m["stages"]):
        click.echo(line)
    if rec.hub is not None:
        from cftdata.publish import push_build

        pushed = push_build(result.output_dir, **rec.hub.model_dump())
        click.echo(f"pushed to {pushed.url} (config {pushed.config}, revision {pushed.revision})")
    return result


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe value (repeatable).")
def check(recipe: str, overrides: tuple[str, ...]) -> None:
    """Check every model endpoint of a RECIPE with one minimal request each (the build's preflight, alone):
    one line per endpoint, OK or the exact problem; exit 1 if any fails."""
    from cftdata.endpoints import check_recipe, format_checks
    from cftdata.recipe import load_recipe

    rec = load_recipe(recipe, overrides)
    rec.check_output_dir()
    checks = check_recipe(rec)
    if not checks:
        click.echo("no model endpoints: this recipe makes no model call")
    for line in format_checks(checks):
        click.echo(line)
    failed = [c for c in checks if c.ok is False]
    if failed:
        _fail(f"{len(failed)} of {len(checks)} model endpoints failed the check (see above).", 1)
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
