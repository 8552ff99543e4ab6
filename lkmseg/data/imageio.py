"""Reading images and masks robustly: every failure becomes a UserError naming the file.

Images: 8-bit RGB, grayscale, RGBA (alpha dropped), palette; 16-bit images are scaled to
8 bits. Returned as RGB uint8 (H, W, 3). Masks: any single-channel or colour image,
binarised (> 127 after conversion to 8-bit grey) to uint8 {0, 1}. OpenCV decodes first;
Pillow is the fallback (GIF on old OpenCV builds, odd TIFFs).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
MAX_PIXELS = 100_000_000  # refuse absurd dimensions instead of exhausting memory

from lkmseg.errors import UserError  # noqa: E402

_CV_GIF = tuple(int(x) for x in cv2.__version__.split(".")[:2]) >= (4, 7)


def _check_file(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise UserError(f"{path}: broken symbolic link; fix or remove it")
    if not path.is_file():
        raise UserError(f"{path}: file not found; check the path")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: permission denied; make it readable (chmod +r)")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes); replace or remove it")


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    a = a.astype(np.float64)
    hi = a.max() if a.size else 1.0
    return np.clip(a / (hi if hi > 1 else 1.0) * 255.0, 0, 255).astype(np.uint8)


def _decode(path: Path, flags: int) -> np.ndarray:
    _check_file(path)
    data = np.fromfile(str(path), dtype=np.uint8)
    img = None
    if path.suffix.lower() != ".gif" or _CV_GIF:
        img = cv2.imdecode(data, flags)
    if img is None or _looks_truncated(path, data):
        img = _decode_pillow(path)
    if img.size == 0:
        raise UserError(f"{path}: image has no pixels; replace or remove it")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise UserError(f"{path}: {img.shape[1]}x{img.shape[0]} is too large "
                        f"(> {MAX_PIXELS // 1_000_000} MP); downscale it first")
    return img


def _looks_truncated(path: Path, data: np.ndarray) -> bool:
    """OpenCV silently decodes truncated JPEGs (grey bottom); detect the missing EOI."""
    if path.suffix.lower() in (".jpg", ".jpeg") and data.size > 2:
        tail = data[-16:].tobytes()
        return b"\xff\xd9" not in tail
    return False


def _decode_pillow(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1", "I;16", "I", "F"):
                im = im.convert("RGBA" if "A" in im.mode else
                             ("L" if im.mode in ("1", "I;16", "I", "F") else "RGB"))
            a = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path}: corrupt or not an image ({e.__class__.__name__}); "
                        "replace or remove it") from e
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.ndim == 3:  # Pillow gives RGB; return BGR like OpenCV for one code path
        a = a[..., ::-1]
    return np.ascontiguousarray(a)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3)."""
    path = Path(path)
    img = _to_uint8(_decode(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH))
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2))
    if img.shape[2] == 4:
        img = img[..., :3]
    if img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    return np.ascontiguousarray(img[..., ::-1])  # BGR -> RGB


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask file as uint8 {0, 1} (H, W): pixels > 127 (8-bit grey) are foreground."""
    path = Path(path)
    m = _to_uint8(_decode(path, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH))
    if m.ndim == 3:  # Pillow fallback may return colour
        m = m[..., :3].max(axis=2)
    return (m > 127).astype(np.uint8)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS and not path.name.startswith(".")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if is_image_file(p))
