"""The ``cftdata push`` command. Only click and the standard library are imported at module level, so that
``cftdata --help`` stays instant; the Hub client is imported when the command runs.

Register it on the main group with ``main.add_command(push)``. Run alone (``python -m
cftdata.publish.commands``) it behaves the same: user errors print one paragraph and exit 2.
"""

from __future__ import annotations

import sys

import click


@click.command()
@click.argument("build_dir", metavar="BUILD_DIR", type=click.Path(file_okay=False))
@click.option("--repo", required=True, metavar="ORG/NAME", help="Hub dataset repository (created if missing).")
@click.option("--config", "config", metavar="NAME",
              help="Publish as this named config (data under NAME/); other configs in the repo are kept.")
@click.option("--private", is_flag=True, help="Create the repository as private (refuses an existing public one).")
@click.option("--revision", metavar="BRANCH", help="Branch to commit to (created from main if missing).")
@click.option("--include-rejects", is_flag=True, help="Also upload rejects.parquet (not a split of the dataset).")
@click.option("--dry-run", "dry_run_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Upload nothing: write exactly the files that would be uploaded into DIR (a new or empty folder).")
def push(build_dir: str, repo: str, config: str | None, private: bool, revision: str | None, include_rejects: bool,
         dry_run_dir: str | None) -> None:
    """Publish the build in BUILD_DIR (outputs/<name>) to the Hugging Face Hub.

    Uploads the data files, the dataset card (merged with the card already in the repository, so other
    configs stay listed) and the manifest, in one commit. The token comes from HF_TOKEN or `hf auth login`.
    """
    from cftdata.publish.push import dry_run, push_build

    if dry_run_dir:
        result, note = dry_run(build_dir, repo, dry_run_dir, config=config, revision=revision,
                               include_rejects=include_rejects)
        click.echo(f"dry run: {len(result.files)} file(s) written to {dry_run_dir} (nothing uploaded) for "
                   f"{result.repo}, config {result.config}, revision {result.revision}:")
        for path in result.files:
            click.echo(f"  {path}")
        for path in result.deleted:
            click.echo(f"  would delete {path} (left over from an earlier push of this config)")
        if note:
            click.echo(f"note: {note}", err=True)
        elif result.card_merged:
            click.echo("README.md is merged with the repository's current card.")
        return
    result = push_build(build_dir, repo, config=config, private=private, revision=revision,
                        include_rejects=include_rejects)
    state = "unchanged (already up to date)" if result.unchanged else f"commit {(result.commit_oid or '')[:10]}"
    click.echo(f"pushed {build_dir} to {result.url} (config {result.config}, revision {result.revision}): "
               f"{len(result.files)} file(s), {len(result.deleted)} deleted, {state}")


def main(argv: list[str] | None = None) -> None:
    """Run ``push`` as a standalone command (errors as one paragraph, exit 2, like the ``cftdata`` group)."""
    from cftdata.errors import CftdataError

    try:
        push.main(args=argv, prog_name="cftdata push", standalone_mode=False)
    except CftdataError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
