"""`lkmseg export`: ONNX fp32/fp16 (+ TensorRT) with a parity report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lkmseg.errors import UserError


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'256x384' or '256' -> (H, W)."""
    if text is None:
        return None
    parts = text.lower().replace("×", "x").split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) not in (1, 2) or min(vals) < 1:
        raise UserError(f"--size {text}: expected HxW (e.g. 256x384) or one number")
    return (vals[0], vals[-1])


def _fmt(v: object, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"export {report['block']} → {report['run']}/export "
                    f"(parity on {report.get('inputs', {}).get('n_images', '?')} "
                    f"{report.get('inputs', {}).get('origin', '')} images)")
    for col in ("format", "MB", "max|Δlogit|", "Dice(torch)", "Dice(GT)", "status"):
        t.add_column(col, justify="left" if col in ("format", "status") else "right",
                     no_wrap=col != "status", min_width=8 if col == "status" else None)
    formats = report["formats"]
    for name in sorted(formats, key=lambda k: k != "torch"):  # the reference first
        f = formats[name]
        if f.get("reference"):
            status = "reference"
        elif "passed" in f:
            status = "[green]pass[/]" if f["passed"] else f"[red]FAIL[/] {escape(f['failures'][0])}"
        else:
            status = f"[yellow]{f.get('status', '?')}[/] {escape(f.get('reason', ''))}"
        t.add_row(name, _fmt(f.get("mb"), ".2f"),
                  _fmt(f.get("max_abs_logit_diff"), ".2e"),
                  _fmt(f.get("mask_dice_vs_torch"), ".5f"), _fmt(f.get("dice_vs_gt"), ".4f"),
                  status)
    Console(stderr=True).print(t)


def export_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder made by `lkmseg train`.")],
    onnx: Annotated[bool, typer.Option("--onnx/--no-onnx", help="Write model.onnx (fp32).")] = True,
    fp16: Annotated[bool, typer.Option("--fp16/--no-fp16",
                                       help="Also write model.fp16.onnx (fp32 I/O).")] = True,
    trt: Annotated[bool, typer.Option("--trt", help="Build a TensorRT engine (GPU).")] = False,
    dynamic: Annotated[bool, typer.Option("--dynamic/--static",
                                          help="Dynamic batch/height/width.")] = True,
    size: Annotated[str | None,
                    typer.Option(help="Example/opt input HxW (default: training size).")] = None,
    batch: Annotated[int, typer.Option(help="Example/opt batch (static: the batch).")] = 1,
    opset: Annotated[int, typer.Option(help="ONNX opset (>= 18).")] = 18,
    trt_precision: Annotated[str, typer.Option(help="TensorRT precision: fp32|fp16.")] = "fp32",
    max_batch: Annotated[int | None, typer.Option(
        help="TensorRT profile max batch (default: max(batch, 8)).")] = None,
    workspace: Annotated[float, typer.Option(help="TensorRT workspace limit, GiB.")] = 4.0,
    parity_images: Annotated[int, typer.Option(help="Images used for the parity check.")] = 16,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN/export).")] = None,
) -> None:
    """Export RUN to ONNX fp32 + fp16 (and TensorRT), checking parity against PyTorch.

    Writes RUN/export/{model.onnx, model.fp16.onnx, model.engine(+.json), report.json}.
    Exits 3 when a format misses its parity bar (fp32: max |Δ logit| <= 1e-3 and mask Dice
    >= 0.999; fp16: mask Dice >= 0.995), 2 when --trt cannot run here; files are kept.
    """
    from rich.console import Console
    from rich.markup import escape

    from lkmseg.export import ExportOptions, export_run

    console = Console(stderr=True)
    opts = ExportOptions(onnx=onnx, fp16=fp16, trt=trt, dynamic=dynamic, size=parse_size(size),
                         batch=batch, opset=opset, trt_precision=trt_precision.lower(),
                         max_batch=max_batch, workspace_gib=workspace,
                         parity_images=parity_images, out_dir=out)
    result = export_run(run, opts, strict=False,
                        log=lambda m: console.print(f"[dim]{escape(m)}[/]"))
    print_report(result.report)
    for key, path in result.files.items():
        typer.echo(f"{key}: {path}")
    typer.echo(f"report: {result.report_path}")
    result.check()


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
