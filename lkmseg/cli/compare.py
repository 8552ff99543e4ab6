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

    from lkmseg.bench.compare import CompareOptions, run_compare
    from lkmseg.cli.options import parse_duration, parse_list, parse_size
    from lkmseg.engines.factory import canonical_name
    from lkmseg.errors import UserError
    from lkmseg.models import ModelConfig

    names = [ModelConfig(block=b, arch=arch, where=where).block
             for b in parse_list(blocks, "--blocks")]
    if len(set(names)) != len(names):
        raise UserError(f"--blocks {blocks!r}: a block is listed twice")
    try:
        bss = [int(b) for b in parse_list(batch_sizes, "--batch-sizes")]
    except ValueError as e:
        raise UserError(f"--batch-sizes {batch_sizes!r}: use integers like 1,8") from e
    engs = [canonical_name(e) for e in parse_list(engines, "--engines")]
    if "auto" in engs:
        raise UserError("--engines: name them (torch,onnxruntime,openvino,tensorrt)")
    if data is not None and not data.exists():
        raise UserError(f"{data}: data folder not found; check --data")
    console = Console(soft_wrap=True, width=None if Console().is_terminal else 200)
    o = CompareOptions(blocks=names, arch=arch, where=where, data=data, size=parse_size(size),
                       budget_s=parse_duration(budget, "--budget"), out=out, device=device,
                       batch_size=batch_size, lr=lr, width=width, depth=depth, seed=seed,
                       engines=engs, batch_sizes=bss, bench_reps=bench_reps, limit=limit)
    report = run_compare(o, console)
    console.print(f"report: {report}")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
