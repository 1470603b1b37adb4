"""``python -m cftdata.train {train,eval,select-checkpoint} ...``: the trainer commands without the main CLI.

``accelerate launch ... -m cftdata.train train ...`` starts every training process this way (see
:mod:`cftdata.train.launch`); select-checkpoint uses it to evaluate checkpoints in fresh processes.
"""

from __future__ import annotations

import sys

import click

from cftdata.errors import CftdataError
from cftdata.train.commands import eval_cmd, eval_compare, select_checkpoint, train


class _Group(click.Group):
    """User errors as one paragraph and exit code 2, like the main ``cftdata`` command."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CftdataError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=_Group)
def main() -> None:
    """cftdata trainer commands (also available as `cftdata train|eval|select-checkpoint`)."""


main.add_command(train)
main.add_command(eval_cmd)
main.add_command(eval_compare)
main.add_command(select_checkpoint)

if __name__ == "__main__":
    main()
