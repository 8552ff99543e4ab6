"""Bad input, systematically: every input below is made by the test itself and fed to the CLI.

A valid-but-unusual input (16-bit, CMYK, RGBA, grey, 1x1, 0/1 masks...) must work, and be
read correctly. Anything else must exit 2 with ONE line naming the culprit (the file, or the
option), never a traceback, and leave every file that already existed byte-for-byte as it
was (an earlier run folder, the dataset, an earlier prediction). Dataset inputs go through
both ``lkmseg data check`` and ``lkmseg train``; models and videos through ``predict`` /
``export``; run folders through ``predict``, ``export`` and ``train --resume``.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_run, write_pairs
from PIL import Image
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.data.imageio import read_image, read_mask

TINY = ["--block", "1x5", "--width", "4", "--depth", "3", "--size", "32x48",
        "--batch-size", "2", "--channels-last", "off", "--amp", "off", "--val-frac", "0.34",
        "--workers", "0"]
H, W = 40, 60  # size of the dataset's images
STEM = "000000000001_01"  # the pair each dataset case spoils


@dataclass
class World:
    root: Path
    data: Path  # a valid dataset (Carvana layout, 3 cars x 2 views)
    runs: Path  # --out, holding an earlier run that must survive untouched
    run: Path  # a run folder made without training (predict / export)
    trained: Path  # a run folder with a resumable checkpoint (train --resume)
    image: Path  # a valid image to predict on
    pred: Path  # a prediction folder holding an earlier prediction

    @property
    def img(self) -> Path:
        return self.data / "train" / f"{STEM}.jpg"

    @property
    def msk(self) -> Path:
        return self.data / "train_masks" / f"{STEM}_mask.gif"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Built once: the dataset, a trained (resumable) run, an untrained run."""
    root = tmp_path_factory.mktemp("bad_template")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    write_pairs(root / "data", "carvana", groups=3, views=2, size=(H, W))
    make_run(root / "run", width=4, depth=3, size=(32, 48))
    old = os.environ.get("LKMSEG_CACHE")
    os.environ["LKMSEG_CACHE"] = str(root / "cache")
    try:
        r = CliRunner().invoke(app, ["train", "--data", str(root / "data"), *TINY, "--steps",
                                     "2", "--out", str(root / "runs"), "--name", "earlier"])
    finally:
        if old is None:
            os.environ.pop("LKMSEG_CACHE")
        else:
            os.environ["LKMSEG_CACHE"] = old
    assert r.exit_code == 0, r.output
    shutil.copytree(root / "runs" / "earlier", root / "trained")
    return root


@pytest.fixture
def world(template, tmp_path, monkeypatch) -> World:
    root = tmp_path / "w"
    shutil.copytree(template, root, symlinks=True)
    monkeypatch.setenv("LKMSEG_CACHE", str(root / "cache"))
    (root / "pred").mkdir()
    cv2.imwrite(str(root / "pred" / "earlier.png"), np.full((4, 4), 255, np.uint8))
    image = root / "photo.jpg"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (H, W, 3), np.uint8))
    return World(root, root / "data", root / "runs", root / "run", root / "trained", image,
                 root / "pred")


# ------------------------------------------------------------------------- file makers


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A tiny PNG whose header claims w x h pixels (decoding it fully would need w*h*3 B)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(8, int(len(data) * keep))])


def _replace(old: Path, new_name: str) -> Path:
    old.unlink()
    return old.with_name(new_name)


def _mask_of(w: World) -> np.ndarray:
    return (np.asarray(Image.open(w.msk).convert("L")) > 127).astype(np.uint8)


def _image_of(w: World) -> np.ndarray:
    return cv2.imread(str(w.img))[..., ::-1]  # RGB


def _onnx_identity(path: Path, w: World, channels: int) -> None:
    """An ONNX file tagged as an lkmseg export of ``w.run`` whose input and output have
    ``channels`` channels (the real model: 3 in, 1 out)."""
    import onnx
    from onnx import TensorProto, helper

    from lkmseg.config import load_config
    from lkmseg.files.onnx_meta import INPUT_NAME, OUTPUT_NAME, build_metadata, set_metadata

    x = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["n", channels, "h", "w"])
    y = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["n", channels, "h", "w"])
    nodes = [helper.make_node("Identity", [INPUT_NAME], [OUTPUT_NAME])]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    set_metadata(m, build_metadata(load_config(w.run), "fp32", True, 18))
    onnx.save(m, str(path))


