"""The callable Triton runs for each dynamic batch: requests of RGB images -> masks.

Triton hands over a list of requests (each a batch of same-sized images; different requests
may carry different sizes). Every image is resized to the model's size with the project's
``preprocess``, all of them run through the engine in ONE call, and each image's logits are
resized back to its own size and thresholded at once (the float map is dropped unless the
request asked for ``logits``): exactly what ``lkmseg predict`` does, so served masks equal
predict's, and a request of large images holds one float map at a time.

A request that cannot be served (wrong dtype or rank, an empty or oversized image) raises
``BadRequest``. Under ``lkmseg serve`` such requests rarely get here: Triton refuses wrong
dtypes, ranks and truncated payloads, and the Triton model file (``triton_model.py``) answers
a request with an empty or oversized image on its own, so a bad request never fails a good
one batched with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lkmseg.data.transforms import logit_threshold, preprocess, resize_logits
from lkmseg.serve.contract import INPUT, LOGITS, MASK
from lkmseg.serve.limits import MAX_PIXELS, MAX_SIDE, shape_problem


class BadRequest(ValueError):
    """A request the server refuses; its one-line message goes back to the client."""


def check_images(arr: Any, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A request's ``image`` input -> uint8 (B, H, W, 3), or BadRequest saying what is wrong."""
    if not isinstance(arr, np.ndarray):
        raise BadRequest(f"input '{INPUT}' must be a uint8 array, got {type(arr).__name__}")
    if arr.dtype != np.uint8:
        raise BadRequest(f"input '{INPUT}' must be UINT8 RGB, got {arr.dtype}")
    problem = shape_problem(arr.shape, max_side, max_pixels, INPUT)
    if problem is not None:
        raise BadRequest(problem)
    return arr


def _wants(request: Any, name: str) -> bool:
    names = getattr(request, "requested_output_names", None)
    return names is None or name in names


class Segmenter:
    """One model instance: ``segmenter(requests) -> [{"mask": ...}, ...]`` (PyTriton's
    list-of-requests callable; a request is any mapping with an ``image`` array)."""

    def __init__(self, engine: Any, threshold: float | None = None, logits: bool = False,
                 max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS) -> None:
        self.engine = engine
        self.size = tuple(engine.config.size)  # (h, w) every image is resized to
        self.threshold = engine.config.threshold if threshold is None else float(threshold)
        self.logits = logits
        self.max_side, self.max_pixels = int(max_side), int(max_pixels)

    def __call__(self, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        batches = [check_images(req[INPUT], self.max_side, self.max_pixels) for req in requests]
        images = [im for batch in batches for im in batch]  # (H, W, 3) views
        x = preprocess(images, self.size).numpy()  # (N, 3, h, w) float32
        logits = self.engine(x)  # (N, 1, h, w)
        cut = logit_threshold(self.threshold)
        responses, start = [], 0
        for req, batch in zip(requests, batches):
            b, h, w = batch.shape[:3]
            mask = np.empty((b, h, w), np.uint8)
            maps = np.empty((b, h, w), np.float32) if self.logits and _wants(req, LOGITS) else None
            for j in range(b):  # postprocess's own steps, one float map at a time
                m = resize_logits(logits[start + j:start + j + 1], [(h, w)])[0]  # (H, W) float32
                np.greater(m, cut, out=mask[j].view(bool))
                if maps is not None:
                    maps[j] = m
                del m  # before the next map is made
            responses.append({MASK: mask} if maps is None else {MASK: mask, LOGITS: maps})
            start += b
        return responses
