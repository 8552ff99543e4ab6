"""Run-length encoding of binary masks in the Kaggle Carvana submission format.

A mask is flattened in row-major order (pixel 1 is the top-left pixel, pixel 2 its right
neighbour, pixel W+1 the first pixel of the second row) and written as space-separated
``start length`` pairs with 1-indexed starts. An empty mask is the empty string.

Row-major is what Carvana's own ``train_masks.csv`` uses (its reference encoders flatten the
1280x1918 mask with ``mask.flatten()`` and decode with ``reshape(1280, 1918)``), although the
generic Kaggle text speaks of "top to bottom, then left to right" (column-major) — that is the
convention of other competitions; pass ``order="F"`` for those.
"""

from __future__ import annotations

import numpy as np

from lkmseg.errors import UserError


def rle_encode(mask: np.ndarray, order: str = "C") -> str:
    """Binary mask (H, W), any dtype, nonzero = foreground -> ``"start length ..."``."""
    if mask.ndim != 2:
        raise ValueError(f"rle_encode expects a 2-D mask, got shape {mask.shape}")
    flat = (np.asarray(mask) != 0).ravel(order=order).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flat, [0]))))  # 0-based run bounds
    starts, ends = edges[0::2], edges[1::2]
    runs = np.empty(2 * starts.size, dtype=np.int64)
    runs[0::2] = starts + 1
    runs[1::2] = ends - starts
    return " ".join(map(str, runs.tolist()))


def rle_decode(rle: str, shape: tuple[int, int], order: str = "C") -> np.ndarray:
    """``"start length ..."`` -> uint8 {0, 1} mask of ``shape`` = (H, W)."""
    h, w = int(shape[0]), int(shape[1])
    text = (rle or "").strip()
    out = np.zeros(h * w, dtype=np.uint8)
    if not text:
        return out.reshape((h, w), order=order)
    try:
        nums = np.array(text.split(), dtype=np.int64)
    except ValueError as e:
        raise UserError(f"invalid RLE string ({e}); expected space-separated integers") from e
    if nums.size % 2:
        raise UserError("invalid RLE string: odd number of values (expected start/length pairs)")
    starts, lengths = nums[0::2] - 1, nums[1::2]
    if (starts < 0).any() or (lengths <= 0).any() or (starts + lengths > h * w).any():
        raise UserError(f"invalid RLE string: runs fall outside a {h}x{w} mask "
                        "(starts are 1-indexed, lengths positive)")
    for s, n in zip(starts.tolist(), lengths.tolist()):
        out[s : s + n] = 1
    return out.reshape((h, w), order=order)
