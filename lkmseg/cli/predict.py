"""`lkmseg predict`: masks for images, folders, globs, URLs, videos, streams and cameras."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer


def _progress_factory(console):
    """A rich progress bar per run; returns (factory, stop)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    prog = Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    transient=True)

    started = []

    def start(total: int | None) -> Callable[[int], None]:
        prog.start()
        started.append(True)
        task = prog.add_task("predict", total=total)
        return lambda n: prog.advance(task, n)

    def stop() -> None:
        if started:
            prog.stop()

    return start, stop


def predict_cmd(
    model: Annotated[Path, typer.Argument(help="Run folder, export folder, .onnx, .engine "
                                               "or .safetensors.")],
    source: Annotated[str, typer.Argument(
        help="An image, a folder of images, a quoted glob ('shots/**/*.jpg'), an http(s) URL "
             "of an image or video, a video (.mp4 .avi .mov .mkv), an rtsp:// stream or a "
             "camera index (0).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    engine: Annotated[str, typer.Option(
        help="auto (fastest measured here) | torch | onnxruntime | openvino | tensorrt.")] = "auto",
    precision: Annotated[str | None, typer.Option(
        help="fp32 | fp16 | bf16 | int8 (engine-dependent; default: the engine's).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per engine call.")] = 4,
    overlay: Annotated[bool, typer.Option("--overlay", help="Also write overlays.")] = False,
    rle: Annotated[Path | None, typer.Option(help="Write a Carvana submission CSV "
                                                  "(img,rle_mask).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Mask threshold on the sigmoid "
                                                         "(default: the model's).")] = None,
    json_path: Annotated[str | None, typer.Option(
        "--json", help="Write one JSON line per image or frame (source, frame, size, "
                       "coverage, mask file; rle with --rle) to this file ('-': stdout, as "
                       "they come).")] = None,
    max_frames: Annotated[int | None, typer.Option(
        help="Stop a camera or stream after this many frames (else: Ctrl-C).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Predict masks for images, a folder, a glob, a URL, a video, a stream or a camera.

    Images: one PNG mask (0/255, original size) per image, named by its stem. Videos, streams
    and cameras: a mask video (and an overlay video with --overlay); Ctrl-C ends a camera or
    stream and keeps what was written. --rle writes a Kaggle Carvana CSV (img,rle_mask) of
    the full-resolution masks; --json one JSON line per image or frame.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from lkmseg.predict import PredictOptions, predict

    console = Console(stderr=True)
    start, stop = _progress_factory(console) if progress else (None, lambda: None)
    opts = PredictOptions(engine=engine, precision=precision, device=device,
                          batch_size=batch_size, overlay=overlay, rle=rle, threshold=threshold,
                          json=json_path, max_frames=max_frames)
    try:
        s = predict(model, source, out, opts, progress=start)
    finally:
        stop()
    for note in s.skipped_engines:
        console.print(f"[dim]auto skipped {escape(note)}[/]")
    if s.auto_choice:
        console.print(escape(s.auto_choice))
    typer.echo(f"engine: {s.engine}", err=True)
    t = Table(title=escape(f"predict {s.kind} {s.source}"))
    for col in ("frames", "wall s", "end-to-end frames/s", "engine frames/s"):
        t.add_column(col, justify="right")
    t.add_row(str(s.frames), f"{s.seconds:.2f}", f"{s.fps:.1f}", f"{s.engine_fps:.1f}")
    console.print(t)
    typer.echo(f"wrote {len(s.outputs)} files to {out}", err=json_path == "-")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_cmd)