def _edit_config(run: Path, fn: Callable[[dict], object]) -> Path:
    p = run / "config.json"
    d = json.loads(p.read_text())
    out = fn(d)
    p.write_text(json.dumps(d if out is None else out))
    return p


# ------------------------------------------------------------------------- dataset cases
# Each spoils the dataset and returns (culprit or None when the input is valid, check of
# how a valid input was read or None).

def _zero_byte_jpeg(w):
    w.img.write_bytes(b"")
    return w.img, None


def _truncated_jpeg(w):
    _truncate(w.img)
    return w.img, None


def _truncated_png(w):
    p = _replace(w.img, f"{STEM}.png")
    cv2.imwrite(str(p), np.random.default_rng(1).integers(0, 255, (H, W, 3), np.uint8))
    _truncate(p)
    return p, None


def _truncated_gif_image(w):
    p = _replace(w.img, f"{STEM}.gif")
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (H, W), np.uint8)).save(p)
    _truncate(p)
    return p, None


def _zero_byte_gif_mask(w):
    w.msk.write_bytes(b"")
    return w.msk, None


def _truncated_gif_mask(w):
    _truncate(w.msk)
    return w.msk, None


def _truncated_png_mask(w):
    m = _mask_of(w)
    p = _replace(w.msk, f"{STEM}_mask.png")
    cv2.imwrite(str(p), m * 255)
    _truncate(p, 0.6)
    return p, None


def _image_16bit_png(w):
    rgb = _image_of(w).astype(np.uint16) * 257  # same picture, 16 bits per channel
    p = _replace(w.img, f"{STEM}.png")
    cv2.imwrite(str(p), rgb[..., ::-1])

    def check():
        np.testing.assert_array_equal(read_image(p), (rgb >> 8).astype(np.uint8))
    return None, check


def _mask_16bit_png(w):
    m = _mask_of(w)
    p = _replace(w.msk, f"{STEM}_mask.png")
    cv2.imwrite(str(p), m.astype(np.uint16) * 65535)
    return None, lambda: np.testing.assert_array_equal(read_mask(p), m)


def _image_cmyk_jpeg(w):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[...] = (200, 60, 20)
    Image.fromarray(rgb).convert("CMYK").save(w.img, quality=95)
    assert Image.open(w.img).mode == "CMYK"

    def check():
        assert np.abs(read_image(w.img).astype(int) - (200, 60, 20)).max() <= 12
    return None, check


def _image_rgba_png(w):
    rgb = _image_of(w)
    p = _replace(w.img, f"{STEM}.png")
    Image.fromarray(np.dstack([rgb, np.full((H, W), 90, np.uint8)]), "RGBA").save(p)
    return None, lambda: np.testing.assert_array_equal(read_image(p), rgb)


def _image_grayscale_jpeg(w):
    grey = cv2.cvtColor(_image_of(w), cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(w.img), grey, [cv2.IMWRITE_JPEG_QUALITY, 100])

    def check():
        a = read_image(w.img)
        assert a.shape == (H, W, 3) and (a[..., 0] == a[..., 1]).all()
        assert (a[..., 1] == a[..., 2]).all()
    return None, check


def _image_huge_dimensions(w):
    p = _replace(w.img, f"{STEM}.png")
    _png_header_only(p, 100_000, 100_000)

    def no_allocation():  # refused from the header: no pixel buffer was ever allocated
        from lkmseg.errors import UserError

        tracemalloc.start()
        try:
            with pytest.raises(UserError, match="too large"):
                read_image(p)
            assert tracemalloc.get_traced_memory()[1] < 50e6
        finally:
            tracemalloc.stop()
    no_allocation()
    return p, None


def _image_and_mask_1x1(w):
    cv2.imwrite(str(w.img), np.full((1, 1, 3), 200, np.uint8))
    Image.fromarray(np.full((1, 1), 255, np.uint8)).save(w.msk)

    def check():
        assert read_image(w.img).shape == (1, 1, 3) and read_mask(w.msk).tolist() == [[1]]
    return None, check


