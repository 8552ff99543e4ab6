"""`lkmseg bench`: models x engines x batch sizes, side by side, in one process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def bench_cmd(
    runs: Annotated[Optional[list[Path]], typer.Argument(
        help="Run folders (default: every run under runs/).")] = None,
    source: Annotated[Optional[Path], typer.Option(
        help="Image folder, dataset folder or video "
             "(default: the runs' validation images).")] = None,
    engines: Annotated[str, typer.Option(
        help="Comma list: torch,onnxruntime,openvino,tensorrt (each in every precision).")] =
        "torch,onnxruntime,openvino,tensorrt",
    batch_sizes: Annotated[str, typer.Option(help="Comma list of batch sizes.")] = "1,8",
    size: Annotated[Optional[str], typer.Option(help="Inference size N or HxW "
                                                "(default: each model's training size).")] = None,
    train: Annotated[bool, typer.Option(help="Also measure training images/s.")] = True,
    tf32: Annotated[bool, typer.Option(
        "--tf32", help="Also time torch with TF32 on for cuDNN and matmuls (precision 'tf32' "
                       "in the row; CUDA, compute capability >= 8.0). torch fp32 rows are "
                       "true fp32.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    reps: Annotated[int, typer.Option(min=3, help="Timed calls per configuration.")] = 30,
    rounds: Annotated[int, typer.Option(
        min=1, help="Round-robin passes the timed calls are spread over (more: finer "
                    "interleaving on a busy machine).")] = 3,
    limit: Annotated[int, typer.Option(min=1, help="Images used for Dice.")] = 32,
    dice_tolerance: Annotated[float, typer.Option(
        help="Accuracy gate: max Dice drop of a bf16/fp16/int8 row vs fp32.")] = 0.005,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("bench"),
) -> None:
    """Benchmark parameters, GFLOPs, file sizes, latency p50/p90/p99, frames/s, Dice, mask
    agreement with torch fp32, fraction of the matmul peak of the row's precision, memory and
    training images/s for every model x engine x precision; writes bench.json/csv/md + plots.

    Rows: torch fp32/bf16 (+ fp16 on CUDA, + tf32 with --tf32), onnxruntime fp32/fp16/int8,
    openvino fp32/bf16/int8, tensorrt fp32/fp16/int8. A row that cannot run here is "skipped:
    why" (exit 0). After writing its files, bench exits 2 when a model file is present but fails
    to load or run, and 3 when a row misses its accuracy gate (a rejected INT8 model, or Dice
    more than --dice-tolerance below fp32's)."""
    from rich.console import Console

    from lkmseg.api.tasks import bench
    from lkmseg.bench.report import print_table

    console = Console(soft_wrap=True, width=None if Console().is_terminal else 200)
    rep = bench(runs or None, source, engines, batch_sizes, size, device, train, reps, rounds,
                limit, dice_tolerance, out, console, tf32=tf32)
    print_table(rep.rows, rep.context, console)
    console.print("wrote " + ", ".join(str(f) for f in rep.files))
    raise_for_failures(rep.rows, out)


def raise_for_failures(rows: list[dict], out: Path) -> None:
    """Exit 2 for rows whose file failed to load/run, else 3 for rows outside their gate."""
    from lkmseg.errors import GateFailed, UserError

    failed = {}
    for r in rows:
        if str(r.get("status", "")).startswith("failed:"):
            failed.setdefault((r["model"], r["engine"], r["precision"]), r)
    if not failed:
        return
    first = sorted(failed.values(), key=lambda r: r.get("failure") != "file")[0]
    what = (f"{len(failed)} row(s) failed, first {first['model']} {first['engine']} "
            f"{first['precision']}: {first['status'][len('failed: '):]} "
            f"(results written to {out})")
    if any(r.get("failure") == "file" for r in failed.values()):
        raise UserError(what)
    raise GateFailed(what)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)
