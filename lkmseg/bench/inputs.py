"""The images every model and engine is benchmarked on: a labelled dataset (Dice against
ground truth), an unlabelled folder or a video (agreement with PyTorch fp32 masks), or —
by default — the first run's validation pairs, else the package's sample images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lkmseg.config import RunConfig
from lkmseg.data.imageio import list_images, read_image, read_mask
from lkmseg.errors import UserError
from lkmseg.files.layout import SAMPLES_DIR


@dataclass
class BenchInputs:
    images: list[np.ndarray]  # RGB uint8, original sizes
    masks: list[np.ndarray] | None  # {0,1} uint8 or None when unlabelled
    origin: str

    @property
    def has_masks(self) -> bool:
        return self.masks is not None


def _from_pairs(pairs: list[tuple[Path, Path | None]], limit: int, origin: str) -> BenchInputs:
    pairs = pairs[:limit]
    images = [read_image(p) for p, _ in pairs]
    if all(m is not None for _, m in pairs):
        return BenchInputs(images, [read_mask(m) for _, m in pairs], origin)
    return BenchInputs(images, None, origin)


def _from_dataset(root: Path, limit: int) -> BenchInputs:
    from lkmseg.data.datasets import find_items, split_by_group

    _, items = find_items(root, require_masks=False)
    if all(it.mask is not None for it in items) and len({i.group for i in items}) > 4:
        items = split_by_group(items)[1]  # validation side: never the training images
    step = max(1, len(items) // limit)  # spread over groups rather than the first car only
    items = items[::step][:limit]
    return _from_pairs([(i.image, i.mask) for i in items], limit, f"{root} ({len(items)} images)")


def _from_video(path: Path, limit: int) -> BenchInputs:
    from lkmseg.data.video import VideoReader

    frames = []
    with VideoReader(path) as v:
        for f in v:
            frames.append(f)
            if len(frames) >= limit:
                break
    return BenchInputs(frames, None, f"{path} ({len(frames)} frames)")


def load_inputs(source: Path | None, cfg: RunConfig | None, limit: int = 32) -> BenchInputs:
    if source is not None:
        from lkmseg.data.video import is_video_file

        if source.is_file() and is_video_file(source):
            return _from_video(source, limit)
        if source.is_dir() and ((source / "train").is_dir() or (source / "images").is_dir()):
            return _from_dataset(source, limit)
        if source.is_dir():
            imgs = list_images(source)
            if not imgs:
                raise UserError(f"{source}: no images here; pass an image folder, a dataset "
                                "folder or a video with --source")
            return _from_pairs([(p, None) for p in imgs], limit, f"{source}")
        raise UserError(f"{source}: not found or not a folder/video; check --source")
    pairs = [(Path(a), Path(b) if b else None) for a, b in (cfg.data.get("val_items") or [])] \
        if cfg else []
    if pairs and all(p.is_file() for p, _ in pairs[:limit]):
        step = max(1, len(pairs) // limit)
        return _from_pairs(pairs[::step], limit, "validation images of the first run")
    return _from_dataset(SAMPLES_DIR, limit) if (SAMPLES_DIR / "images").is_dir() else \
        BenchInputs([np.full((64, 64, 3), 128, np.uint8)], None, "a grey image")
