"""Writing the synthetic dataset in the Carvana layout, and the cached embedded default."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lkmseg.data.synth.geometry import (
    GENERATOR_VERSION,
    CarParams,
    random_car,
)
from lkmseg.data.synth.raster import (
    render_view,
)
from lkmseg.errors import UserError
from lkmseg.files.cache import cache_root

# ----------------------------------------------------------------------------- dataset


def car_id(seed: int, index: int) -> str:
    """The 12-hex-digit id of car ``index`` of the dataset made with ``seed``."""
    return hashlib.blake2b(f"lkmseg-synth:{seed}:{index}".encode(), digest_size=6).hexdigest()


def car_of(seed: int, index: int) -> CarParams:
    """Car ``index`` of the dataset made with ``seed`` (independent of the other cars)."""
    return random_car(np.random.default_rng([seed, index]))


def _save_pair(img: np.ndarray, mask: np.ndarray, image_path: Path, mask_path: Path) -> None:
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise OSError(f"cannot encode {image_path.name}")
    image_path.write_bytes(jpg.tobytes())
    Image.fromarray(mask, mode="L").save(mask_path, format="GIF")


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]synthetic cars"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), disable=not enabled, transient=False)


def _generate(root: Path, cars: int, views: int, size: tuple[int, int], seed: int,
              progress: bool) -> None:
    (root / "train").mkdir(parents=True)
    (root / "train_masks").mkdir()
    with _progress(progress) as bar:
        task = bar.add_task("render", total=cars * views)
        for i in range(cars):
            car, cid = car_of(seed, i), car_id(seed, i)
            for v in range(1, views + 1):
                img, mask = render_view(car, v, size, yaw_deg=(v - 1) * 360.0 / views)
                _save_pair(img, mask, root / "train" / f"{cid}_{v:02d}.jpg",
                           root / "train_masks" / f"{cid}_{v:02d}_mask.gif")
                bar.advance(task)


def _check_args(cars: int, views: int, size: tuple[int, int]) -> None:
    if cars < 1 or not 1 <= views <= 99:
        raise UserError(f"synthetic data needs cars >= 1 and 1 <= views <= 99 "
                        f"(got cars={cars}, views={views})")
    if min(size) < 16:
        raise UserError(f"synthetic image size {size[0]}x{size[1]} is too small; use >= 16x16")


def write_synthetic(out: Path, cars: int = 12, views: int = 16,
                    size: tuple[int, int] = (320, 480), seed: int = 0,
                    progress: bool = True) -> Path:
    """Write ``cars`` x ``views`` images (``size`` = (height, width)) in the Carvana layout.

    ``out/train/<id>_<NN>.jpg`` (JPEG quality 92) and ``out/train_masks/<id>_<NN>_mask.gif``
    (0/255). Everything is written into a hidden sibling folder that is renamed to ``out``
    at the end, so an interrupted run never leaves half a dataset. ``out`` must not exist
    (an empty folder is fine). Same arguments, byte-identical files.
    """
    out = Path(out)
    _check_args(cars, views, size)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists; remove it or choose another folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}; choose another folder") from e
    try:
        _generate(tmp, cars, views, size, seed, progress)
        os.replace(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if out.is_dir() and any(out.iterdir()):  # someone else wrote ``out`` meanwhile
            raise UserError(f"{out} already exists; remove it or choose another folder") from e
        raise UserError(f"cannot write {out}: {e.strerror or e}; choose another folder") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _complete(root: Path, cars: int, views: int) -> bool:
    n = cars * views
    return (len(list((root / "train").glob("*.jpg"))) == n
            and len(list((root / "train_masks").glob("*_mask.gif"))) == n)


def dataset_name(cars: int = 12, views: int = 16, size: tuple[int, int] = (320, 480),
                 seed: int = 0) -> str:
    """Cache folder name; it changes whenever the generator's output would."""
    return f"synth-v{GENERATOR_VERSION}-c{cars}-v{views}-{size[0]}x{size[1]}-s{seed}"


def default_dataset(cache_dir: Path | None = None, *, cars: int = 12, views: int = 16,
                    size: tuple[int, int] = (320, 480), seed: int = 0,
                    progress: bool = True) -> Path:
    """The embedded dataset used when no data is given: generated once, then reused.

    Lives in ``cache_dir`` or lkmseg's cache folder (``lkmseg.files.cache.cache_root``). Two
    processes may generate it at once: each writes its own temporary folder; the first rename
    wins and the other copy is discarded.
    """
    root = Path(cache_dir or cache_root())
    target = root / dataset_name(cars, views, size, seed)
    if target.is_dir() and _complete(target, cars, views):
        return target
    if target.exists():  # damaged (files deleted by hand): move it aside, then rebuild
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
        os.replace(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        return write_synthetic(target, cars, views, size, seed, progress)
    except UserError:
        if target.is_dir() and _complete(target, cars, views):
            return target  # another process finished first
        raise
