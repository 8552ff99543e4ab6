"""The `lkmseg` command line: one module per command, each with ``register(app)``.

Errors a user can cause (UserError) print one line and exit with code 2, no traceback.
"""

from __future__ import annotations

import importlib
import sys

import click
import typer
from typer.core import TyperGroup

from lkmseg.errors import UserError

COMMANDS = ["train", "data", "export", "predict", "info", "bench", "compare"]


class _Group(TyperGroup):
    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(cls=_Group, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Square vs separable-kernel U-Nets: train, export, predict, benchmark.")



@app.callback()
def _root() -> None:
    """Square vs separable-kernel U-Nets: train, export, predict, benchmark."""


for _name in COMMANDS:
    try:
        _mod = importlib.import_module(f"lkmseg.cli.{_name}")
    except ModuleNotFoundError as _e:  # a command module not written yet
        if _e.name != f"lkmseg.cli.{_name}":
            raise
        continue
    _mod.register(app)


def main() -> None:
    try:
        app()
    except UserError as e:  # raised outside a command (e.g. while parsing)
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
