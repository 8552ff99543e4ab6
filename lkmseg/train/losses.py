"""BCE + soft Dice loss (the Dice metric itself lives in lkmseg.metrics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """logits, target: (B, 1, H, W); target in {0, 1}. Mean BCE + (1 - soft Dice per image)."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)
    return bce + (1 - dice).mean()
