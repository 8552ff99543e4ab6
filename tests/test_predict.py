"""`lkmseg predict` on image folders, single images and videos; bad inputs exit 2."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.data.imageio import read_mask
from lkmseg.data.rle import rle_decode
from lkmseg.data.video import VideoReader, VideoWriter
from lkmseg.engines import load_engine
from lkmseg.predict import predict_arrays

runner = CliRunner()


def _blobs(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth image with a bright ellipse (something for a mask to find)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 120, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    cv2.ellipse(img, (w // 2, h // 2), (w // 4, h // 5), 0, 0, 360, (230, 220, 210), -1)
    return img


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("imgs")
    sizes = [(120, 180), (97, 143), (64, 96), (201, 77), (50, 50)]  # odd sizes on purpose
    for i, (h, w) in enumerate(sizes):
        ext = ".png" if i % 2 else ".jpg"
        cv2.imwrite(str(d / f"car_{i:02d}{ext}"), _blobs(h, w, i)[..., ::-1])
    (d / "notes.txt").write_text("not an image")
    return d


def _write_video(path: Path, frames: int, hw=(72, 104)) -> Path:
    with VideoWriter(path, 12.0, hw) as vw:
        for i in range(frames):
            vw.write(np.roll(_blobs(*hw, 0), 3 * i, axis=1))
    return path


def test_predict_folder_masks_rle_overlay(run, folder, tmp_path):
    out = tmp_path / "out"
    csv_path = tmp_path / "sub.csv"
    res = runner.invoke(app, ["predict", str(run), str(folder), "--out", str(out),
                              "--batch-size", "2", "--rle", str(csv_path), "--overlay",
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "engine frames/s" in res.output and "engine: " in res.output
    assert "auto chose" in res.output  # measured here, and says on which figures
    images = sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))
    rows = list(csv.reader(csv_path.read_text().splitlines()))
    assert rows[0] == ["img", "rle_mask"] and len(rows) == 1 + len(images)
    by_name = dict(rows[1:])
    engine = load_engine("auto", run)  # auto's choice is cached: the same engine again
    assert "cached from" in engine.auto_choice and f"engine: {engine.describe()}" in res.output
    for img_path in images:
        mask_path = out / f"{img_path.stem}.png"
        raw = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        src = cv2.imread(str(img_path))
        assert raw.shape == src.shape[:2]  # back at the original size
        assert set(np.unique(raw)) <= {0, 255}
        mask = read_mask(mask_path)
        assert np.array_equal(rle_decode(by_name[img_path.name], mask.shape), mask)
        expected = predict_arrays(engine, [src[..., ::-1].copy()])[0]
        assert np.array_equal(mask, expected)  # the pipeline == the engine, image by image
        assert (out / f"{img_path.stem}_overlay.jpg").is_file()
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_predict_single_image_torch_engine_threshold(run, folder, tmp_path):
    img = next(folder.glob("*.jpg"))
    lo, hi = tmp_path / "lo", tmp_path / "hi"
    for out, t in ((lo, "0.05"), (hi, "0.95")):
        res = runner.invoke(app, ["predict", str(run), str(img), "--out", str(out),
                                  "--engine", "torch", "--threshold", t, "--no-progress"])
        assert res.exit_code == 0, res.output
        assert "engine: torch (fp32, cpu" in res.output
    m_lo, m_hi = read_mask(lo / f"{img.stem}.png"), read_mask(hi / f"{img.stem}.png")
    assert m_lo.sum() >= m_hi.sum() and np.all(m_lo >= m_hi)  # lower threshold, larger mask


def test_predict_video(run, tmp_path):
    video = _write_video(tmp_path / "clip.mp4", frames=9)
    out = tmp_path / "vout"
    res = runner.invoke(app, ["predict", str(run), str(video), "--out", str(out), "--overlay",
                              "--rle", str(out / "frames.csv"), "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    for name in ("clip_mask.mp4", "clip_overlay.mp4"):
        with VideoReader(out / name) as r:
            frames = list(r)
        assert len(frames) == 9 and frames[0].shape[:2] == (72, 104)
    rows = list(csv.reader((out / "frames.csv").read_text().splitlines()))[1:]
    assert [r[0] for r in rows] == [f"clip_{i:06d}" for i in range(9)]
    with VideoReader(out / "clip_mask.mp4") as r:
        first = next(iter(r))[..., 0] > 127
    exact = rle_decode(rows[0][1], (72, 104)).astype(bool)  # RLE is exact, mp4 is lossy
    assert (first == exact).mean() > 0.97


@pytest.mark.parametrize("case", ["empty_folder", "corrupt_video", "zero_frame_video",
                                  "missing", "bad_type", "out_is_input", "out_is_image_folder",
                                  "bad_threshold"])
def test_predict_bad_sources_exit_2(run, tmp_path, case):
    out = tmp_path / "out"
    src: Path
    extra: list[str] = []
    if case == "empty_folder":
        src = tmp_path / "empty"
        src.mkdir()
        (src / "readme.txt").write_text("x")
        expect = "no images in this folder"
    elif case == "corrupt_video":
        src = tmp_path / "broken.mp4"
        src.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
        expect = "broken.mp4: OpenCV cannot open this video"
    elif case == "zero_frame_video":
        src = _write_video(tmp_path / "empty.avi", frames=0)  # a valid AVI with no frames
        assert src.stat().st_size > 0
        expect = "empty.avi: the video has no decodable frames"
    elif case == "missing":
        src, expect = tmp_path / "nope.jpg", "not found"
    elif case == "bad_type":
        src = tmp_path / "data.xyz"
        src.write_text("x")
        expect = "unsupported file type"
    elif case == "out_is_input":
        src = tmp_path / "imgs"
        src.mkdir()
        cv2.imwrite(str(src / "a.png"), _blobs(32, 32, 0))
        out, expect = src, "is the input folder"
    elif case == "out_is_image_folder":  # would overwrite a.png with its own mask
        src = tmp_path / "a.png"
        cv2.imwrite(str(src), _blobs(32, 32, 0))
        out, expect = tmp_path, "is the input folder"
    else:
        src = tmp_path / "a.png"
        cv2.imwrite(str(src), _blobs(32, 32, 0))
        extra, expect = ["--threshold", "1.5"], "--threshold 1.5"
    res = runner.invoke(app, ["predict", str(run), str(src), "--out", str(out), *extra])
    assert res.exit_code == 2, res.output
    assert expect in res.output and res.output.startswith("error: ")
    assert "Traceback" not in res.output


@pytest.mark.parametrize("case", ["corrupt_onnx", "foreign_onnx", "corrupt_engine",
                                  "corrupt_weights", "not_a_run"])
def test_predict_bad_models_exit_2(tmp_path, tiny_run, case):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), _blobs(32, 32, 0))
    if case == "corrupt_onnx":
        model = tmp_path / "m.onnx"
        model.write_bytes(b"\xff\xfe\x00garbage" * 50)
        expect = "m.onnx"
    elif case == "foreign_onnx":
        import onnx
        from onnx import TensorProto, helper

        g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        model = tmp_path / "other.onnx"
        onnx.save(helper.make_model(g), str(model))
        expect = "not an lkmseg export"
    elif case == "corrupt_engine":
        model = tmp_path / "model.engine"
        model.write_bytes(b"junk")
        expect = "no sidecar"
    elif case == "corrupt_weights":
        model = tiny_run(width=2, depth=2)  # not exported: auto falls back to torch
        (model / "model.safetensors").write_bytes(b"\x10\x00" * 8)
        expect = "corrupt or truncated weights"
    else:
        model = tmp_path
        expect = "neither a run folder"
    res = runner.invoke(app, ["predict", str(model), str(img), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert expect in res.output and "Traceback" not in res.output


@pytest.mark.realdata
def test_predict_real_carvana_full_resolution(run, carvana_dir, tmp_path):
    src = tmp_path / "cars"
    src.mkdir()
    for img in sorted((carvana_dir / "train").glob("*.jpg"))[:2]:
        (src / img.name).symlink_to(img)
    out = tmp_path / "out"
    res = runner.invoke(app, ["predict", str(run), str(src), "--out", str(out),
                              "--rle", str(tmp_path / "sub.csv"), "--no-progress"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "sub.csv").read_text().splitlines()))
    assert [r["img"] for r in rows] == sorted(p.name for p in src.iterdir())
    for r in rows:
        mask = read_mask(out / (Path(r["img"]).stem + ".png"))
        assert mask.shape == (1280, 1918)
        assert np.array_equal(rle_decode(r["rle_mask"], mask.shape), mask)


def test_every_input_gets_its_own_mask(run, tmp_path):
    """a.jpg and a.JPG, b.png, b.jpg and b_png.jpg: five inputs, five masks, each of its own
    image; a stem no other input shares keeps its plain name (c.jpg -> c.png)."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    names = ["a.jpg", "a.JPG", "b.png", "b.jpg", "b_png.jpg", "c.jpg"]
    for i, name in enumerate(names):
        cv2.imwrite(str(src / name), _blobs(48 + 8 * i, 64, i)[..., ::-1])
    res = runner.invoke(app, ["predict", str(run), str(src), "--out", str(out),
                              "--engine", "onnxruntime", "--no-progress"])
    assert res.exit_code == 0, res.output
    want = ["a.JPG.png", "a.jpg.png", "b.jpg.png", "b.png.png", "b_png.png", "c.png"]
    assert sorted(p.name for p in out.iterdir()) == want
    engine = load_engine("onnxruntime", run, "fp32", "cpu")
    for name, mask_name in zip(names, ["a.jpg.png", "a.JPG.png", "b.png.png", "b.jpg.png",
                                       "b_png.png", "c.png"]):
        image = cv2.imread(str(src / name))[..., ::-1].copy()
        assert np.array_equal(read_mask(out / mask_name), predict_arrays(engine, [image])[0])


def test_output_names_are_unique_and_plain_where_they_can_be():
    from lkmseg.predict.sources import output_names

    def names(*files: str) -> list[str]:
        return output_names([Path("d") / f for f in files])

    assert names("x.jpg", "y.png") == ["x", "y"]  # no collision: the names of old
    assert names("a.jpg", "A.png") == ["a.jpg", "A.png"]  # one mask on a case-blind disk
    assert names("b.png", "b.png.jpg") == ["b", "b.png.jpg"]  # not b.png.png twice
    assert names("a.jpg", "a.JPG", "a.png", "a.jpg.png", "a_jpg.png", "b.tif") == \
        ["a.jpg", "a.JPG", "a.png", "a.jpg.png", "a_jpg", "b"]
