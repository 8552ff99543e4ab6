"""`lkmseg compare`: train every block for the same wall-clock budget, export, bench, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def compare_cmd(
    blocks: Annotated[str, typer.Option(help="Comma list, e.g. 3x3,5x5,1x5,7x7,1x7,gcn15.")] =
        "3x3,5x5,1x5",
    arch: Annotated[str, typer.Option(
        help="unet or smp:<Arch>:<encoder> (then KxK in --blocks is the model as built).")] =
        "unet",
    where: Annotated[str, typer.Option(
        help="Square convs each block replaces: all, encoder, decoder or a regex.")] = "all",
    data: Annotated[Optional[Path], typer.Option(
        help="Dataset folder (default: the embedded synthetic set).")] = None,
    size: Annotated[str, typer.Option(help="Training size N or HxW.")] = "128",
    budget: Annotated[str, typer.Option(help="Wall-clock budget per block: 90s, 10m, 1h.")] = "10m",
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak AdamW learning rate.")] = 3e-3,
    width: Annotated[int, typer.Option(min=1)] = 8,
    depth: Annotated[int, typer.Option(min=1, max=8)] = 6,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    engines: Annotated[str, typer.Option(help="Engines to bench.")] =
        "torch,onnxruntime,openvino,tensorrt",
    batch_sizes: Annotated[str, typer.Option(help="Inference batch sizes.")] = "1,8",
    seed: Annotated[int, typer.Option()] = 0,
    bench_reps: Annotated[int, typer.Option(min=3, help="Timed calls per configuration.")] = 30,
    limit: Annotated[int, typer.Option(min=1, help="Validation images used for bench Dice.")] = 32,
    out: Annotated[Path, typer.Option(help="Output folder (runs/, report.md, plots).")] =
        Path("runs/compare"),
) -> None:
    """The seed study end to end: same wall-clock budget for every block, then export, bench
    and one report (report.md, Dice curves, tables, ratios). Re-running resumes/reuses runs."""
    from rich.console import Console

    from lkmseg.api.tasks import compare

    console = Console(soft_wrap=True, width=None if Console().is_terminal else 200)
    res = compare(blocks, data, size, budget, batch_size, lr, width, depth, device, engines,
                  batch_sizes, seed, bench_reps, limit, out, console, arch=arch, where=where)
    console.print(f"report: {res.report}")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
