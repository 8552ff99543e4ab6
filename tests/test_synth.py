"""The synthetic Carvana-like generator: determinism, mask quality, layout, cache, samples."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lkmseg.data.synth import car_id, car_of, default_dataset, random_car, render_view
from lkmseg.data.synth import dataset as synth
from lkmseg.errors import UserError
from lkmseg.files.layout import SAMPLES_DIR

SAMPLES = SAMPLES_DIR
ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"^[0-9a-f]{12}_(0[1-9]|1[0-6])\.jpg$")
SIZE = (320, 480)
TINY = (48, 72)


def _grey(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32).mean(axis=2)


def test_same_seed_same_pixels_other_seed_differs():
    a = random_car(np.random.default_rng([3, 1]))
    assert a == random_car(np.random.default_rng([3, 1]))
    img1, m1 = render_view(a, 4, SIZE)
    img2, m2 = render_view(car_of(3, 1), 4, SIZE)
    assert np.array_equal(img1, img2) and np.array_equal(m1, m2)
    img3, m3 = render_view(car_of(4, 1), 4, SIZE)
    assert asdict(car_of(4, 1)) != asdict(a)
    assert not np.array_equal(img1, img3) and not np.array_equal(m1, m3)


@pytest.mark.parametrize("view", [1, 3, 5, 9, 12])
def test_masks_binary_and_plausible(view):
    img, mask = render_view(car_of(0, view), view, SIZE)
    assert img.shape == (*SIZE, 3) and img.dtype == np.uint8
    assert mask.shape == SIZE and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 255}
    assert 0.05 <= (mask > 0).mean() <= 0.60
    car, floor = _grey(img)[mask > 0], _grey(img)[mask == 0]
    assert abs(float(np.median(car)) - float(np.median(floor))) > 3  # the car is visible


def test_front_view_is_narrower_than_side_view():
    c = car_of(0, 0)
    width = [np.ptp(np.nonzero(render_view(c, v, SIZE)[1].any(axis=0))[0]) for v in (1, 5)]
    assert width[0] < 0.6 * width[1]


def test_shadow_is_dark_but_not_in_mask():
    img, mask = render_view(car_of(0, 2), 5, SIZE)
    g = _grey(img)
    rows = np.nonzero(mask.any(axis=1))[0]
    near = (cv2.dilate(mask, np.ones((7, 7), np.uint8)) > 0) & (mask == 0)
    near[: rows[0] + int(0.6 * (rows[-1] - rows[0]))] = False  # lower part of the car only
    floor = float(np.median(g[-20:]))
    shadow = near & (g < floor - 20)
    assert shadow.sum() > 100  # dark floor pixels hugging the car, all outside the mask


def test_thin_parts_exist():
    """Antenna / mirror stalks: foreground a 4x4 opening removes, far from what it keeps."""
    for view in (1, 3, 5):
        mask = render_view(car_of(0, 1), view, SIZE)[1]
        opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((4, 4), np.uint8))
        dist = cv2.distanceTransform(np.where(opened > 0, 0, 255).astype(np.uint8),
                                     cv2.DIST_L2, 3)
        thin = (mask > 0) & (opened == 0) & (dist > 3)
        assert thin.sum() >= 10, f"view {view}: no structure of width <= 3 px"


def test_fractional_yaw():
    c = car_of(0, 0)
    assert np.array_equal(render_view(c, 3, TINY)[1], render_view(c, 7, TINY, yaw_deg=45.0)[1])
    half = render_view(c, 1, SIZE, yaw_deg=11.25)[1]
    assert not np.array_equal(half, render_view(c, 1, SIZE)[1])
    assert not np.array_equal(half, render_view(c, 2, SIZE)[1])


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_write_synthetic_layout_and_bytes(tmp_path):
    out = synth.write_synthetic(tmp_path / "a", cars=2, views=3, size=TINY, progress=False)
    images = sorted(p.name for p in (out / "train").iterdir())
    masks = sorted(p.name for p in (out / "train_masks").iterdir())
    assert len(images) == 6 and all(NAME.match(n) for n in images)
    assert masks == [n[:-4] + "_mask.gif" for n in images]
    assert {n[:12] for n in images} == {car_id(0, 0), car_id(0, 1)}
    for name in masks:
        m_cv = cv2.imread(str(out / "train_masks" / name), cv2.IMREAD_GRAYSCALE)
        m_pil = np.array(Image.open(out / "train_masks" / name).convert("L"))
        if m_cv is None:  # an OpenCV wheel without GIF (4.x, numpy<2); readers use Pillow
            m_cv = m_pil
        assert m_cv.shape == TINY and set(np.unique(m_cv)) == {0, 255}
        assert np.array_equal(m_cv, m_pil)
    assert cv2.imread(str(out / "train" / images[0])).shape == (*TINY, 3)
    again = synth.write_synthetic(tmp_path / "b", cars=2, views=3, size=TINY, progress=False)
    assert _files(out) == _files(again)  # byte-identical
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary left


def test_write_synthetic_refuses_existing(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists"):
        synth.write_synthetic(tmp_path / "d", cars=1, views=1, size=TINY, progress=False)
    assert (tmp_path / "d" / "keep.txt").read_text() == "mine"


def test_default_dataset_is_cached(tmp_path):
    kw = {"cars": 1, "views": 2, "size": TINY, "progress": False}
    root = default_dataset(tmp_path, **kw)
    assert root.parent == tmp_path and root.name == "synth-v1-c1-v2-48x72-s0"
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert len(stamps) == 2 + 4
    assert default_dataset(tmp_path, **kw) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps


def test_default_dataset_uses_env_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "env"))
    root = default_dataset(cars=1, views=1, size=TINY, progress=False)
    assert root.parent == tmp_path / "env"


def test_default_dataset_concurrent_winner(tmp_path, monkeypatch):
    """Another process finishing first: ours is discarded and theirs is returned."""
    kw = {"cars": 1, "views": 1, "size": TINY, "progress": False}
    target = tmp_path / synth.dataset_name(1, 1, TINY, 0)
    real = synth._generate

    def racing(root, *args):
        real(root, *args)
        if not target.exists():
            target.mkdir()
            real(target / "x", *args)  # build theirs, then publish it under the name
            for sub in ("train", "train_masks"):
                (target / "x" / sub).rename(target / sub)
            (target / "x").rmdir()

    monkeypatch.setattr(synth, "_generate", racing)
    assert default_dataset(tmp_path, **kw) == target
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_samples_pair_by_stem_and_video_reads_back():
    images = sorted((SAMPLES / "images").glob("*.jpg"))
    assert len(images) == 4 and all(NAME.match(p.name[len("synth-"):]) for p in images)
    for p in images:
        mask = cv2.imread(str(SAMPLES / "masks" / f"{p.stem}.png"), cv2.IMREAD_GRAYSCALE)
        assert mask is not None and set(np.unique(mask)) == {0, 255}
    cap = cv2.VideoCapture(str(SAMPLES / "video.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames > 0
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert total < 1_000_000


def test_samples_match_the_generator():
    """lkmseg/samples/ comes from scripts/make_samples.py; masks are lossless, compare them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_samples", ROOT / "scripts" / "make_samples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for index, view in mod.IMAGES:
        stem = mod.sample_stem(index, view)
        img, mask = render_view(car_of(mod.SEED, index), view, mod.IMAGE_SIZE)
        saved = cv2.imread(str(SAMPLES / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(mask, saved), f"{stem}: rerun scripts/make_samples.py"
        jpg = cv2.cvtColor(cv2.imread(str(SAMPLES / "images" / f"{stem}.jpg")), cv2.COLOR_BGR2RGB)
        assert np.abs(jpg.astype(int) - img).mean() < 3
