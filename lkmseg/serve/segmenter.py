"""The callable Triton runs for each dynamic batch: requests of RGB images -> masks.

Triton hands over a list of requests (each a batch of same-sized images; different requests
may carry different sizes). Every image is resized to the model's size with the project's
``preprocess``, all of them run through the engine in ONE call, and ``postprocess`` resizes
each image's logits back to its own size and thresholds them: exactly what ``lkmseg predict``
does, so served masks equal predict's.

A request that cannot be served (wrong dtype or rank, an empty or oversized image) raises
``BadRequest``: Triton answers the requests of that execution with the error and keeps
serving. Triton itself refuses wrong dtypes, ranks and truncated payloads before they get
here, and it only batches requests whose shapes are equal, so a bad image never fails a good
one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lkmseg.data.transforms import logit_threshold, preprocess, resize_logits
from lkmseg.serve.contract import INPUT, LOGITS, MASK, MAX_SIDE


class BadRequest(ValueError):
    """A request the server refuses; the message goes back to the client."""


def check_images(arr: Any, max_side: int = MAX_SIDE) -> np.ndarray:
    """A request's ``image`` input -> uint8 (B, H, W, 3), or BadRequest saying what is wrong."""
    if not isinstance(arr, np.ndarray):
        raise BadRequest(f"input '{INPUT}' must be a uint8 array, got {type(arr).__name__}")
    if arr.dtype != np.uint8:
        raise BadRequest(f"input '{INPUT}' must be UINT8 RGB, got {arr.dtype}")
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise BadRequest(f"input '{INPUT}' must be (batch, height, width, 3) RGB, "
                         f"got shape {list(arr.shape)}")
    b, h, w = arr.shape[:3]
    if b < 1 or h < 1 or w < 1:
        raise BadRequest(f"input '{INPUT}' is empty (shape {list(arr.shape)}): send at least "
                         "one image of at least 1x1 pixels")
    if max(h, w) > max_side:
        raise BadRequest(f"image {h}x{w} is larger than this server accepts (largest side "
                         f"{max_side}, see `lkmseg serve --max-side`); resize it first")
    return arr


def _wants(request: Any, name: str) -> bool:
    names = getattr(request, "requested_output_names", None)
    return names is None or name in names


class Segmenter:
    """One model instance: ``segmenter(requests) -> [{"mask": ...}, ...]`` (PyTriton's
    list-of-requests callable; a request is any mapping with an ``image`` array)."""

    def __init__(self, engine: Any, threshold: float | None = None, logits: bool = False,
                 max_side: int = MAX_SIDE) -> None:
        self.engine = engine
        self.size = tuple(engine.config.size)  # (h, w) every image is resized to
        self.threshold = engine.config.threshold if threshold is None else float(threshold)
        self.logits = logits
        self.max_side = int(max_side)

    def __call__(self, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        batches = [check_images(req[INPUT], self.max_side) for req in requests]
        images = [im for batch in batches for im in batch]  # (H, W, 3) views
        sizes = [im.shape[:2] for im in images]
        x = preprocess(images, self.size).numpy()  # (N, 3, h, w) float32
        logits = self.engine(x)  # (N, 1, h, w)
        maps = resize_logits(logits, sizes)  # postprocess's own steps, the maps kept
        cut = logit_threshold(self.threshold)
        masks = [(m > cut).astype(np.uint8) for m in maps]
        responses, start = [], 0
        for req, batch in zip(requests, batches):
            end = start + len(batch)
            resp = {MASK: np.stack(masks[start:end])}  # (B, H, W) uint8
            if self.logits and _wants(req, LOGITS):
                resp[LOGITS] = np.stack(maps[start:end])
            responses.append(resp)
            start = end
        return responses
