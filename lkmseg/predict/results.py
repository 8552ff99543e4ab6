"""Predictions as Python objects: ``Result`` per image or frame, yielded as they come.

A reader thread decodes and resizes the next batch while the engine runs this one (the same
read stage as ``predict.pipeline``); masks and logits are made in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lkmseg.data.transforms import logit_threshold, preprocess, resize_logits
from lkmseg.predict.pipeline import _DONE, _batches, _get, _put, _Stage, _Stop
from lkmseg.predict.records import record
from lkmseg.predict.sources import Source
from lkmseg.predict.streams import Frame, Tagged


@dataclass
class Result:
    """One image's (or frame's) prediction.

    >>> r = model.predict("car.jpg")[0]
    >>> r.mask.shape == r.size, r.mask.dtype, r.coverage   # uint8 0/1 at the image's size
    """

    mask: np.ndarray  # uint8 (H, W), 0/1, at the image's own size
    source: str  # file path, URL, "camera:0", "array", video path
    frame: int  # frame number in a video / stream / list of arrays; 0 for a still image
    name: str = ""  # the stem predict's files use
    logits: np.ndarray | None = field(default=None, repr=False)  # float32 (H, W) if asked

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    @property
    def coverage(self) -> float:
        """Fraction of the image the mask covers."""
        return float(np.count_nonzero(self.mask)) / max(self.mask.size, 1)

    def rle(self) -> str:
        """The mask in the Carvana run-length encoding (``lkmseg.data.rle``)."""
        from lkmseg.data.rle import rle_encode

        return rle_encode(self.mask)

    def to_dict(self, rle: bool = False) -> dict:
        """The fields of ``predict --json``'s lines (no mask file: nothing was written)."""
        return record(self.source, self.frame, self.mask, None, rle=rle)

    def save(self, path: str | Path) -> Path:
        """Write the mask as a PNG (0/255), atomically."""
        from lkmseg.fsutil import write_bytes
        from lkmseg.predict.sinks import _encode

        p = Path(path)
        write_bytes(p, _encode(".png", self.mask * 255, p))
        return p


def iter_results(engine: Any, src: Source, threshold: float | None = None,
                 batch_size: int = 4, logits: bool = False,
                 prefetch: int = 2) -> Iterator[Result]:
    """Results for every item of ``src``, in order, as each batch is done. Closing the
    generator early (``break``) stops the reader thread and closes the source."""
    cfg = engine.config
    size = tuple(int(s) for s in cfg.size)
    cut = logit_threshold(cfg.threshold if threshold is None else threshold)
    tagged = Tagged(src)
    stop = threading.Event()
    q: queue.Queue = queue.Queue(maxsize=prefetch)

    def read() -> None:
        for batch in _batches(iter(tagged), batch_size):
            _put(q, (batch, preprocess([it.image for it in batch], size).numpy()), stop)
        _put(q, _DONE, stop)

    reader = _Stage("lkmseg-read", read, stop)
    reader.start()
    try:
        while True:
            try:
                job = _get(q, stop)
            except _Stop:
                break  # the reader failed: raised below
            if job is _DONE:
                break
            batch, x = job
            maps = resize_logits(engine(x), [it.image.shape[:2] for it in batch])
            for it, m in zip(batch, maps):
                yield _result(it, m, cut, logits)
    finally:
        stop.set()
        reader.join()
        tagged.close()
    if reader.error is not None:
        raise reader.error


def _result(it: Frame, m: np.ndarray, cut: float, keep_logits: bool) -> Result:
    return Result(mask=(m > cut).astype(np.uint8), source=it.origin, frame=it.frame,
                  name=it.name, logits=m if keep_logits else None)
