"""Which request shapes ``lkmseg serve`` accepts, decided on the shape alone.

Standard library only: besides the segmenter, Triton's Python backend runs this file (copied
beside ``triton_model.py``), which refuses a bad request before PyTriton copies its images.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_SIDE = 8192  # default largest image side accepted (a 20000x20000 request is refused)
MAX_PIXELS = MAX_SIDE * MAX_SIDE  # default pixels per request: one image of the largest side
BAD_REQUEST = "lkmseg.serve.segmenter.BadRequest: "  # how a refusal of the segmenter is written


def shape_problem(shape: Sequence[int], max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS,
                  name: str = "image") -> str | None:
    """Why a request whose input ``name`` has ``shape`` is refused (one line), or None."""
    shape = [int(s) for s in shape]
    if len(shape) != 4 or shape[-1] != 3:
        return f"input '{name}' must be (batch, height, width, 3) RGB, got shape {shape}"
    b, h, w = shape[:3]
    if b < 1 or h < 1 or w < 1:
        return (f"input '{name}' is empty (shape {shape}): send at least one image of at least "
                "1x1 pixels")
    if max(h, w) > max_side:
        return (f"image {h}x{w} is larger than this server accepts (largest side {max_side}, "
                "see `lkmseg serve --max-side`); resize it first")
    if b * h * w > max_pixels:
        return (f"request of {b} image(s) of {h}x{w} has {b * h * w:,} pixels, more than this "
                f"server accepts per request ({max_pixels:,}, see `lkmseg serve --max-pixels`); "
                "send fewer or smaller images per request")
    return None
