"""Inputs for ``lkmseg predict``: one image, a folder of images, or a video file."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lkmseg.data.imageio import IMAGE_EXTS, is_image_file, list_images, read_image
from lkmseg.data.video import VIDEO_EXTS, VideoReader, is_video_file
from lkmseg.errors import UserError


@dataclass
class Item:
    name: str  # output stem (mask file name without extension)
    key: str  # the `img` column of the RLE CSV (source file name, or video frame name)
    image: np.ndarray  # RGB uint8 (H, W, 3)
    index: int


class Source:
    """An iterable of ``Item``; ``total`` is None when unknown (some videos)."""

    kind: str = "images"
    total: int | None = None
    fps: float = 25.0
    stem: str = ""

    def __iter__(self) -> Iterator[Item]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def output_names(files: list[Path]) -> list[str]:
    """The output stem of each input: its stem (``a.jpg`` -> ``a``), or its whole file name
    (``a.jpg`` -> ``a.jpg``, masks ``a.jpg.png``) where the stem is another input's too (``a.png``,
    ``a.JPG``; compared ignoring case, as macOS and Windows file systems do) or is another input's
    whole name (``b.png`` beside ``b.png.jpg``). File names in one folder differ, so every input
    gets its own output."""
    stems = Counter(f.stem.casefold() for f in files)
    names = {f.name.casefold() for f in files}
    return [f.stem if stems[f.stem.casefold()] == 1 and f.stem.casefold() not in names
            else f.name for f in files]


class ImageSource(Source):
    def __init__(self, files: list[Path], kind: str) -> None:
        self.files, self.kind, self.total = files, kind, len(files)
        self.names = output_names(files)

    def __iter__(self) -> Iterator[Item]:
        for i, (f, name) in enumerate(zip(self.files, self.names)):
            yield Item(name=name, key=f.name, image=read_image(f), index=i)


class VideoSource(Source):
    kind = "video"

    def __init__(self, path: Path) -> None:
        self.reader = VideoReader(path)
        self.total, self.fps, self.stem = self.reader.frame_count, self.reader.fps, path.stem

    def __iter__(self) -> Iterator[Item]:
        for i, frame in enumerate(self.reader):
            name = f"{self.stem}_{i:06d}"
            yield Item(name=name, key=name, image=frame, index=i)

    def close(self) -> None:
        self.reader.close()


def open_source(path: str | Path) -> Source:
    """Open SOURCE, failing early (UserError) on a missing path, an empty folder, an
    unreadable or frame-less video, or an unknown file type."""
    p = Path(path)
    if p.is_dir():
        files = list_images(p)
        if not files:
            raise UserError(f"{p}: no images in this folder (looked for "
                            f"{', '.join(IMAGE_EXTS)}); pass a folder of images, an image "
                            "or a video")
        return ImageSource(files, "folder")
    if not p.exists():
        raise UserError(f"{p}: not found; pass an image, a folder of images or a video")
    if is_video_file(p):
        return VideoSource(p)
    if is_image_file(p):
        return ImageSource([p], "image")
    raise UserError(f"{p}: unsupported file type '{p.suffix}'; images: "
                    f"{', '.join(IMAGE_EXTS)}; videos: {', '.join(VIDEO_EXTS)}")