def _mask_other_size(w):
    Image.fromarray(np.zeros((H // 2, W), np.uint8)).save(w.msk)
    return w.msk, None


def _mask_values_0_1(w):
    m = _mask_of(w)
    p = _replace(w.msk, f"{STEM}_mask.png")
    cv2.imwrite(str(p), m)  # 0 = background, 1 = car: not 0/255
    return None, lambda: np.testing.assert_array_equal(read_mask(p), m)


def _mask_values_noisy_jpeg(w):
    m = _mask_of(w)
    noisy = np.clip(m.astype(int) * 255 + np.random.default_rng(2).integers(-30, 30, m.shape),
                    0, 255).astype(np.uint8)
    p = _replace(w.msk, f"{STEM}_mask.jpg")
    cv2.imwrite(str(p), noisy, [cv2.IMWRITE_JPEG_QUALITY, 70])

    def check():
        assert (read_mask(p) != m).mean() < 0.02  # JPEG blurs the edge a little
    return None, check


def _mask_label_values(w):
    m = _mask_of(w)
    labels = m * 3  # a label map with class 3 = car
    p = _replace(w.msk, f"{STEM}_mask.png")
    cv2.imwrite(str(p), labels)
    return None, lambda: np.testing.assert_array_equal(read_mask(p), m)


def _text_with_jpg_extension(w):
    w.img.write_text("this is a README, not a photograph\n" * 20)
    return w.img, None


def _symlink_to_nowhere(w):
    w.img.unlink()
    w.img.symlink_to(w.root / "gone" / "nowhere.jpg")
    return w.img, None


def _missing_mask(w):
    w.msk.unlink()
    return w.img, None


def _one_car_only(w):
    for p in list((w.data / "train").iterdir()):
        if not p.name.startswith("000000000001"):
            p.unlink()
    return w.data, None


DATASET_CASES: dict[str, Callable] = {
    "zero_byte_jpeg": _zero_byte_jpeg,
    "truncated_jpeg": _truncated_jpeg,
    "truncated_png": _truncated_png,
    "truncated_gif_image": _truncated_gif_image,
    "zero_byte_gif_mask": _zero_byte_gif_mask,
    "truncated_gif_mask": _truncated_gif_mask,
    "truncated_png_mask": _truncated_png_mask,
    "image_16bit_png": _image_16bit_png,
    "mask_16bit_png": _mask_16bit_png,
    "image_cmyk_jpeg": _image_cmyk_jpeg,
    "image_rgba_png": _image_rgba_png,
    "image_grayscale_jpeg": _image_grayscale_jpeg,
    "image_huge_dimensions": _image_huge_dimensions,
    "image_and_mask_1x1": _image_and_mask_1x1,
    "mask_other_size": _mask_other_size,
    "mask_values_0_1": _mask_values_0_1,
    "mask_values_noisy_jpeg": _mask_values_noisy_jpeg,
    "mask_label_values": _mask_label_values,
    "text_with_jpg_extension": _text_with_jpg_extension,
    "symlink_to_nowhere": _symlink_to_nowhere,
    "missing_mask": _missing_mask,
    "one_car_only": _one_car_only,
}


# ------------------------------------------------------------------------- running and judging


def _files(root: Path) -> dict[str, bytes]:
    """Every file that exists (the cache aside), with its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] == "cache" or p.is_symlink() or not p.is_file():
            continue
        try:
            out[str(rel)] = p.read_bytes()
        except PermissionError:
            out[str(rel)] = b"<unreadable>"
    return out


def _invoke(args: list[str]):
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), (
        f"{type(r.exception).__name__}: {r.exception} (a traceback would reach the user)")
    return r.exit_code, r.output


def assert_refused(code: int, output: str, culprit: str) -> str:
    """Exit 2, one ``error:`` line naming the culprit, no traceback; returns the line."""
    assert "Traceback" not in output, output
    assert code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert culprit in errors[0], f"{culprit!r} not named in: {errors[0]}"
    return errors[0]


def assert_unchanged(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    changed = [k for k in before if after.get(k) != before[k]]
    assert not changed, f"files damaged or removed: {changed}"


SEEN: dict[str, str] = {}  # case id -> what the user saw (printed by -s / in the report)


def _seen(case: str, code: int, output: str) -> None:
    lines = [x for x in output.splitlines() if x.startswith(("error:", "  problem:", "done:"))]
    SEEN[case] = f"exit {code}: " + (" | ".join(lines) or output.strip().splitlines()[-1])
    print(f"\n[{case}] {SEEN[case]}")


@pytest.mark.parametrize("command", ["check", "train"])
@pytest.mark.parametrize("case", list(DATASET_CASES))
def test_dataset_input(world, case, command):
    culprit, check = DATASET_CASES[case](world)
    before = _files(world.root)
    if command == "check":
        code, out = _invoke(["data", "check", world.data])
    else:
        code, out = _invoke(["train", "--data", world.data, *TINY, "--steps", "1",
                             "--out", world.runs, "--name", "new"])
    _seen(f"{case}-{command}", code, out)
    assert "Traceback" not in out
    assert_unchanged(before, _files(world.root))
    if culprit is None:  # a valid input: works, and is read as it should be
        assert code == 0, out
        if command == "check":
            assert "problems    0" in out, out
        else:
            assert (world.runs / "new" / "summary.json").is_file()
        check()
        return
    if command == "check":
        assert code == 2, out
        problems = [x for x in out.splitlines() if x.startswith("  problem:")]
        assert any(str(culprit) in x for x in problems), out
    else:
        assert_refused(code, out, str(culprit))
        assert not (world.runs / "new").exists()  # no half-made run folder


def _as_user_without_dac_override() -> list[str]:
    """Root reads any file whatever its mode: drop that capability for the child."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


@pytest.mark.parametrize("what", ["file", "folder"])
@pytest.mark.parametrize("command", ["check", "train"])
def test_unreadable_permissions(world, what, command):
    target = world.img if what == "file" else world.data / "train"
    target.chmod(0)
    try:
        before = _files(world.root)
        args = (["data", "check", str(world.data)] if command == "check" else
                ["train", "--data", str(world.data), *TINY, "--steps", "1", "--out",
                 str(world.runs), "--name", "new"])
        r = subprocess.run([*_as_user_without_dac_override(), sys.executable, "-m", "lkmseg",
                            *args], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "LKMSEG_CACHE": str(world.root / "cache")},
                           check=False)
        out = r.stdout + r.stderr
        _seen(f"unreadable_{what}-{command}", r.returncode, out)
        assert "Traceback" not in out and r.returncode == 2, out
        assert "permission denied" in out and str(target) in out, out
        assert_unchanged(before, _files(world.root))
    finally:
        target.chmod(0o755)


# ------------------------------------------------------------------------- models, videos, runs


def _predict(w: World, model, source=None, *extra):
    return ["predict", model, source or w.image, "--out", w.pred, "--engine", "torch",
            "--no-progress", *extra]


def _video_zero_frames(w):
    p = w.root / "empty.mp4"
    vw = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), 10, (W, H))
    vw.release()
    if not p.exists():
        p.write_bytes(b"")
    return _predict(w, w.run, p), p


