"""Outputs of ``lkmseg predict``: mask PNGs (0/255), overlays, mask/overlay videos, RLE CSV,
JSON lines (``--json``; ``-`` streams them to stdout). Every file is written atomically."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from lkmseg.data.rle import rle_encode
from lkmseg.data.video import VideoWriter
from lkmseg.errors import UserError
from lkmseg.fsutil import write_bytes, write_text
from lkmseg.predict.records import record
from lkmseg.predict.sources import Item

VIDEO_KINDS = ("video", "camera", "stream")  # written as mask (and overlay) videos

OVERLAY_RGB = np.array([0, 255, 80], dtype=np.float32)
OVERLAY_ALPHA = 0.45


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB image with the mask tinted green and its outline drawn."""
    out = image.astype(np.float32)
    m = mask.astype(bool)
    out[m] = out[m] * (1 - OVERLAY_ALPHA) + OVERLAY_RGB * OVERLAY_ALPHA
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (255, 255, 0), max(1, min(image.shape[:2]) // 400))
    return out


def _encode(ext: str, img: np.ndarray, path: Path) -> bytes:
    bgr = img[..., ::-1] if img.ndim == 3 else img
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr))
    if not ok:
        raise UserError(f"{path}: OpenCV could not encode the {ext} image")
    return buf.tobytes()


class Sink:
    """Writes everything for one prediction run; ``close()`` finishes videos and the CSV."""

    def __init__(self, out_dir: Path, kind: str, *, overlay: bool, rle: Path | None,
                 fps: float = 25.0, stem: str = "", json_path: str | Path | None = None) -> None:
        self.out, self.kind, self.want_overlay, self.rle_path = out_dir, kind, overlay, rle
        self.fps, self.stem, self.json_path = fps, stem, json_path
        self.lines: list[str] = []
        self.rows: list[tuple[str, str]] = []
        self.videos: dict[str, VideoWriter] = {}
        self.written: list[Path] = []
        self.count = 0

    def _video(self, which: str, size_hw: tuple[int, int]) -> VideoWriter:
        if which not in self.videos:
            path = self.out / f"{self.stem}_{which}.mp4"
            self.videos[which] = VideoWriter(path, self.fps, size_hw)
        return self.videos[which]

    def write(self, item: Item, mask: np.ndarray) -> None:
        """``mask``: uint8 {0,1} at the item's original size."""
        if self.kind in VIDEO_KINDS:
            video = self._video("mask", mask.shape[:2])
            video.write(mask * 255)
            path = video.path
            if self.want_overlay:
                self._video("overlay", mask.shape[:2]).write(overlay(item.image, mask))
        else:
            path = self.out / f"{item.name}.png"
            write_bytes(path, _encode(".png", mask * 255, path))
            self.written.append(path)
            if self.want_overlay:
                path = self.out / f"{item.name}_overlay.jpg"
                write_bytes(path, _encode(".jpg", overlay(item.image, mask), path))
                self.written.append(path)
        if self.rle_path is not None:
            self.rows.append((item.key, rle_encode(mask)))
        if self.json_path is not None:
            self._json(item, mask, path)
        self.count += 1

    def _json(self, item: Item, mask: np.ndarray, path: Path) -> None:
        where = getattr(item, "origin", "") or item.key
        frame = getattr(item, "frame", item.index)
        line = json.dumps(record(where, frame, mask, path, rle=self.rle_path is not None))
        if str(self.json_path) == "-":  # as they come: a pipeline reads them live
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        else:
            self.lines.append(line)

    def close(self) -> list[Path]:
        for v in self.videos.values():
            v.close()
            self.written.append(v.path)
        self.videos.clear()
        if self.rle_path is not None:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["img", "rle_mask"])
            w.writerows(self.rows)
            write_text(self.rle_path, buf.getvalue())
            self.written.append(self.rle_path)
        if self.json_path is not None and str(self.json_path) != "-":
            write_text(self.json_path, "".join(f"{ln}\n" for ln in self.lines))
            self.written.append(Path(self.json_path))
        return self.written

    def abort(self) -> None:
        """Discard partial videos (PNG masks already written are complete files)."""
        for v in self.videos.values():
            v.abort()
        self.videos.clear()
