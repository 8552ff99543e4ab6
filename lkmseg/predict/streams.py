"""More inputs for predict: in-memory arrays, globs, http(s) URLs, cameras and network streams.

``open_input(x)`` accepts everything ``open_source`` does (an image, a folder, a video file)
plus a glob (``"shots/**/*.jpg"``), an http(s) URL of an image or a video, an ``rtsp://`` (or
other OpenCV-readable) stream, a camera index (``0`` or ``"0"``), an RGB uint8 array or a list
of any of these. Live sources (cameras, streams) have no length and end when OpenCV stops
delivering frames or after ``max_frames``.
"""

from __future__ import annotations

import glob as globlib
import itertools
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lkmseg.data.imageio import IMAGE_EXTS, is_image_file, read_image
from lkmseg.data.video import VIDEO_EXTS
from lkmseg.errors import UserError
from lkmseg.predict.sources import ImageSource, Item, Source, open_source

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "udp", "tcp", "srt")
URL_TIMEOUT_S = 30.0
MAX_URL_BYTES = 256 * 1024 * 1024
_GLOB = re.compile(r"[*?\[]")
LIVE_KINDS = ("camera", "stream")


@dataclass
class Frame(Item):
    """An item that knows where it came from: a file, URL, camera... and its frame number."""

    origin: str = ""
    frame: int = 0


def origin_of(src: Source, item: Item) -> tuple[str, int]:
    """(where the item came from, its frame number: 0 for a still image)."""
    if isinstance(item, Frame):
        return item.origin, item.frame
    if isinstance(src, ImageSource):
        return str(src.files[item.index]), 0
    where = getattr(src, "origin", None) or str(getattr(getattr(src, "reader", None), "path",
                                                        item.key))
    return where, item.index


class ArraySource(Source):
    """RGB uint8 images held in memory; frame = position in the list."""

    kind = "array"

    def __init__(self, images: Sequence[np.ndarray], origin: str = "array") -> None:
        self.images = [check_array(a, i) for i, a in enumerate(images)]
        self.total, self.origin, self.stem = len(self.images), origin, origin

    def __iter__(self) -> Iterator[Item]:
        for i, im in enumerate(self.images):
            name = f"{self.stem}_{i:06d}"
            yield Item(name=name, key=name, image=im, index=i)


def check_array(a: Any, i: int = 0) -> np.ndarray:
    """An RGB uint8 (H, W, 3) image; a grayscale (H, W) one is repeated to 3 channels, RGBA
    loses its alpha. Anything else is a UserError naming the array."""
    if not isinstance(a, np.ndarray):
        raise UserError(f"image {i}: expected a numpy array, got {type(a).__name__}")
    if a.dtype != np.uint8:
        raise UserError(f"image {i}: dtype {a.dtype}; pass RGB uint8 (H, W, 3) in 0..255 "
                        "(e.g. (x * 255).astype(np.uint8))")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or min(a.shape[:2]) < 1:
        raise UserError(f"image {i}: shape {a.shape}; pass RGB uint8 (H, W, 3)")
    return np.ascontiguousarray(a[..., :3])


class ChainSource(Source):
    """Several sources one after another (a list of paths, URLs or arrays)."""

    kind = "list"

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources
        totals = [s.total for s in sources]
        self.total = None if None in totals else sum(t or 0 for t in totals)
        self.fps = sources[0].fps if sources else 25.0
        self.stem = "list"

    def __iter__(self) -> Iterator[Item]:
        seen: dict[str, int] = {}
        n = 0
        for s in self.sources:
            for it in s:
                k = seen[it.name] = seen.get(it.name, 0) + 1
                name = it.name if k == 1 else f"{it.name}_{k}"  # two inputs, one stem
                where, frame = origin_of(s, it)
                yield Frame(name=name, key=it.key, image=it.image, index=n, origin=where,
                            frame=frame)
                n += 1

    def close(self) -> None:
        for s in self.sources:
            s.close()


class CaptureSource(Source):
    """Frames from ``cv2.VideoCapture``: a camera index, an rtsp/http stream or a remote
    video. Opening reads the first frame, so a dead camera or URL fails here (UserError)."""

    def __init__(self, target: int | str, kind: str, origin: str, stem: str,
                 max_frames: int | None = None) -> None:
        self.kind, self.origin, self.stem, self.max_frames = kind, origin, stem, max_frames
        self._cap = cv2.VideoCapture(target)
        fix = ("check the camera index (0 is the first camera) and that no other program "
               "holds it" if kind == "camera" else "check the address and that the stream runs")
        if not self._cap.isOpened():
            raise UserError(f"{origin}: OpenCV cannot open it; {fix}")
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise UserError(f"{origin}: opened, but no frame came; {fix}")
        self._first: np.ndarray | None = first
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else 25.0
        n = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.total = max_frames if kind in LIVE_KINDS else (n if n > 0 else None)
        if max_frames is not None and self.total is not None:
            self.total = min(self.total, max_frames)

    def __iter__(self) -> Iterator[Item]:
        from lkmseg.data.video import rgb_frames

        first, self._first = self._first, None
        frames = itertools.islice(rgb_frames(self._cap, first), self.max_frames)
        for i, image in enumerate(frames):
            name = f"{self.stem}_{i:06d}"
            yield Item(name=name, key=name, image=image, index=i)

    def close(self) -> None:
        self._cap.release()


