"""Dice and IoU of binary masks: the one definition train, export gates, bench and val use.

Two empty masks agree perfectly (score 1). numpy functions take masks of any dtype (non-zero is
foreground); ``dice_per_image`` is the torch form training's validation runs on its device.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch


def counts(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """(intersection, |a|, |b|) of two masks: sum them over images for pooled scores."""
    a, b = a.astype(bool, copy=False), b.astype(bool, copy=False)
    return int(np.logical_and(a, b).sum()), int(a.sum()), int(b.sum())


def dice_of(inter: int, na: int, nb: int) -> float:
    """Dice from ``counts`` (or their sums)."""
    return 1.0 if na + nb == 0 else 2.0 * inter / (na + nb)


def iou_of(inter: int, na: int, nb: int) -> float:
    """IoU from ``counts`` (or their sums)."""
    union = na + nb - inter
    return 1.0 if union == 0 else inter / union


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two binary masks of one shape."""
    return dice_of(*counts(a, b))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two binary masks of one shape."""
    return iou_of(*counts(a, b))


def mean_dice(preds: Iterable[np.ndarray], targets: Iterable[np.ndarray | None]) -> float | None:
    """Mean per-image Dice over the pairs whose target exists and matches in shape; None if none."""
    vals = [dice(p, t) for p, t in zip(preds, targets) if t is not None and t.shape == p.shape]
    return float(np.mean(vals)) if vals else None


def agreement(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> tuple[float, float]:
    """(pooled Dice of all pixels together — a few pixels of a tiny mask cannot sink it —,
    the worst image's Dice), in one pass."""
    inter = total = 0
    worst = 1.0
    for x, y in zip(xs, ys):
        i, na, nb = counts(x, y)
        inter, total = inter + i, total + na + nb
        worst = min(worst, dice_of(i, na, nb))
    return dice_of(inter, total, 0), worst


def pooled_dice(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> float:
    """Dice of all images' pixels together."""
    return agreement(xs, ys)[0]


def dice_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary masks (B, ...) -> Dice per image (B,), on their device."""
    p = pred.flatten(1).float()
    t = target.flatten(1).float()
    inter = (p * t).sum(1)
    total = p.sum(1) + t.sum(1)
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))
