"""Reading images and masks robustly: every failure becomes a UserError naming the file.

Images: 8-bit RGB, grayscale, RGBA (alpha dropped), palette, CMYK; 16-bit images are
scaled to 8 bits. Returned as RGB uint8 (H, W, 3). Masks: any single-channel or colour
image, returned as uint8 {0, 1} (H, W): a mask whose values reach the upper half of its
range (0/255, anti-aliased, JPEG noise) is thresholded at the middle; a mask whose values
all stay in the lower half (0/1 masks, small label ids) counts every non-zero pixel as
foreground. The header is read first, so a file claiming absurd dimensions is refused
before any pixel memory is allocated. OpenCV decodes; Pillow handles what OpenCV cannot
(GIF on old OpenCV builds, truncated files, odd TIFFs) and reports what is wrong.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from lkmseg.errors import UserError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
MAX_PIXELS = 100_000_000  # refuse absurd dimensions instead of exhausting memory

_CV_GIF = tuple(int(x) for x in cv2.__version__.split(".")[:2]) >= (4, 7)
# We report every decoding failure ourselves (one line naming the file); OpenCV's own log
# lines and Pillow's decompression-bomb warning would only add noise on stderr.
_CV_LOG = getattr(cv2.utils, "logging", None)  # OpenCV 5; 4.x has cv2.setLogLevel only
if _CV_LOG is not None:
    _CV_LOG.setLogLevel(_CV_LOG.LOG_LEVEL_SILENT)
else:
    cv2.setLogLevel(0)  # 0 = LOG_LEVEL_SILENT (numpy<2 environments, e.g. the serve extra)
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's "moov atom not found" & co.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _check_file(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise UserError(f"{path}: broken symbolic link; fix or remove it")
    if not path.is_file():
        raise UserError(f"{path}: file not found; check the path")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: permission denied; make it readable (chmod +r)")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes); replace or remove it")


def _read_bytes(path: Path) -> np.ndarray:
    _check_file(path)
    try:
        return np.fromfile(str(path), dtype=np.uint8)
    except PermissionError as e:
        raise UserError(f"{path}: permission denied; make it readable (chmod +r)") from e
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e}); check the file") from e


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


def _check_dimensions(path: Path, data: np.ndarray) -> None:
    """Read only the header (Pillow opens lazily) and refuse absurd sizes before decoding."""
    import io

    try:
        with Image.open(io.BytesIO(data.tobytes())) as im:
            w, h = im.size
    except Image.DecompressionBombError as e:
        raise UserError(f"{path}: image dimensions are too large (> {MAX_PIXELS // 1_000_000} "
                        "MP); downscale it first") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return  # a format Pillow does not know: OpenCV may still read it (and has a limit)
    if w * h > MAX_PIXELS:
        raise UserError(f"{path}: {w}x{h} is too large (> {MAX_PIXELS // 1_000_000} MP); "
                        "downscale it first")
    if w * h == 0:
        raise UserError(f"{path}: image has no pixels ({w}x{h}); replace or remove it")


def _looks_truncated(path: Path, data: np.ndarray) -> bool:
    """Files whose end marker is missing go to Pillow, which reports the truncation
    cleanly (OpenCV decodes a truncated JPEG with a grey bottom and prints libpng errors)."""
    tail = data[-16:].tobytes()
    ext = path.suffix.lower()
    if ext in (".jpg", ".jpeg"):
        return b"\xff\xd9" not in tail
    if ext == ".png":
        return b"IEND" not in tail
    if ext == ".gif":
        return not tail.rstrip(b"\x00").endswith(b";")
    return False


def _decode(path: Path, flags: int) -> np.ndarray:
    data = _read_bytes(path)
    _check_dimensions(path, data)
    img = None
    if (path.suffix.lower() != ".gif" or _CV_GIF) and not _looks_truncated(path, data):
        try:
            img = cv2.imdecode(data, flags)
        except cv2.error:  # e.g. its own pixel limit on a format Pillow could not parse
            img = None
    if img is None:
        img = _decode_pillow(path, data)
    if img.size == 0:
        raise UserError(f"{path}: image has no pixels; replace or remove it")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise UserError(f"{path}: {img.shape[1]}x{img.shape[0]} is too large "
                        f"(> {MAX_PIXELS // 1_000_000} MP); downscale it first")
    return img


def _decode_pillow(path: Path, data: np.ndarray) -> np.ndarray:
    """Decode with Pillow; colour comes back BGR(A) like OpenCV, deep greys keep their depth."""
    import io

    try:
        with Image.open(io.BytesIO(data.tobytes())) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                a = np.asarray(im)
                a = a.astype(np.uint16) if im.mode.startswith("I;16") else a
            else:
                if im.mode not in ("L", "RGB"):
                    im = im.convert("L" if im.mode == "1" else
                                    ("RGBA" if "A" in im.mode or "transparency" in im.info
                                     else "RGB"))
                a = np.asarray(im)
    except Image.DecompressionBombError as e:
        raise UserError(f"{path}: image dimensions are too large; downscale it first") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        why = "truncated" if "truncated" in str(e).lower() else e.__class__.__name__
        raise UserError(f"{path}: corrupt or not an image ({why}); replace or remove it") from e
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


def binarize_mask(m: np.ndarray) -> np.ndarray:
    """Any mask array (H, W[, C]) -> uint8 {0, 1}; see the module docstring for the rule."""
    if m.ndim == 3:  # colour mask: a pixel is as bright as its brightest channel
        m = m[..., :3].max(axis=2)
    if m.dtype == bool:
        return m.astype(np.uint8)
    if np.issubdtype(m.dtype, np.integer):
        half = (int(np.iinfo(m.dtype).max) + 1) // 2
    else:
        half = 0.5 if float(m.max(initial=0)) <= 1.0 else 128.0
    if m.size and m.max() >= half:
        return (m >= half).astype(np.uint8)
    return (m > 0).astype(np.uint8)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask file as uint8 {0, 1} (H, W)."""
    path = Path(path)
    return binarize_mask(_decode(path, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH))


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS and not path.name.startswith(".")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if is_image_file(p))
