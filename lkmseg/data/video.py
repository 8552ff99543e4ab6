"""Reading and writing videos with OpenCV; every failure becomes a UserError naming the file.

Frames are RGB uint8 (H, W, 3) on both sides, like ``read_image``. Writing is atomic: frames
go to a hidden temporary file with the same extension (OpenCV picks the container from it)
that is renamed onto the final name only when the video is complete.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from lkmseg.errors import UserError
from lkmseg.fsutil import atomic_path

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def is_video_file(path: str | Path) -> bool:
    p = Path(path)
    return p.suffix.lower() in VIDEO_EXTS and not p.name.startswith(".")


class VideoReader:
    """Iterate over the frames of a video file as RGB uint8 arrays.

    The constructor opens the file and decodes the first frame, so an unreadable or empty
    video fails here (UserError), not halfway through a run.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: video file not found; check the path")
        if self.path.stat().st_size == 0:
            raise UserError(f"{self.path}: empty file (0 bytes); replace it")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise UserError(f"{self.path}: OpenCV cannot open this video (corrupt, or a codec "
                            "it lacks); re-encode it, e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`")
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise UserError(f"{self.path}: the video has no decodable frames; "
                            "check the file or re-encode it")
        self._first: np.ndarray | None = first
        self.height, self.width = first.shape[:2]
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else 25.0
        n = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count: int | None = n if n > 0 else None  # container estimate; may be off

    def __iter__(self) -> Iterator[np.ndarray]:
        first, self._first = self._first, None
        yield from rgb_frames(self._cap, first)

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoReader:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoWriter:
    """Write RGB uint8 frames to a video, atomically (complete file or nothing)."""

    def __init__(self, path: str | Path, fps: float, size_hw: tuple[int, int]) -> None:
        self.path = Path(path)
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))
        suffix = self.path.suffix.lower()
        if suffix not in _FOURCC:
            raise UserError(f"{self.path}: cannot write '{suffix}' videos; use .mp4 or .avi")
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._tmp = tmp
        self._inner = tmp.with_name(tmp.name + suffix)  # OpenCV needs the real extension
        h, w = self.size_hw
        self._vw = cv2.VideoWriter(str(self._inner), cv2.VideoWriter_fourcc(*_FOURCC[suffix]),
                                   float(fps), (w, h), True)
        if not self._vw.isOpened():
            self._abort()
            raise UserError(f"{self.path}: OpenCV cannot write {suffix} video here "
                            f"(codec {_FOURCC[suffix]} unavailable); try --out with .avi")
        self.frames = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        if frame_rgb.shape[:2] != self.size_hw:
            raise ValueError(f"frame {frame_rgb.shape[:2]} != video size {self.size_hw}")
        if frame_rgb.ndim == 2:
            frame_rgb = np.repeat(frame_rgb[..., None], 3, axis=2)
        self._vw.write(np.ascontiguousarray(frame_rgb[..., ::-1]))
        self.frames += 1

    def close(self) -> None:
        """Finish the file and rename it onto its final name."""
        if self._vw is None:
            return
        self._vw.release()
        self._vw = None
        try:
            os.replace(self._inner, self._tmp)
        except OSError as e:
            self._abort()
            raise UserError(f"cannot write {self.path}: {e.strerror or e}") from e
        self._stack.close()  # fsync + rename tmp -> path

    def _abort(self) -> None:
        if self._vw is not None:
            self._vw.release()
            self._vw = None
        self._inner.unlink(missing_ok=True)
        with contextlib.suppress(_Abort):
            self._stack.__exit__(_Abort, _Abort(), None)  # atomic_path deletes its temp file

    def abort(self) -> None:
        """Discard the partial video (the final name is left untouched)."""
        self._abort()

    def __enter__(self) -> VideoWriter:  # noqa: PYI034
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()


class _Abort(Exception):
    """Raised into atomic_path to make it discard the temporary file."""


def rgb_frames(cap: cv2.VideoCapture, first: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames of an opened capture, ``first`` (a frame already read) first."""
    frame = first
    while True:
        if frame is None:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        yield np.ascontiguousarray(frame[..., 2::-1])  # BGR(A) -> RGB
        frame = None
