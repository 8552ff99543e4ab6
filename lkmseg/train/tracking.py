"""Experiment tracking: TensorBoard event files in the run folder, and results.png.

TensorBoard (``torch.utils.tensorboard``, the ``tensorboard`` extra) logs loss, learning
rate and images/s per step, validation Dice, and a few validation images with their
predicted masks; it is skipped silently when tensorboard is not installed. A resumed run
opens its writer with ``purge_step`` = the checkpoint's step + 1, so steps logged after the
last checkpoint by a killed process are dropped and never appear twice.
``tensorboard --logdir runs`` shows every run of a study side by side.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

N_IMAGES = 4  # validation images shown with their masks


class TensorBoard:
    """A SummaryWriter on ``run_dir``, or nothing when tensorboard is absent."""

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the optional extra is not installed: no event files
            return
        purge = resume_step + 1 if resume_step is not None else None
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge)

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def train_step(self, step: int, loss: float, lr: float, images_per_s: float) -> None:
        if self.writer is None:
            return
        if math.isfinite(loss):
            self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)
        if math.isfinite(images_per_s):
            self.writer.add_scalar("train/images_per_s", images_per_s, step)

    def validation(self, step: int, dice: float, images: np.ndarray, masks: np.ndarray,
                   predict, cut: float = 0.0) -> None:  # noqa: ANN001 — (B,3,H,W) -> logits
        """Validation Dice, and ``N_IMAGES`` images side by side with their ground truth
        (red outline) and predicted mask (green: logit > ``cut``), made with ``predict``."""
        if self.writer is None:
            return
        self.writer.add_scalar("val/dice", dice, step)
        if len(images):
            grid = prediction_panels(images[:N_IMAGES], masks[:N_IMAGES], predict, cut)
            self.writer.add_images("val/predictions", grid, step, dataformats="NHWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@torch.no_grad()
def prediction_panels(images: np.ndarray, masks: np.ndarray, predict,  # noqa: ANN001
                      cut: float = 0.0) -> np.ndarray:
    """uint8 (N, H, 2W, 3): each image beside its prediction overlay (ground truth outlined)."""
    import cv2

    from lkmseg.predict.sinks import overlay

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
    pred = (predict(x).float() > cut).cpu().numpy()[:, 0].astype(np.uint8)  # (N, H, W)
    out = []
    for img, gt, p in zip(images, masks, pred):
        ov = overlay(img, p)
        contours, _ = cv2.findContours(gt.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(ov, contours, -1, (255, 40, 40), 1)
        out.append(np.concatenate([img, ov], axis=1))
    return np.stack(out)


def write_results_png(run_dir: Path) -> Path | None:
    """results.png (loss and Dice curves) from the run's CSV logs; None when no log yet."""
    from lkmseg.plots import results_figure

    return results_figure(Path(run_dir), Path(run_dir) / "results.png")
