"""``lkmseg val`` / ``lkmseg.val``: Dice and IoU per image and overall on a labelled folder,
with any engine x precision, at each image's own resolution.

Dice and IoU are ``lkmseg.metrics``' (two empty masks agree: 1.0), the ones export's parity
and accuracy gates use. "mean" averages per-image scores;
"pooled" sums intersections and unions over all images (large images weigh more).
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lkmseg.errors import UserError
from lkmseg.fsutil import write_json, write_text
from lkmseg.metrics import counts, dice_of, iou_of

if TYPE_CHECKING:
    from lkmseg.api.model import Model

SPLITS = ("all", "val")
COLUMNS = ["image", "mask", "height", "width", "dice", "iou", "coverage", "coverage_gt"]


@dataclass
class ValReport:
    """Per-image rows (image, mask, size, dice, iou, coverage) and the overall figures."""

    model: str
    engine: str
    data: str
    split: str
    rows: list[dict]
    seconds: float
    files: list[Path] = field(default_factory=list)

    @property
    def dice(self) -> float:
        """Mean per-image Dice."""
        return float(np.mean([r["dice"] for r in self.rows]))

    @property
    def iou(self) -> float:
        """Mean per-image IoU."""
        return float(np.mean([r["iou"] for r in self.rows]))

    def summary(self) -> dict:
        return {"model": self.model, "engine": self.engine, "data": self.data,
                "split": self.split, "images": len(self.rows), "dice": self.dice,
                "iou": self.iou, "dice_pooled": self._pooled("dice"),
                "iou_pooled": self._pooled("iou"), "seconds": round(self.seconds, 3)}

    def _pooled(self, which: str) -> float:
        total = [sum(r[k] for r in self.rows) for k in ("_inter", "_pred", "_gt")]
        return (dice_of if which == "dice" else iou_of)(*total)

    def to_dict(self) -> dict:
        return {**self.summary(), "per_image": [{k: r[k] for k in COLUMNS} for r in self.rows]}


def _items(data: Path, split: str, model: Model, limit: int | None) -> list:
    from lkmseg.data.datasets import find_items

    if split not in SPLITS:
        raise UserError(f"--split {split}: choose from {', '.join(SPLITS)}")
    _, items = find_items(data, model.config.train.group_pattern, require_masks=True)
    if split == "val":
        groups = set(model.config.data.get("val_groups") or [])
        if not groups:
            raise UserError(f"{model.path}: the run records no validation groups; use "
                            "--split all")
        items = [it for it in items if it.group in groups]
        if not items:
            raise UserError(f"{data}: none of the run's validation groups is in this folder; "
                            "use --split all")
    return items[:limit] if limit else items


def _row(image: Path, mask: Path, pred: np.ndarray, gt: np.ndarray) -> dict:
    if gt.shape != pred.shape:
        raise UserError(f"{mask}: mask is {gt.shape[1]}x{gt.shape[0]}, its image "
                        f"{pred.shape[1]}x{pred.shape[0]}; fix or remove the pair")
    inter, n_pred, n_gt = counts(pred, gt)
    return {"image": str(image), "mask": str(mask), "height": pred.shape[0],
            "width": pred.shape[1], "dice": dice_of(inter, n_pred, n_gt),
            "iou": iou_of(inter, n_pred, n_gt), "coverage": n_pred / pred.size,
            "coverage_gt": n_gt / gt.size, "_inter": inter, "_pred": n_pred, "_gt": n_gt}


def evaluate_model(model: Model, data: str | os.PathLike, *, split: str = "all",
                   limit: int | None = None, batch_size: int = 4,
                   threshold: float | None = None, out: str | os.PathLike | None = None,
                   progress: Any = None) -> ValReport:
    """Score ``model`` on every image/mask pair of ``data`` (Carvana or images/+masks/
    layout; ``split="val"``: only the run's held-out groups); writes val CSV + JSON to
    ``out`` when given."""
    from lkmseg.data.imageio import read_mask
    from lkmseg.predict.sources import ImageSource

    items = _items(Path(data), split, model, limit)
    src = ImageSource([it.image for it in items], "folder")
    rows, t0 = [], time.perf_counter()
    for it, r in zip(items, model.predict(src, stream=True, batch_size=batch_size,
                                          threshold=threshold)):
        rows.append(_row(it.image, it.mask, r.mask, read_mask(it.mask)))
        if progress is not None:
            progress(1)
    rep = ValReport(model.name, model.engine.describe(), str(data), split, rows,
                    time.perf_counter() - t0)
    if out is not None:
        rep.files = save(rep, Path(out), f"val_{model.engine.name}_{model.engine.precision}")
    return rep


def save(rep: ValReport, out: Path, stem: str) -> list[Path]:
    """``stem``.csv (per image, then an overall row) and ``stem``.json."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rep.rows)
    s = rep.summary()
    w.writerow({"image": "overall (mean)", "dice": s["dice"], "iou": s["iou"]})
    w.writerow({"image": "overall (pooled)", "dice": s["dice_pooled"], "iou": s["iou_pooled"]})
    write_text(out / f"{stem}.csv", buf.getvalue())
    write_json(out / f"{stem}.json", rep.to_dict())
    return [out / f"{stem}.csv", out / f"{stem}.json"]

