"""Decode-and-resize once: an on-disk uint8 cache of a dataset at one training size.

Decoding 1918x1280 JPEGs/GIFs costs ~30 ms each; training then reads (N, H, W, 3) uint8
arrays from ``$LKMSEG_CACHE`` (default ``~/.cache/lkmseg``), keyed by every file's path,
size and mtime plus the target size, so editing a file or changing --size rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lkmseg.data.datasets import Item
from lkmseg.data.imageio import read_image, read_mask
from lkmseg.data.transforms import resize_image, resize_mask
from lkmseg.errors import UserError
from lkmseg.files.cache import cache_root, warn_unwritable

__all__ = ["CachedData", "build_cache", "cache_key", "cache_root"]

CACHE_VERSION = 1


@dataclass
class CachedData:
    images: np.ndarray  # (N, H, W, 3) uint8 RGB
    masks: np.ndarray  # (N, H, W) uint8 {0, 1}
    items: list[Item]
    skipped: list[str]  # "path: why" for files left out (only with skip_bad)
    path: Path
    reused: bool


def cache_key(items: list[Item], size: tuple[int, int]) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}|{size[0]}x{size[1]}".encode())
    for it in items:
        for p in (it.image, it.mask):
            if p is None:
                h.update(b"|none")
                continue
            try:
                st = p.stat()
                h.update(f"|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
            except OSError:
                h.update(f"|{p.resolve()}|missing".encode())
    return h.hexdigest()[:20]


def _load_one(item: Item, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    img = read_image(item.image)
    if item.mask is None:
        return resize_image(img, size), np.zeros(size, np.uint8)
    mask = read_mask(item.mask)
    if mask.shape != img.shape[:2]:
        raise UserError(f"{item.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                        f"{item.image.name} is {img.shape[1]}x{img.shape[0]}; "
                        "fix or remove the pair")
    return resize_image(img, size), resize_mask(mask, size)


def _try_load(item: Item, size: tuple[int, int]):
    try:
        return _load_one(item, size)
    except UserError as e:
        return e


def build_cache(items: list[Item], size: tuple[int, int], root: Path | None = None,
                skip_bad: bool = False, progress=None, workers: int = 2) -> CachedData:
    """Load ``items`` resized to ``size`` from the cache, building it if needed.

    Bad files raise UserError naming the first one, unless ``skip_bad`` (then they are
    listed in ``skipped``). ``progress`` is an optional callable(done, total).
    """
    root = root or cache_root()
    d = root / "arrays" / cache_key(items, size)
    if (d / "meta.json").is_file():
        try:
            return _read(d, items)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            shutil.rmtree(d, ignore_errors=True)  # damaged cache: rebuild
    n = len(items)
    images = np.zeros((n, *size, 3), np.uint8)
    masks = np.zeros((n, *size), np.uint8)
    keep, skipped = [], []
    with ThreadPoolExecutor(max(1, workers)) as pool:  # cv2 releases the GIL
        for i, res in enumerate(pool.map(lambda it: _try_load(it, size), items)):
            if isinstance(res, UserError):
                if not skip_bad:
                    raise res
                skipped.append(str(res))
            else:
                images[i], masks[i] = res
                keep.append(i)
            if progress:
                progress(i + 1, n)
    if not keep:
        raise UserError("no readable image/mask pair left; run `lkmseg data check DIR`")
    images, masks = images[keep], masks[keep]
    kept = [items[i] for i in keep]
    _write(d, images, masks, kept, skipped)
    return CachedData(images, masks, kept, skipped, d, reused=False)


def _remove_stale_temps(folder: Path, older_than_s: float = 3600.0) -> None:
    """Half-written cache folders left by a process killed while writing them (another
    process may be writing one right now: only remove those untouched for an hour)."""
    import time

    try:
        for p in folder.glob(".tmp-*"):
            if time.time() - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
    except OSError:
        pass


def _write(d: Path, images: np.ndarray, masks: np.ndarray, items: list[Item],
           skipped: list[str]) -> None:
    try:
        d.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(d.parent)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=d.parent))
        np.save(tmp / "images.npy", images)
        np.save(tmp / "masks.npy", masks)
        meta = {"items": [[str(it.image.resolve()), str(it.mask) if it.mask else None,
                           it.group] for it in items], "skipped": skipped}
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.replace(tmp, d)
    except OSError as e:  # a read-only or full cache folder: train without a cache
        shutil.rmtree(tmp, ignore_errors=True) if "tmp" in locals() else None
        warn_unwritable(d.parent, e.strerror or str(e))


def _read(d: Path, items: list[Item]) -> CachedData:
    meta = json.loads((d / "meta.json").read_text())
    images = np.load(d / "images.npy", mmap_mode="r")
    masks = np.load(d / "masks.npy", mmap_mode="r")
    by_path = {str(it.image.resolve()): it for it in items}  # the key's paths are resolved
    kept = [by_path[row[0]] for row in meta["items"]]
    if len(kept) != images.shape[0] or images.shape[0] != masks.shape[0]:
        raise ValueError("cache arrays do not match their metadata")
    return CachedData(np.ascontiguousarray(images), np.ascontiguousarray(masks), kept,
                      meta["skipped"], d, reused=True)