def _not_a_video(w):
    p = w.root / "clip.mp4"
    p.write_text("#!/bin/sh\necho this is a shell script\n")
    return _predict(w, w.run, p), p


def _truncated_safetensors(w):
    _truncate(w.run / "model.safetensors", 0.3)
    return _predict(w, w.run), w.run / "model.safetensors"


def _truncated_safetensors_export(w):
    _truncate(w.run / "model.safetensors", 0.3)
    return ["export", w.run, "--no-fp16"], w.run / "model.safetensors"


def _truncated_onnx(w):
    p = w.root / "model.onnx"
    _onnx_identity(p, w, 3)
    _truncate(p)
    return ["predict", p, w.image, "--out", w.pred, "--no-progress"], p


def _onnx_one_channel_input(w):
    p = w.root / "gray.onnx"
    _onnx_identity(p, w, 1)
    return ["predict", p, w.image, "--out", w.pred, "--no-progress"], p


def _onnx_three_channel_output(w):
    p = w.root / "rgb_out.onnx"
    _onnx_identity(p, w, 3)
    return ["predict", p, w.image, "--out", w.pred, "--no-progress"], p


def _truncated_engine(w):
    p = w.root / "model.engine"
    p.write_bytes(b"ftrt" + os.urandom(60))
    return ["predict", p, w.image, "--out", w.pred, "--no-progress"], p


