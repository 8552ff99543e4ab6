"""Experiment tracking: TensorBoard event files in the run folder, and results.png.

TensorBoard (``torch.utils.tensorboard``, the ``tensorboard`` extra) logs loss, learning
rate and images/s per step, validation Dice, and a few validation images with their
predicted masks; it is skipped silently when tensorboard is not installed. A resumed run
opens its writer with ``purge_step`` = the checkpoint's step + 1, so steps logged after the
last checkpoint by a killed process are dropped and never appear twice.
``tensorboard --logdir runs`` shows every run of a study side by side. A failed event write
(a full or read-only disk) stops TensorBoard logging with a warning, never the run: the run's
own files report such a disk (one line, exit 2).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lkmseg.files.layout import RESULTS_PNG

N_IMAGES = 4  # validation images shown with their masks


_previous_hook = threading.excepthook


def _quiet_writer_thread(args: Any) -> None:
    """TensorBoard's writer thread re-raises a failed write (printing a traceback); the main
    thread gets the same error at its next call and reports it as a warning instead."""
    if isinstance(args.exc_value, OSError) and \
            type(args.thread).__module__.startswith("tensorboard."):
        return
    _previous_hook(args)


class TensorBoard:
    """A SummaryWriter on ``run_dir``, or nothing when tensorboard is absent."""

    def __init__(self, run_dir: Path, resume_step: int | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.writer: Any = None
        self.warn = warn or (lambda _m: None)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the optional extra is not installed: no event files
            return
        threading.excepthook = _quiet_writer_thread
        purge = resume_step + 1 if resume_step is not None else None
        self._call(lambda: setattr(self, "writer", SummaryWriter(log_dir=str(run_dir),
                                                                 purge_step=purge)))

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def _call(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except OSError as e:
            writer, self.writer = self.writer, None
            if writer is not None:
                try:
                    writer.close()
                except OSError:
                    pass
            self.warn(f"TensorBoard logging stopped ({e.strerror or e}); training goes on")

    def train_step(self, step: int, loss: float, lr: float, images_per_s: float) -> None:
        w = self.writer
        if w is None:
            return

        def write() -> None:
            if math.isfinite(loss):
                w.add_scalar("train/loss", loss, step)
            w.add_scalar("train/lr", lr, step)
            if math.isfinite(images_per_s):
                w.add_scalar("train/images_per_s", images_per_s, step)

        self._call(write)

    def validation(self, step: int, dice: float, images: np.ndarray, masks: np.ndarray,
                   predict, cut: float = 0.0) -> None:  # noqa: ANN001 — (B,3,H,W) -> logits
        """Validation Dice, and ``N_IMAGES`` images side by side with their ground truth
        (red outline) and predicted mask (green: logit > ``cut``), made with ``predict``."""
        w = self.writer
        if w is None:
            return
        grid = prediction_panels(images[:N_IMAGES], masks[:N_IMAGES], predict, cut) \
            if len(images) else None

        def write() -> None:
            w.add_scalar("val/dice", dice, step)
            if grid is not None:
                w.add_images("val/predictions", grid, step, dataformats="NHWC")
            w.flush()

        self._call(write)

    def close(self) -> None:
        w, self.writer = self.writer, None
        if w is not None:
            try:
                w.close()
            except OSError:  # a full disk: the run's own files report it
                pass


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

    return results_figure(Path(run_dir), Path(run_dir) / RESULTS_PNG)
