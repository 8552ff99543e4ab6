"""Scoring a model during and after training: mean per-image Dice on the validation arrays
(at the training size, sharded over ranks), and at each image's original resolution."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from lkmseg.metrics import dice, dice_per_image
from lkmseg.train.runtime import Runtime


@torch.no_grad()
def evaluate(model: nn.Module, images: np.ndarray, masks: np.ndarray, rt: Runtime,
             batch_size: int = 16, threshold: float = 0.5) -> float:
    """Mean per-image Dice (threshold on probability) of this rank's shard, all-reduced."""
    was_training = model.training
    model.eval()
    idx = np.arange(rt.rank, len(images), rt.world)
    total = torch.zeros(2, dtype=torch.float64)
    cut = math.log(threshold / (1 - threshold))
    for s in range(0, len(idx), batch_size):
        b = idx[s:s + batch_size]
        x = torch.from_numpy(images[b]).to(rt.device).permute(0, 3, 1, 2).float().div_(255)
        logits = _forward(model, rt, x)
        y = torch.from_numpy(masks[b]).to(rt.device)[:, None]
        d = dice_per_image(logits.float() > cut, y)
        total += torch.tensor([d.sum().item(), len(b)], dtype=torch.float64)
    if rt.world > 1:
        dist.all_reduce(total)
    model.train(was_training)
    return float(total[0] / max(total[1], 1))


@torch.no_grad()
def predict_logits(model: nn.Module, rt: Runtime, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``model`` in eval mode for a float (B, 3, H, W) batch, in the run's
    precision and layout (the validation images TensorBoard shows)."""
    was_training = model.training
    model.eval()
    out = _forward(model, rt, x.to(rt.device))
    model.train(was_training)
    return out


def _forward(model: nn.Module, rt: Runtime, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` in the run's memory layout and autocast precision."""
    fmt = torch.channels_last if rt.channels_last else torch.contiguous_format
    with rt.autocast():
        return model(x.contiguous(memory_format=fmt))


@torch.no_grad()
def evaluate_full_res(model: nn.Module, items: list, size: tuple[int, int],
                      threshold: float = 0.5, device: torch.device | str = "cpu") -> float:
    """Mean Dice at each image's original resolution (logits upsampled bilinearly)."""
    from lkmseg.data.imageio import read_image, read_mask
    from lkmseg.data.transforms import postprocess, preprocess

    model.eval()
    scores = []
    for it in items:
        img, gt = read_image(it.image), read_mask(it.mask)
        logits = model(preprocess([img], size).to(device))
        pred = postprocess(logits, [img.shape[:2]], threshold)[0]
        scores.append(dice(pred, gt))
    return float(np.mean(scores)) if scores else float("nan")
