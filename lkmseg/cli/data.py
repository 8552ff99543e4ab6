"""`lkmseg data synth|check`: make the synthetic dataset, check a dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

data_app = typer.Typer(no_args_is_help=True, help="Dataset tools: synth, check.")


@data_app.command("synth")
def synth_cmd(
    out: Annotated[Path, typer.Argument(help="Output folder (Carvana layout).")],
    cars: Annotated[int, typer.Option(min=2, help="Number of cars (groups).")] = 12,
    views: Annotated[int, typer.Option(min=1, max=16, help="Views per car.")] = 16,
    size: Annotated[str, typer.Option(help="Image size N or HxW.")] = "320x480",
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Write the built-in synthetic Carvana look-alike (train/ + train_masks/) to OUT."""
    from lkmseg.cli.options import parse_size
    from lkmseg.data.synth import write_synthetic
    from lkmseg.errors import UserError

    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: folder exists and is not empty; choose a new OUT")
    path = write_synthetic(out, cars=cars, views=views, size=parse_size(size), seed=seed)
    typer.echo(f"wrote {cars * views} images + masks to {path}")


@data_app.command("check")
def check_cmd(
    folder: Annotated[Path, typer.Argument(help="Dataset folder.")],
    group_pattern: Annotated[Optional[str], typer.Option(help="Regex naming the group.")] = None,
) -> None:
    """Report what a dataset folder holds and every problem; exit 2 if any."""
    from rich.console import Console

    from lkmseg.data.check import check_dataset, summary_lines

    console = Console(soft_wrap=True)
    rep = check_dataset(folder, group_pattern)
    for line in summary_lines(rep):
        console.print(line, highlight=False)
    for p in rep.problems:
        console.print(f"  problem: {p}", highlight=False, markup=False)
    if rep.problems:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
