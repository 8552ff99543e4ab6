"""Regenerate ``lkmseg/samples/`` (package data) from the synthetic generator (deterministic;
run from anywhere).

    python scripts/make_samples.py [--out lkmseg/samples]

Writes ``images/<id>_<NN>.jpg`` (4 views of 2 cars, 240x360), ``masks/<id>_<NN>.png``
(0/255, same stem) and ``video.mp4`` (one car turning, 24 frames at 12 fps, 180x270,
OpenCV ``mp4v``), then reads the video back and reports its frame count.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from lkmseg.data.synth import car_id, car_of, render_view
from lkmseg.files.layout import SAMPLES_DIR
from lkmseg.fsutil import atomic_path, write_bytes

SEED = 7
IMAGES = [(0, 2), (0, 5), (1, 9), (1, 14)]   # (car index, Carvana view)
IMAGE_SIZE = (240, 360)                        # (height, width)
VIDEO_CAR, VIDEO_SIZE, VIDEO_FPS, VIDEO_FRAMES, VIDEO_STEP_DEG = 1, (180, 270), 12, 24, 7.5


def _encode(ext: str, img: np.ndarray, params: list[int]) -> bytes:
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError(f"OpenCV cannot encode {ext}")
    return buf.tobytes()


def sample_stem(index: int, view: int) -> str:
    """``synth-<id>_<NN>``: Carvana-like, but never mistakable for a real Carvana file."""
    return f"synth-{car_id(SEED, index)}_{view:02d}"


def write_images(out: Path) -> list[Path]:
    paths = []
    for index, view in IMAGES:
        stem = sample_stem(index, view)
        img, mask = render_view(car_of(SEED, index), view, IMAGE_SIZE)
        jpg = _encode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        write_bytes(out / "images" / f"{stem}.jpg", jpg)
        write_bytes(out / "masks" / f"{stem}.png", _encode(".png", mask, []))
        paths.append(out / "images" / f"{stem}.jpg")
    return paths


def write_video(path: Path) -> None:
    """One car turning on the turntable: consecutive (fractional) yaw angles."""
    h, w = VIDEO_SIZE
    car = car_of(SEED, VIDEO_CAR)
    with atomic_path(path) as tmp:
        tmp_mp4 = tmp.with_suffix(".mp4")  # VideoWriter picks the container from the suffix
        writer = cv2.VideoWriter(str(tmp_mp4), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, (w, h))
        if not writer.isOpened():
            raise RuntimeError("OpenCV cannot open an mp4v VideoWriter")
        try:
            for k in range(VIDEO_FRAMES):
                img, _ = render_view(car, 1, VIDEO_SIZE, yaw_deg=30.0 + k * VIDEO_STEP_DEG)
                writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            writer.release()
            os.replace(tmp_mp4, tmp)
        finally:
            writer.release()
            tmp_mp4.unlink(missing_ok=True)


def count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.isOpened():
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=SAMPLES_DIR)
    args = ap.parse_args(argv)
    images = write_images(args.out)
    write_video(args.out / "video.mp4")
    frames = count_frames(args.out / "video.mp4")
    if frames == 0:
        print(f"error: {args.out / 'video.mp4'} reads back with 0 frames", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {len(images)} images + masks and video.mp4 ({frames} frames read back, "
          f"{VIDEO_FPS} fps) into {args.out}: {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
