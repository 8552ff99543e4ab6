"""The `lkmseg` command line: one module per command, each with ``register(app)``.

Expected failures (``LkmsegError``) print one line and exit with their code: 2 bad input,
3 a failed quality gate. Anything else is a bug and shows its traceback (exit 1).
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from lkmseg.errors import LkmsegError

COMMANDS = ["train", "data", "export", "predict", "val", "info", "bench", "compare", "serve",
            "convert"]


class _Group(TyperGroup):
    def invoke(self, ctx: typer.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except LkmsegError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None


app = typer.Typer(cls=_Group, no_args_is_help=True, add_completion=True,
                  pretty_exceptions_enable=False,
                  help="Square vs separable-kernel U-Nets: train, export, predict, benchmark.")



def _version(value: bool) -> None:
    if value:
        from lkmseg import __version__

        typer.echo(f"lkmseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Square vs separable-kernel U-Nets: train, export, predict, benchmark."""


for _name in COMMANDS:
    importlib.import_module(f"lkmseg.cli.{_name}").register(app)


def main() -> None:
    try:
        app()
    except LkmsegError as e:  # raised outside a command (e.g. while parsing)
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
