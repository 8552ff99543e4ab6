"""`lkmseg convert`: turn a trained square run into a separable run (SVD, no retraining)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def convert_cmd(
    run: Annotated[Path, typer.Argument(help="A run folder trained with a square block.")],
    block: Annotated[str, typer.Option(
        help="What each square kxk conv becomes: 1xK (1xK then Kx1), gcnK or KxK; a literal "
             "K keeps each conv's kernel, e.g. 1xK turns 5x5 into 1x5.")] = "1xK",
    rank: Annotated[Optional[str], typer.Option(
        help="Intermediate channels of each pair: an integer, or a fraction of the out "
             "channels such as 0.5 (default: the out channels, as lkmseg's 1xK block).")] = None,
    where: Annotated[str, typer.Option(
        help="Convs to convert: all, encoder, decoder or a regular expression on layer "
             "names.")] = "all",
    fine_tune: Annotated[Optional[str], typer.Option(
        help="Then fine-tune for this long (e.g. 60s) at --lr with cosine decay.")] = None,
    lr: Annotated[float, typer.Option(min=0.0, help="Fine-tuning learning rate.")] = 3e-4,
    bn_images: Annotated[int, typer.Option(
        min=1, help="Training images BatchNorm statistics are re-estimated on.")] = 256,
    data: Annotated[Optional[Path], typer.Option(
        help="The data the run was trained on, if it moved.")] = None,
    full_res: Annotated[bool, typer.Option(
        help="Also score at each image's original resolution.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    out: Annotated[Optional[Path], typer.Option(
        help="The new run folder (default: beside RUN, named RUN-<block>).")] = None,
) -> None:
    """Convert a trained square run into a separable one: each kxk kernel is fitted by a
    truncated SVD (1xK then Kx1, Jaderberg et al. 2014), BatchNorm statistics re-estimated on
    training images, then optionally fine-tuned. Writes a normal run folder (export, bench,
    predict, serve work on it) with convert.json: energy kept per layer and the validation
    Dice of the source, the converted and the fine-tuned model."""
    from rich.console import Console

    from lkmseg.api.run import convert
    from lkmseg.cli.options import check_finite, parse_duration

    check_finite(lr, "--lr")
    console = Console(soft_wrap=True)
    new = convert(run, block, rank=parse_rank(rank), where=where,
                  fine_tune=parse_duration(fine_tune, "--fine-tune") if fine_tune else None,
                  out=out, console=console, lr=lr, bn_images=bn_images,
                  data=data, device=device, full_res=full_res)
    run_dir, res = new.path, new.summary["convert"]
    d = res["dice"]
    line = " | ".join(f"{k.replace('_', ' ')} {v['dice']:.4f}" for k, v in d.items())
    console.print(f"done: {run_dir} | val dice: {line} | energy kept median "
                  f"{res['surgery']['energy_kept_median']:.3f}", highlight=False)


def parse_rank(text: str | None) -> int | float | None:
    """'16' -> 16 channels; '0.5' -> half the out channels."""
    from lkmseg.errors import UserError

    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value.is_integer() and "." not in text and value >= 1:
        return int(value)
    if 0 < value <= 1:
        return value
    raise UserError(f"--rank {text!r}: give intermediate channels (an integer >= 1) or a "
                    "fraction of the out channels in (0, 1], e.g. 0.5")


def register(app: typer.Typer) -> None:
    app.command("convert")(convert_cmd)
