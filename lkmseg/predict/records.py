"""One prediction as data: the JSON line ``predict --json`` writes and ``Result.to_dict()``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lkmseg.data.rle import rle_encode


def record(source: str, frame: int, mask: np.ndarray, mask_file: str | Path | None = None,
           rle: bool = False) -> dict:
    """``{"source", "frame", "size": [H, W], "coverage", "mask"[, "rle"]}`` for a uint8 0/1
    mask; coverage is the foreground fraction, rle the Carvana run-length encoding."""
    d: dict = {"source": source, "frame": int(frame), "size": [int(s) for s in mask.shape[:2]],
               "coverage": round(float(np.count_nonzero(mask)) / max(mask.size, 1), 6),
               "mask": None if mask_file is None else str(mask_file)}
    if rle:
        d["rle"] = rle_encode(mask)
    return d