def _source_not_an_image(w):
    p = w.root / "photo2.png"
    p.write_bytes(b"GIF89a but not really")
    return _predict(w, w.run, p), p


def _source_huge_dimensions(w):
    p = w.root / "huge.png"
    _png_header_only(p, 60_000, 60_000)
    return _predict(w, w.run, p), p


def _run_without_config(w, command):
    (w.run / "config.json").unlink()
    (w.trained / "config.json").unlink()
    return _run_command(w, command), None


def _run_command(w: World, command: str) -> list:
    return {"predict": _predict(w, w.run), "export": ["export", w.run, "--no-fp16"],
            "resume": ["train", "--resume", w.trained, "--steps", "3"]}[command]


def _config_case(edit: Callable[[dict], object]):
    def build(w, command):
        for run in (w.run, w.trained):
            _edit_config(run, edit)
        return _run_command(w, command), "config.json"
    return build


def _bad_json(w, command):
    for run in (w.run, w.trained):
        (run / "config.json").write_text('{"model": {"block": "1x5",')
    return _run_command(w, command), "config.json"


def _width_edited(w, command):
    for run in (w.run, w.trained):
        _edit_config(run, lambda d: d["model"].update(width=6))
    culprit = {"predict": "model.safetensors", "export": "model.safetensors",
               "resume": "state.pt"}[command]
    return _run_command(w, command), culprit


RUN_CASES = {
    "run_without_config": (_run_without_config, None),
    "config_not_json": (_bad_json, None),
    "config_a_list": (_config_case(lambda d: [1, 2, 3]), None),
    "config_width_edited": (_width_edited, None),
    "config_width_not_a_number": (_config_case(lambda d: d["model"].update(width="abc")), None),
    "config_unknown_block": (_config_case(lambda d: d["model"].update(block="9x2")), None),
    "config_size_three_numbers": (_config_case(lambda d: d.update(size=[0, 32, 48])), None),
}


def _run_params():
    out = []
    for case, (_, xfail) in RUN_CASES.items():
        for command in ("predict", "export", "resume"):
            marks = []
            if xfail:
                marks = [pytest.mark.xfail(strict=True, reason=xfail)]
            out.append(pytest.param(case, command, marks=marks, id=f"{case}-{command}"))
    return out


@pytest.mark.parametrize("case,command", _run_params())
def test_run_folder_input(world, case, command):
    args, culprit = RUN_CASES[case][0](world, command)
    if culprit is None:
        culprit = str(world.trained if command == "resume" else world.run)
    before = _files(world.root)
    code, out = _invoke(args)
    _seen(f"{case}-{command}", code, out)
    assert_refused(code, out, str(culprit))
    assert_unchanged(before, _files(world.root))


MODEL_CASES = {
    "video_zero_frames": (_video_zero_frames, None),
    "not_a_video_mp4": (_not_a_video, None),
    "truncated_safetensors": (_truncated_safetensors, None),
    "truncated_safetensors_export": (_truncated_safetensors_export, None),
    "truncated_onnx": (_truncated_onnx, None),
    "onnx_one_channel_input": (_onnx_one_channel_input, None),
    "onnx_three_channel_output": (_onnx_three_channel_output, None),
    "truncated_engine": (_truncated_engine, None),
    "predict_source_not_an_image": (_source_not_an_image, None),
    "predict_source_huge_dimensions": (_source_huge_dimensions, None),
}


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=[pytest.mark.xfail(strict=True, reason=x)] if x else [])
    for c, (_, x) in MODEL_CASES.items()])
def test_model_or_video_input(world, case):
    args, culprit = MODEL_CASES[case][0](world)
    before = _files(world.root)
    code, out = _invoke(args)
    _seen(case, code, out)
    assert_refused(code, out, str(culprit))
    assert_unchanged(before, _files(world.root))