def _url_stem(url: str, default: str) -> str:
    name = Path(urllib.parse.urlparse(url).path).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or default


def _fetch(url: str) -> tuple[str, Any]:
    """(content type, open response) for an http(s) URL; errors name the URL."""
    req = urllib.request.Request(url, headers={"User-Agent": "lkmseg"})
    try:
        resp = urllib.request.urlopen(req, timeout=URL_TIMEOUT_S)  # noqa: S310 — http(s) only
    except urllib.error.HTTPError as e:
        raise UserError(f"{url}: HTTP {e.code} {e.reason}; check the address") from e
    except (urllib.error.URLError, OSError) as e:
        why = getattr(e, "reason", None) or e
        raise UserError(f"{url}: cannot connect ({why}); check the address and the "
                        "network") from e
    return resp.headers.get_content_type(), resp


def _read_url_image(url: str, resp: Any) -> np.ndarray:
    with resp:
        data = resp.read(MAX_URL_BYTES + 1)
    if len(data) > MAX_URL_BYTES:
        raise UserError(f"{url}: larger than {MAX_URL_BYTES >> 20} MiB; download it first")
    suffix = Path(urllib.parse.urlparse(url).path).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="lkmseg-url-") as d:
        tmp = Path(d) / f"image{suffix if suffix in IMAGE_EXTS else ''}"
        tmp.write_bytes(data)
        try:
            return read_image(tmp)
        except UserError as e:
            raise UserError(str(e).replace(str(tmp), url)) from e


def open_url(url: str, max_frames: int | None = None) -> Source:
    """An http(s) URL: an image (decoded once), or a video / MJPEG stream (OpenCV)."""
    ctype, resp = _fetch(url)
    stem = _url_stem(url, "url")
    suffix = Path(urllib.parse.urlparse(url).path).suffix.lower()
    if ctype.startswith(("video/", "multipart/")) or suffix in VIDEO_EXTS:
        resp.close()
        return CaptureSource(url, "video" if suffix in VIDEO_EXTS else "stream", url, stem,
                             max_frames)
    key = Path(urllib.parse.urlparse(url).path).name or stem
    return OneImage(_read_url_image(url, resp), url, stem, key)


class OneImage(Source):
    """One downloaded image, named like a file."""

    kind = "url"
    total = 1

    def __init__(self, image: np.ndarray, origin: str, name: str, key: str) -> None:
        self.image, self.origin, self.name, self.key, self.stem = image, origin, name, key, name

    def __iter__(self) -> Iterator[Item]:
        yield Item(name=self.name, key=self.key, image=self.image, index=0)


def open_glob(pattern: str) -> ImageSource:
    files = sorted(Path(p) for p in globlib.glob(pattern, recursive=True))
    images = [p for p in files if p.is_file() and is_image_file(p)]
    if not images:
        raise UserError(f"{pattern}: no image matches this pattern (looked for "
                        f"{', '.join(IMAGE_EXTS)}); check the pattern and quote it")
    return ImageSource(images, "glob")


def camera_index(x: object) -> int | None:
    """The camera index ``x`` names (an int, or a string of digits that is no file)."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, str) and x.strip().isdigit() and not Path(x).exists():
        return int(x)
    return None


def open_input(x: Any, max_frames: int | None = None) -> Source:
    """Open any predict input (see the module docstring); failures are one-line UserErrors."""
    if isinstance(x, Source):
        return x
    if isinstance(x, np.ndarray):
        return ArraySource(list(x) if x.ndim == 4 else [x])
    if isinstance(x, (list, tuple)):
        if not x:
            raise UserError("empty list of inputs: pass at least one image")
        if all(isinstance(a, np.ndarray) for a in x):
            return ArraySource(list(x))
        opened: list[Source] = []
        try:
            for a in x:
                opened.append(open_input(a, max_frames))
        except UserError:
            for o in opened:  # a camera opened before a bad path: let it go
                o.close()
            raise
        return ChainSource(opened)
    cam = camera_index(x)
    if cam is not None:
        return CaptureSource(cam, "camera", f"camera:{cam}", f"camera{cam}", max_frames)
    text = str(x)
    scheme = urllib.parse.urlparse(text).scheme.lower()
    if scheme in ("http", "https"):
        return open_url(text, max_frames)
    if scheme in STREAM_SCHEMES:
        return CaptureSource(text, "stream", text, _url_stem(text, "stream"), max_frames)
    if _GLOB.search(text) and not Path(text).exists():
        return open_glob(text)
    return open_source(text)


def input_folders(src: Source) -> list[Path]:
    """The folders ``src`` reads images from (predict must not write its masks there)."""
    if isinstance(src, ChainSource):
        return [f for s in src.sources for f in input_folders(s)]
    if isinstance(src, ImageSource):
        return sorted({f.parent for f in src.files})
    return []


class Tagged(Source):
    """``src`` with every item a ``Frame`` (origin and frame number resolved as it is read)."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self.kind, self.total, self.fps, self.stem = src.kind, src.total, src.fps, src.stem

    def __iter__(self) -> Iterator[Frame]:
        for it in self.src:
            where, frame = origin_of(self.src, it)
            yield it if isinstance(it, Frame) else Frame(
                name=it.name, key=it.key, image=it.image, index=it.index, origin=where,
                frame=frame)

    def close(self) -> None:
        self.src.close()
