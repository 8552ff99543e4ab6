"""`lkmseg val`: Dice and IoU per image and overall on a labelled folder, any engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SHOWN = 20  # per-image rows printed (all of them are in the CSV/JSON)


def val_cmd(
    model: Annotated[str, typer.Argument(help="Run folder, export folder, saved model, model "
                                              "file or Hugging Face Hub repository id.")],
    data: Annotated[Path, typer.Option(help="Labelled folder: Carvana train/+train_masks/, "
                                            "or images/+masks/.")],
    engine: Annotated[str, typer.Option(
        help="auto (fastest measured here) | torch | onnxruntime | openvino | tensorrt.")] = "auto",
    precision: Annotated[str | None, typer.Option(
        help="fp32 | fp16 | bf16 | int8 (engine-dependent; default: the engine's).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    split: Annotated[str, typer.Option(help="all: every pair in --data; val: only the run's "
                                            "held-out groups.")] = "all",
    limit: Annotated[int | None, typer.Option(min=1, help="Score the first N pairs.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per engine call.")] = 4,
    threshold: Annotated[float | None, typer.Option(help="Mask threshold on the sigmoid "
                                                         "(default: the model's).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Folder for val_<engine>_<precision>.csv/.json (default: MODEL/val for a "
             "folder, else ./val).")] = None,
) -> None:
    """Score MODEL on every image/mask pair of --data: Dice and IoU per image (at the image's
    own size) and overall (mean per image, and pooled over all pixels); writes CSV + JSON."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from lkmseg.api import load
    from lkmseg.api.validate import evaluate_model

    console = Console(stderr=True)
    m = load(model, engine, precision, device)
    if out is None:
        out = Path(model) / "val" if Path(model).is_dir() else Path("val")
    rep = evaluate_model(m, data, split=split, limit=limit, batch_size=batch_size,
                         threshold=threshold, out=out)
    s = rep.summary()
    t = Table(title=escape(f"val {m.name} on {data} ({split}): {rep.engine}"))
    for col in ("image", "size", "Dice", "IoU"):
        t.add_column(col, justify="left" if col == "image" else "right")
    for r in rep.rows[:SHOWN]:
        t.add_row(escape(Path(r["image"]).name), f"{r['width']}x{r['height']}",
                  f"{r['dice']:.4f}", f"{r['iou']:.4f}")
    if len(rep.rows) > SHOWN:
        t.add_row(f"… {len(rep.rows) - SHOWN} more (in the CSV)", "", "", "")
    t.add_section()
    t.add_row(f"mean of {s['images']} images", "", f"{s['dice']:.4f}", f"{s['iou']:.4f}")
    t.add_row("pooled over all pixels", "", f"{s['dice_pooled']:.4f}", f"{s['iou_pooled']:.4f}")
    console.print(t)
    for f in rep.files:
        typer.echo(f"wrote {f}")


def register(app: typer.Typer) -> None:
    app.command("val")(val_cmd)
