"""`lkmseg bench`: models x engines x batch sizes, side by side, in one process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def find_runs(root: Path) -> list[Path]:
    """Run folders (config.json + weights) directly under ``root`` or one level deeper."""
    if not root.is_dir():
        return []
    cands = sorted({p.parent for pat in ("*/config.json", "*/*/config.json")
                    for p in root.glob(pat)})
    return [c for c in cands if (c / "model.safetensors").is_file()
            or (c / "last.safetensors").is_file()]


def bench_cmd(
    runs: Annotated[Optional[list[Path]], typer.Argument(
        help="Run folders (default: every run under runs/).")] = None,
    source: Annotated[Optional[Path], typer.Option(
        help="Image folder, dataset folder or video "
             "(default: the runs' validation images).")] = None,
    engines: Annotated[str, typer.Option(help="Comma list: torch,onnxruntime,tensorrt.")] =
        "torch,onnxruntime,tensorrt",
    batch_sizes: Annotated[str, typer.Option(help="Comma list of batch sizes.")] = "1,8",
    size: Annotated[Optional[str], typer.Option(help="Inference size N or HxW "
                                                "(default: each model's training size).")] = None,
    train: Annotated[bool, typer.Option(help="Also measure training images/s.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    reps: Annotated[int, typer.Option(min=3, help="Timed calls per configuration.")] = 30,
    limit: Annotated[int, typer.Option(min=1, help="Images used for Dice.")] = 32,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("bench"),
) -> None:
    """Benchmark parameters, GFLOPs, file sizes, latency p50/p90/p99, frames/s, Dice,
    memory and training images/s for every model x engine; writes bench.json/csv/md + plots."""
    from rich.console import Console

    from lkmseg.bench.report import print_table, save
    from lkmseg.bench.runner import BenchOptions, bench
    from lkmseg.cli.options import parse_list, parse_size
    from lkmseg.engines.factory import canonical_name
    from lkmseg.errors import UserError

    console = Console(soft_wrap=True, width=None if Console().is_terminal else 200)
    try:
        bss = [int(b) for b in parse_list(batch_sizes, "--batch-sizes")]
    except ValueError as e:
        raise UserError(f"--batch-sizes {batch_sizes!r}: use integers like 1,8") from e
    if any(b < 1 for b in bss):
        raise UserError(f"--batch-sizes {batch_sizes!r}: batch sizes must be >= 1")
    names = [canonical_name(e) for e in parse_list(engines, "--engines")]
    if "auto" in names:
        raise UserError("--engines: name them (torch,onnxruntime,tensorrt); bench measures "
                        "each, so 'auto' means nothing here")
    if not runs:
        runs = find_runs(Path("runs"))
        if not runs:
            raise UserError("no runs found under runs/: train one first, e.g. `lkmseg train "
                            "--block 1x5 --time-budget 5m`, or run `lkmseg compare`")
    for r in runs:
        if not (r / "config.json").is_file():
            raise UserError(f"{r}: not a run folder (no config.json); pass folders made by "
                            "`lkmseg train`")
    opts = BenchOptions(engines=names, batch_sizes=bss,
                        size=parse_size(size) if size else None, device=device, train=train,
                        reps=reps, limit=limit)
    rows, ctx = bench(list(runs), source, opts, console)
    print_table(rows, ctx, console)
    files = save(rows, ctx, out)
    console.print("wrote " + ", ".join(str(f) for f in files))


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)
