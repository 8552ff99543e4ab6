"""`lkmseg export`: ONNX fp32/fp16/int8 (+ TensorRT) with parity and accuracy-gate reports."""

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
    console = Console(stderr=True)
    console.print(t)
    if report.get("accuracy_gate"):
        console.print(gate_table(report["accuracy_gate"], formats.get("onnx_int8")))


def gate_table(gate: dict, int8: dict | None):
    """Dice of every runtime x precision against fp32 on the gate images, and the verdicts."""
    from rich.markup import escape
    from rich.table import Table

    ref = gate.get("reference", {}).get("dice")
    t = Table(title=f"accuracy gate: {escape(gate['origin'])}, {gate['metric']}; fp32 (torch) "
                    f"{_fmt(ref, '.4f')}, tolerance {gate['tolerance']}")
    for col in ("runtime / precision", "Dice", "Δ vs fp32", "masks vs torch", "verdict"):
        t.add_column(col, justify="left" if col in ("runtime / precision", "verdict")
                     else "right")
    for key, c in gate.get("candidates", {}).items():
        if "dice" not in c:
            verdict = f"[yellow]{escape(c.get('reason', c.get('status', '?')))}[/]"
        elif c.get("reproducible") is False:
            verdict = (f"[red]varies between loads[/] (mask Dice "
                       f"{c.get('repro_mask_dice', 0):.4f}): not used")
        else:
            verdict = "[green]pass[/]" if c.get("passed") else "[red]FAIL[/]"
        t.add_row(key, _fmt(c.get("dice"), ".4f"), _fmt(c.get("delta"), "+.4f"),
                  _fmt(c.get("mask_dice_vs_torch"), ".4f"), verdict)
    if int8:
        t.caption = (f"INT8 {int8.get('status')}: {escape(str(int8.get('recipe')))} after "
                     f"{len(int8.get('attempts', []))} recipe(s); calibration: "
                     f"{escape(int8['calibration']['origin'])}")
    return t


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
    int8: Annotated[bool, typer.Option(
        "--int8/--no-int8", help="Write model.int8.onnx (static QDQ, accuracy-gated).")] = True,
    calib: Annotated[Path | None, typer.Option(
        help="INT8 calibration images: a folder or dataset (default: the run's training "
             "images).")] = None,
    calib_images: Annotated[int, typer.Option(help="INT8 calibration images (first recipe; "
                                                   "later recipes use 4x).")] = 16,
    int8_tolerance: Annotated[float, typer.Option(
        help="Accuracy gate: max Dice drop vs fp32 on the validation images.")] = 0.005,
    gate_images: Annotated[int, typer.Option(
        help="Validation images the accuracy gate uses (spread over held-out groups).")] = 96,
    gate_data: Annotated[Path | None, typer.Option(
        help="The accuracy gate's images: a dataset with masks (default: the run's validation "
             "images; needed when they moved).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN/export).")] = None,
    triton: Annotated[Path | None, typer.Option(
        "--triton", help="Also write a Triton model repository here (onnxruntime, openvino "
                         "and, when built, tensorrt models); with --no-onnx and no --trt, "
                         "only write it from the existing export.")] = None,
    triton_name: Annotated[str | None, typer.Option(
        help="--triton: the models' base name (default: the run folder's name).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="--triton: replace model folders and a README.md that lkmseg did not "
                        "write, that changed since, or that hold another run's model.")] = False,
) -> None:
    """Export RUN to ONNX fp32 + fp16 + INT8 (and TensorRT), checking parity against PyTorch
    and every runtime x precision against the accuracy gate.

    Writes RUN/export/{model.onnx, model.fp16.onnx, model.int8.onnx, model.engine(+.json),
    report.json}; --triton REPO adds a Triton model repository (REPO/<run>-<backend>/, plus
    <run>-<backend>-int8/ for onnxruntime/openvino where the INT8 file passed its gate). INT8:
    ONNX Runtime static QDQ, per-channel, calibrated on the run's training images, checked in
    ONNX Runtime and OpenVINO: its Dice vs ground truth on the validation images must stay
    within --int8-tolerance of fp32, else fixed fallback recipes are tried (float first/last
    conv, more images, Percentile, Entropy). Exits 3 when a format misses its parity bar (fp32:
    max |Δ logit| <= 1e-3 and mask Dice >= 0.999; fp16: mask Dice >= 0.995) or INT8 misses the
    gate after every recipe (kept as model.int8.rejected.onnx; --no-int8 skips INT8); exits 2
    when --trt cannot run here. Files are kept.
    """
    from rich.console import Console
    from rich.markup import escape

    from lkmseg.api.tasks import export

    console = Console(stderr=True)
    repo_opts = _repo_options(triton_name, max_batch, force)
    if triton is not None and not onnx and not trt:
        _triton_repo(run, out, triton, repo_opts, console)
        return
    if triton is not None:
        from lkmseg.export.triton_repo import precheck

        precheck(triton, run, repo_opts)
    result = export(run, check=False, log=lambda m: console.print(f"[dim]{escape(m)}[/]"),
                    onnx=onnx, fp16=fp16, trt=trt, dynamic=dynamic, size=parse_size(size),
                    batch=batch, opset=opset, trt_precision=trt_precision, max_batch=max_batch,
                    workspace=workspace, parity_images=parity_images, out=out, int8=int8,
                    calib=calib, calib_images=calib_images, int8_tolerance=int8_tolerance,
                    gate_images=gate_images, gate_data=gate_data)
    print_report(result.report)
    for key, path in result.files.items():
        typer.echo(f"{key}: {path}")
    typer.echo(f"report: {result.report_path}")
    result.check()
    if triton is not None:
        _triton_repo(run, out, triton, repo_opts, console)


def _repo_options(name: str | None, max_batch: int | None, force: bool):  # noqa: ANN202
    from lkmseg.export.triton_repo import TritonRepoOptions

    return TritonRepoOptions(name=name, max_batch=max_batch or 8, force=force)


def _triton_repo(run: Path, out: Path | None, repo: Path, opts, console) -> None:  # noqa: ANN001
    from rich.markup import escape

    from lkmseg.export.triton_repo import write_triton_repo

    res = write_triton_repo(out or run / "export", repo, run, opts,
                            log=lambda m: console.print(f"[dim]{escape(m)}[/]"))
    for note in res.notes:
        console.print(f"[yellow]{escape(note)}[/]")
    for name, folder in res.models.items():
        typer.echo(f"triton: {name} -> {folder}")
    typer.echo(f"triton: {repo / 'README.md'}")


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
