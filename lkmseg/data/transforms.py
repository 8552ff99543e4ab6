"""Preprocessing shared by training, export parity, every engine and predict; augmentations.

Preprocess: RGB uint8 (H, W, 3) -> resized with INTER_AREA to the model's (h, w) ->
float32 in [0, 1], (B, 3, h, w). Postprocess: logits (B, 1, h, w) -> resized back to the
original size (bilinear on logits) -> mask = logit > logit(threshold).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch


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
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in [0, 1], contiguous (NCHW strides: a
    permuted view would hand channels_last strides to whatever runs it)."""
    t = torch.from_numpy(np.ascontiguousarray(batch_hwc))
    return t.permute(0, 3, 1, 2).contiguous().float().div_(255.0)


def preprocess(images: list[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """A list of RGB uint8 images of any sizes -> model input (B, 3, H, W) float32."""
    return to_tensor(np.stack([resize_image(im, size) for im in images]))


def logit_threshold(threshold: float) -> float:
    """The logit above which sigmoid(logit) > threshold."""
    t = min(max(float(threshold), 1e-6), 1 - 1e-6)
    return math.log(t / (1 - t))


def resize_logits(logits: torch.Tensor | np.ndarray,
                  sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Logits (B, 1, h, w) -> one float32 (H, W) map per image at its original size:
    bilinear with half-pixel centres (OpenCV's INTER_LINEAR = torch's bilinear with
    align_corners=False, to float rounding). OpenCV, not torch: faster, and no OpenMP team per
    calling thread, so a server's instances post-process side by side."""
    lg = (logits.detach().float().cpu().numpy() if isinstance(logits, torch.Tensor)
          else np.asarray(logits, dtype=np.float32))
    out = []
    for i, (h, w) in enumerate(sizes):
        m = lg[i, 0]
        if m.shape != (h, w):
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(np.ascontiguousarray(m, dtype=np.float32))
    return out


def postprocess(logits: torch.Tensor | np.ndarray, orig_sizes: Sequence[tuple[int, int]],
                threshold: float = 0.5) -> list[np.ndarray]:
    """Logits (B, 1, h, w) -> one uint8 {0,1} mask per image at its original (H, W):
    ``resize_logits`` then logit > logit(threshold)."""
    cut = logit_threshold(threshold)
    return [(m > cut).astype(np.uint8) for m in resize_logits(logits, orig_sizes)]


# ----------------------------------------------------------------------------- augmentation


def _affine(u: np.ndarray, h: int, w: int, shift: float, scale: float, rotate_deg: float,
            p_flip: float) -> np.ndarray:
    """The 2x3 pixel map output -> input of one sample's flip, scale, rotation and shift: the
    seed study's transform in torch's normalised coordinates (``affine_grid``,
    align_corners=False), composed with the pixel <-> normalised maps."""
    flip = -1.0 if u[0] < p_flip else 1.0
    s = 1 + (u[1] * 2 - 1) * scale
    ang = (u[2] * 2 - 1) * math.radians(rotate_deg)
    tx, ty = (u[3] * 2 - 1) * shift * 2, (u[4] * 2 - 1) * shift * 2
    cos, sin = math.cos(ang) / s, math.sin(ang) / s
    theta = np.array([[cos * flip, -sin, tx], [sin * flip, cos, ty], [0, 0, 1]])
    to_norm = np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])
    to_pix = np.array([[w / 2, 0, (w - 1) / 2], [0, h / 2, (h - 1) / 2], [0, 0, 1]])
    return (to_pix @ theta @ to_norm)[:2]


def augment_uint8(img: np.ndarray, mask: np.ndarray, seed: int,
                  shift: float = 0.0625, scale: float = 0.1, rotate_deg: float = 0.0,
                  hue: float = 0.03, sat: float = 0.15, val: float = 0.15,
                  p_flip: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The seed's augmentations for one sample, in uint8 with OpenCV: horizontal flip,
    shift-scale(-rotate) (bilinear, reflected border; the mask bilinear then rounded), HSV
    jitter (OpenCV's 8-bit full-range HSV through one lookup table; skipped when all three
    ranges are 0).

    img: (H, W, 3) RGB uint8; mask: (H, W) uint8 {0, 1}; ``seed`` fixes every draw. Several
    times less work than the same augmentations on float tensors (which this replaced): on a
    CPU whose cores all train, data work in the training thread is training time."""
    u = np.random.default_rng(seed).random(8)
    h, w = mask.shape
    m = _affine(u, h, w, shift, scale, rotate_deg, p_flip)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    img = cv2.warpAffine(img, m, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpAffine(mask, m, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT)
    if not (hue or sat or val):
        return img, mask
    lvl = np.arange(256, dtype=np.float64)
    lut = np.stack([(lvl + round((u[5] * 2 - 1) * hue * 256)) % 256,
                    np.clip(np.rint(lvl * (1 + (u[6] * 2 - 1) * sat)), 0, 255),
                    np.clip(np.rint(lvl * (1 + (u[7] * 2 - 1) * val)), 0, 255)], 1)
    hsv = cv2.LUT(cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL), lut.astype(np.uint8)[:, None])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL), mask