@pytest.mark.parametrize("case", ["cmyk_jpeg", "16bit_png", "grey_png"])
def test_predict_valid_unusual_images(world, case):
    p = world.root / f"in_{case}.{'jpg' if 'jpeg' in case else 'png'}"
    rgb = np.random.default_rng(3).integers(0, 255, (H, W, 3), np.uint8)
    if case == "cmyk_jpeg":
        Image.fromarray(rgb).convert("CMYK").save(p)
    elif case == "16bit_png":
        cv2.imwrite(str(p), rgb.astype(np.uint16) * 257)
    else:
        cv2.imwrite(str(p), rgb[..., 0])
    before = _files(world.root)
    code, out = _invoke(_predict(world, world.run, p))
    _seen(f"predict_{case}", code, out)
    assert code == 0, out
    assert_unchanged(before, _files(world.root))
    mask = cv2.imread(str(world.pred / f"{p.stem}.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (H, W) and set(np.unique(mask)) <= {0, 255}


# ------------------------------------------------------------------------- wrong option values

OPTION_CASES = {  # id: (argv builder, text the message must contain, xfail reason)
    "train_batch_size_0": (lambda w: ["--batch-size", "0"], "--batch-size", None),
    "train_size_too_small": (lambda w: ["--size", "10x10"], "--size", None),
    "train_size_not_a_size": (lambda w: ["--size", "big"], "--size", None),
    "train_lr_nan": (lambda w: ["--lr", "nan"], "--lr", None),
    "train_lr_inf": (lambda w: ["--lr", "inf"], "--lr", None),
    "train_lr_negative": (lambda w: ["--lr", "-1"], "--lr", None),
    "train_steps_0": (lambda w: ["--steps", "0"], "--steps", None),
    "train_time_budget_0": (lambda w: ["--time-budget", "0s"], "--time-budget", None),
    "train_block_even_kernel": (lambda w: ["--block", "2x2"], "2x2", None),
    "train_kernel_mismatch": (lambda w: ["--block", "5x5", "--kernel", "7"], "--kernel", None),
    "train_val_frac_1_5": (lambda w: ["--val-frac", "1.5"], "--val-frac", None),
    "train_group_pattern_bad_regex": (lambda w: ["--group-pattern", "(car"],
                                      "--group-pattern", None),
    "train_nproc_0": (lambda w: ["--nproc", "0"], "--nproc", None),
    "train_device_tpu": (lambda w: ["--device", "tpu"], "--device", None),
    "train_amp_fp8": (lambda w: ["--amp", "fp8"], "--amp", None),
    "train_out_is_a_file": (lambda w: ["--out", w.image], "photo.jpg", None),
    "train_name_with_slash": (lambda w: ["--name", "a/b"], "--name", None),
    "train_name_exists": (lambda w: ["--name", "earlier"], "earlier", None),
    "train_resume_a_file": (lambda w: ["--resume", w.image], "photo.jpg", None),
    "train_data_is_a_file": (lambda w: ["--data", w.image], "photo.jpg", None),
    "train_data_missing": (lambda w: ["--data", w.root / "nope"], "nope", None),
    "predict_batch_size_0": (lambda w: _predict(w, w.run, None, "--batch-size", "0"),
                             "--batch-size", None),
    "predict_threshold_2": (lambda w: _predict(w, w.run, None, "--threshold", "2"),
                            "--threshold", None),
    "predict_engine_unknown": (lambda w: _predict(w, w.run, None, "--engine", "tflite"),
                               "tflite", None),
    "predict_device_tpu": (lambda w: ["predict", w.run, w.image, "--out", w.pred,
                                      "--device", "tpu"], "tpu", None),
    "predict_source_missing": (lambda w: _predict(w, w.run, w.root / "nope.jpg"), "nope.jpg",
                               None),
    "export_opset_5": (lambda w: ["export", w.run, "--opset", "5"], "--opset", None),
}


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=[pytest.mark.xfail(strict=True, reason=x)] if x else [])
    for c, (_, _, x) in OPTION_CASES.items()])
def test_wrong_option_value(world, case):
    build, needle, _ = OPTION_CASES[case]
    extra = build(world)
    if case.startswith("train_"):
        args = ["train", "--data", world.data, *TINY, "--steps", "1", "--out", world.runs,
                *extra]
    else:
        args = extra
    before, runs = _files(world.root), sorted(world.runs.iterdir())
    code, out = _invoke(args)
    _seen(case, code, out)
    assert code == 2 and "Traceback" not in out, out
    assert needle in out, out
    errors = [x for x in out.splitlines() if x.startswith("error:")]
    assert len(errors) <= 1, out  # ours: one line; click's usage errors: a short panel
    assert_unchanged(before, _files(world.root))
    assert sorted(world.runs.iterdir()) == runs  # no half-made run folder
