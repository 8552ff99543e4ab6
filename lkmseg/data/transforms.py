"""Preprocessing shared by training, export parity, every engine and predict; augmentations.

Preprocess: RGB uint8 (H, W, 3) -> resized with INTER_AREA to the model's (h, w) ->
float32 in [0, 1], (B, 3, h, w). Postprocess: logits (B, 1, h, w) -> resized back to the
original size (bilinear on logits) -> mask = logit > logit(threshold).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB uint8 image to ``size`` = (H, W) with area interpolation."""
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a {0,1} uint8 mask to ``size`` (area-average, then threshold at 0.5)."""
    h, w = size
    if mask.shape[:2] == (h, w):
        return mask
    m = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return (m >= 0.5).astype(np.uint8)


def to_tensor(batch_hwc: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(batch_hwc))
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def preprocess(images: list[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """A list of RGB uint8 images of any sizes -> model input (B, 3, H, W) float32."""
    return to_tensor(np.stack([resize_image(im, size) for im in images]))


def logit_threshold(threshold: float) -> float:
    """The logit above which sigmoid(logit) > threshold."""
    t = min(max(float(threshold), 1e-6), 1 - 1e-6)
    return math.log(t / (1 - t))


def postprocess(logits: torch.Tensor | np.ndarray, orig_sizes: list[tuple[int, int]],
                threshold: float = 0.5) -> list[np.ndarray]:
    """Logits (B, 1, h, w) -> one uint8 {0,1} mask per image at its original (H, W)."""
    lg = torch.as_tensor(logits).float()
    cut = logit_threshold(threshold)
    out = []
    for i, (h, w) in enumerate(orig_sizes):
        li = lg[i : i + 1]
        if li.shape[-2:] != (h, w):
            li = F.interpolate(li, size=(h, w), mode="bilinear", align_corners=False)
        out.append((li[0, 0] > cut).to(torch.uint8).cpu().numpy())
    return out


# ----------------------------------------------------------------------------- augmentation


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in [0,1] -> h,s,v in [0,1]
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = delta / maxc.clamp_min(1e-8)
    dz = delta.clamp_min(1e-8)
    # (bc - gc, 2 + rc - bc, 4 + gc - rc) of the textbook form, with one division, not three
    h = torch.where(maxc == r, g - b, torch.where(maxc == g, 2.0 * dz + b - r,
                                                  4.0 * dz + r - g)) / dz
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """The closed form c_n = v - v s clamp(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6, n = 5, 3,
    1 for r, g, b: the same values as the six-sector table (to float rounding) without
    stacking and gathering six planes per channel (2-3x faster; augmentation runs in the
    training thread on CPU, so its cost is training time)."""
    h, s, v = x.unbind(1)
    h6, vs = h * 6.0, v * s
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (h6 + n) % 6.0
        out.append(v - vs * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0))
    return torch.stack(out, 1)


def augment_batch(img: torch.Tensor, mask: torch.Tensor,
                  gen: torch.Generator | list[torch.Generator],
                  shift: float = 0.0625, scale: float = 0.1, rotate_deg: float = 0.0,
                  hue: float = 0.03, sat: float = 0.15, val: float = 0.15,
                  p_flip: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The seed's augmentations on a batch: horizontal flip, shift-scale(-rotate), HSV jitter.

    img: (B, 3, H, W) float in [0, 1]; mask: (B, 1, H, W) float {0, 1}. ``gen``: one CPU
    generator for the batch, or one per sample (then a sample's augmentation does not depend
    on which batch or process it lands in). Either way the work itself is batched.
    """
    b = img.shape[0]
    if isinstance(gen, torch.Generator):
        u = torch.rand(b, 8, generator=gen)
    else:
        u = torch.stack([torch.rand(8, generator=g) for g in gen])  # (B, 8)
    u = u.to(img.device)
    flip = (u[:, 0] < p_flip).float() * -2 + 1  # -1 flips x
    s = 1 + (u[:, 1] * 2 - 1) * scale
    ang = (u[:, 2] * 2 - 1) * math.radians(rotate_deg)
    tx, ty = (u[:, 3] * 2 - 1) * shift * 2, (u[:, 4] * 2 - 1) * shift * 2
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1),
                         torch.stack([sin * flip, cos, ty], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    img = F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection",
                        align_corners=False)
    mask = (F.grid_sample(mask, grid, mode="bilinear", padding_mode="reflection",
                          align_corners=False) > 0.5).float()
    hsv = _rgb_to_hsv(img.clamp(0, 1))
    jit = torch.stack([(u[:, 5] * 2 - 1) * hue, 1 + (u[:, 6] * 2 - 1) * sat,
                       1 + (u[:, 7] * 2 - 1) * val], 1)[..., None, None]  # (B, 3, 1, 1)
    h = (hsv[:, :1] + jit[:, :1]) % 1.0
    sv = (hsv[:, 1:] * jit[:, 1:]).clamp(0, 1)
    img = _hsv_to_rgb(torch.cat([h, sv], 1))
    return img.contiguous(), mask.contiguous()
