"""Prediction with decode, inference and writing overlapped.

    reader thread:  decode + resize + to tensor  ──queue──▶
    main thread:    engine(x) -> logits                    ──queue──▶
    writer thread:  resize logits back, threshold, write PNG/video/RLE

Queues are bounded (a few batches) so memory stays flat on long videos; the first error in
any stage stops the others and is re-raised in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lkmseg.data.transforms import postprocess, preprocess
from lkmseg.errors import UserError
from lkmseg.predict.sinks import VIDEO_KINDS, Sink
from lkmseg.predict.sources import Item, Source
from lkmseg.predict.streams import LIVE_KINDS, Tagged, input_folders, open_input

_DONE = object()


@dataclass
class PredictOptions:
    engine: str = "auto"
    precision: str | None = None
    device: str = "auto"
    batch_size: int = 4
    overlay: bool = False
    rle: Path | None = None
    threshold: float | None = None  # default: the model's (config.json / ONNX metadata)
    prefetch: int = 3  # batches buffered between stages
    json: str | Path | None = None  # JSON lines, one per image or frame ("-": stdout)
    max_frames: int | None = None  # stop a camera / stream after this many frames


@dataclass
class PredictSummary:
    source: str
    kind: str
    frames: int
    seconds: float
    engine: str
    engine_seconds: float
    threshold: float
    outputs: list[Path] = field(default_factory=list)
    skipped_engines: list[str] = field(default_factory=list)
    auto_choice: str = ""  # --engine auto: what it chose and the timings it chose on

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def engine_fps(self) -> float:
        return self.frames / self.engine_seconds if self.engine_seconds > 0 else 0.0


class _Stop(Exception):
    """Raised inside a stage when another stage failed."""


class _Stage(threading.Thread):
    def __init__(self, name: str, fn: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.fn, self.stop, self.error = fn, stop, None

    def run(self) -> None:
        try:
            self.fn()
        except _Stop:
            pass
        except BaseException as e:  # noqa: BLE001 — handed to the main thread, re-raised there
            self.error = e
            self.stop.set()


def _put(q: queue.Queue, obj: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(obj, timeout=0.1)
            return
        except queue.Full:
            continue
    raise _Stop


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    raise _Stop


def _batches(items: Iterator[Item], n: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for it in items:
        batch.append(it)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_out(out_dir: Path, src: Source) -> None:
    if src.kind not in VIDEO_KINDS and out_dir.resolve() in {
            f.resolve() for f in input_folders(src)}:
        raise UserError(f"--out {out_dir} is the input folder; masks would mix with (or "
                        "overwrite) the images: choose another folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out_dir}: cannot create it ({e.strerror}); choose another "
                        "folder") from e


def run_pipeline(engine: Any, src: Source, sink: Sink, size: tuple[int, int], threshold: float,
                 batch_size: int, prefetch: int = 3,
                 on_progress: Callable[[int], None] | None = None) -> int:
    """Stream ``src`` through ``engine`` into ``sink``; returns the number of frames."""
    stop = threading.Event()
    q_in: queue.Queue = queue.Queue(maxsize=prefetch)
    q_out: queue.Queue = queue.Queue(maxsize=prefetch)

    def read() -> None:
        for batch in _batches(iter(src), batch_size):
            x = preprocess([it.image for it in batch], size).numpy()  # (B, 3, H, W)
            _put(q_in, (batch, x), stop)
        _put(q_in, _DONE, stop)

    def write() -> None:
        while (job := _get(q_out, stop)) is not _DONE:
            batch, logits = job
            masks = postprocess(logits, [it.image.shape[:2] for it in batch], threshold)
            for it, m in zip(batch, masks):
                sink.write(it, m)
            if on_progress:
                on_progress(len(batch))

    reader, writer = _Stage("lkmseg-read", read, stop), _Stage("lkmseg-write", write, stop)
    reader.start()
    writer.start()
    frames, finished = 0, False
    try:
        while (job := _get(q_in, stop)) is not _DONE:
            batch, x = job
            _put(q_out, (batch, engine(x)), stop)
            frames += len(batch)
        _put(q_out, _DONE, stop)
        finished = True
    except _Stop:
        pass  # a stage failed: its error is raised below
    finally:
        if not finished:
            stop.set()
        writer.join()  # on success: until the last mask is written
        stop.set()
        reader.join()
    for stage in (reader, writer):
        if stage.error is not None:
            raise stage.error
    return frames


def predict(model: str | Path, source: Any, out_dir: str | Path,
            options: PredictOptions | None = None,
            progress: Callable[[int | None], Callable[[int], None]] | None = None,
            engine: Any = None) -> PredictSummary:
    """Predict masks for SOURCE (image, folder, video, glob, URL, stream, camera index; see
    ``predict.streams``) with MODEL (run folder or model file).

    ``progress(total)`` may return a per-batch callback (the CLI's rich progress bar).
    ``engine`` lets a caller pass an already-loaded engine (benchmarks).
    """
    from lkmseg.engines import load_engine

    opts = options or PredictOptions()
    if opts.batch_size < 1:
        raise UserError(f"--batch-size {opts.batch_size}: must be >= 1")
    if opts.threshold is not None and not 0.0 < opts.threshold < 1.0:
        raise UserError(f"--threshold {opts.threshold}: must be between 0 and 1 (exclusive)")
    out = Path(out_dir)
    if opts.max_frames is not None and opts.max_frames < 1:
        raise UserError(f"--max-frames {opts.max_frames}: must be >= 1")
    opened = open_input(source, opts.max_frames)
    src = Tagged(opened)
    try:
        _check_out(out, opened)
        if engine is None:
            engine = load_engine(opts.engine, model, opts.precision, opts.device)
        cfg = engine.config
        threshold = cfg.threshold if opts.threshold is None else opts.threshold
        sink = Sink(out, src.kind, overlay=opts.overlay, rle=opts.rle, fps=src.fps,
                    stem=src.stem, json_path=opts.json)
        tick = progress(src.total) if progress else None
        engine.reset_stats()
        t0 = time.perf_counter()
        try:
            frames = run_pipeline(engine, src, sink, tuple(cfg.size), threshold,
                                  opts.batch_size, opts.prefetch, tick)
            outputs = sink.close()
        except KeyboardInterrupt:
            if src.kind not in LIVE_KINDS:
                sink.abort()
                raise
            frames, outputs = sink.count, sink.close()  # Ctrl-C ends a live source: keep it
        except BaseException:
            sink.abort()
            raise
        seconds = time.perf_counter() - t0
    finally:
        src.close()
    where = str(source) if isinstance(source, (str, Path, int)) else type(source).__name__
    return PredictSummary(source=where, kind=src.kind, frames=frames, seconds=seconds,
                          engine=engine.describe(), engine_seconds=engine.seconds,
                          threshold=threshold, outputs=outputs,
                          skipped_engines=list(getattr(engine, "skipped", []) or []),
                          auto_choice=getattr(engine, "auto_choice", ""))


def predict_arrays(engine: Any, images: list[np.ndarray],
                   threshold: float | None = None) -> list[np.ndarray]:
    """In-memory prediction: RGB uint8 images -> uint8 {0,1} masks at their original sizes."""
    cfg = engine.config
    x = preprocess(images, tuple(cfg.size)).numpy()
    t = cfg.threshold if threshold is None else threshold
    return postprocess(engine(x), [im.shape[:2] for im in images], t)
