"""Predict sources beyond files and folders: globs, http(s) URLs (a local http.server), a camera
index (OpenCV mocked), and --json lines; bad sources exit 2 with one line."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import rgb_noise
from typer.testing import CliRunner

import lkmseg
from lkmseg.cli.app import app
from lkmseg.data.imageio import read_mask
from lkmseg.data.rle import rle_decode
from lkmseg.data.video import VideoReader

runner = CliRunner()


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    from conftest import make_run

    return make_run(tmp_path_factory.mktemp("m") / "run")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("shots")
    (d / "a").mkdir()
    (d / "b").mkdir()
    cv2.imwrite(str(d / "a" / "one.jpg"), rgb_noise(40, 56, 1))
    cv2.imwrite(str(d / "b" / "two.png"), rgb_noise(31, 45, 2))
    cv2.imwrite(str(d / "b" / "skip.bmp"), rgb_noise(20, 20, 3))
    (d / "b" / "notes.txt").write_text("x")
    return d


@pytest.fixture(scope="module")
def server(shots):
    handler = functools.partial(_Quiet, directory=str(shots))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_glob_with_json_and_rle(model_run, shots, tmp_path):
    out, js = tmp_path / "out", tmp_path / "p.jsonl"
    res = runner.invoke(app, ["predict", str(model_run), str(shots / "**" / "*.[jp][pn]g"),
                              "-o", str(out), "--engine", "torch", "--json", str(js), "--rle",
                              str(tmp_path / "sub.csv"), "--no-progress"])
    assert res.exit_code == 0, res.output
    lines = _lines(js)
    assert [Path(x["source"]).name for x in lines] == ["one.jpg", "two.png"]
    for x, (h, w) in zip(lines, [(40, 56), (31, 45)]):
        assert x["size"] == [h, w] and x["frame"] == 0
        mask = read_mask(x["mask"])
        assert mask.shape == (h, w) and Path(x["mask"]).parent == out
        assert np.array_equal(rle_decode(x["rle"], (h, w)), mask)
        assert x["coverage"] == pytest.approx(mask.mean(), abs=1e-6)


def test_json_to_stdout(model_run, shots, tmp_path):
    res = runner.invoke(app, ["predict", str(model_run), str(shots / "a" / "one.jpg"), "-o",
                              str(tmp_path / "o"), "--engine", "torch", "--json", "-",
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    (line,) = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert line["size"] == [40, 56] and "rle" not in line


def test_url_image_cli_and_api(model_run, server, shots, tmp_path):
    out, js = tmp_path / "out", tmp_path / "u.jsonl"
    url = f"{server}/b/two.png"
    res = runner.invoke(app, ["predict", str(model_run), url, "-o", str(out), "--engine",
                              "torch", "--json", str(js), "--no-progress"])
    assert res.exit_code == 0, res.output
    (line,) = _lines(js)
    assert line["source"] == url and line["size"] == [31, 45]
    assert Path(line["mask"]) == out / "two.png"
    model = lkmseg.load(model_run, engine="torch")
    (r,) = model.predict(url)
    (local,) = model.predict(shots / "b" / "two.png")
    assert r.source == url and np.array_equal(r.mask, local.mask)
    assert np.array_equal(read_mask(out / "two.png"), local.mask)


@pytest.mark.parametrize("path, why", [("/nothing.png", "HTTP 404"),
                                       ("/b/notes.txt", "not decodable|cannot|unsupported")])
def test_bad_urls_exit_2(model_run, server, tmp_path, path, why):
    res = runner.invoke(app, ["predict", str(model_run), server + path, "-o",
                              str(tmp_path / "o"), "--engine", "torch", "--no-progress"])
    assert res.exit_code == 2, res.output
    (err,) = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert server + path in err


class _FakeCamera:
    """cv2.VideoCapture stand-in: ``frames`` BGR frames from index 0, then nothing."""

    opened: list = []

    def __init__(self, target, frames=5):
        _FakeCamera.opened.append(target)
        self.ok = target == 0 or str(target).startswith(("http", "rtsp"))
        self.frames = [np.full((24, 32, 3), 40 * i, np.uint8) for i in range(frames)]

    def isOpened(self):
        return self.ok

    def read(self):
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        pass


def test_camera_index(model_run, tmp_path, monkeypatch):
    _FakeCamera.opened = []
    monkeypatch.setattr(cv2, "VideoCapture", _FakeCamera)
    model = lkmseg.load(model_run, engine="torch")
    got = list(model.predict(0, stream=True, max_frames=3))
    assert [(r.source, r.frame, r.size) for r in got] == [("camera:0", i, (24, 32))
                                                          for i in range(3)]
    out, js = tmp_path / "out", tmp_path / "c.jsonl"
    res = runner.invoke(app, ["predict", str(model_run), "0", "-o", str(out), "--engine",
                              "torch", "--json", str(js), "--no-progress"])
    assert res.exit_code == 0, res.output
    lines = _lines(js)
    assert [x["frame"] for x in lines] == [0, 1, 2, 3, 4]
    assert {x["source"] for x in lines} == {"camera:0"}
    assert {x["mask"] for x in lines} == {str(out / "camera0_mask.mp4")}
    monkeypatch.undo()
    with VideoReader(out / "camera0_mask.mp4") as vr:
        assert sum(1 for _ in vr) == 5
    monkeypatch.setattr(cv2, "VideoCapture", _FakeCamera)
    res = runner.invoke(app, ["predict", str(model_run), "3", "-o", str(out), "--engine",
                              "torch", "--no-progress"])
    assert res.exit_code == 2 and "camera:3: OpenCV cannot open it" in res.output


def test_video_url_and_rtsp_stream_go_to_opencv(model_run, server, shots, monkeypatch):
    (shots / "a" / "clip.mp4").write_bytes(b"\0" * 64)  # served as video/mp4
    _FakeCamera.opened = []
    monkeypatch.setattr(cv2, "VideoCapture", _FakeCamera)
    model = lkmseg.load(model_run, engine="torch")
    url = f"{server}/a/clip.mp4"
    got = model.predict(url)
    assert [(r.source, r.frame) for r in got] == [(url, i) for i in range(5)]
    got = model.predict("rtsp://127.0.0.1:1/cam", max_frames=2)
    assert [(r.source, r.frame) for r in got] == [("rtsp://127.0.0.1:1/cam", i) for i in (0, 1)]
    assert _FakeCamera.opened == [url, "rtsp://127.0.0.1:1/cam"]


def test_glob_without_match_exit_2(model_run, shots, tmp_path):
    res = runner.invoke(app, ["predict", str(model_run), str(shots / "*.tif"), "-o",
                              str(tmp_path / "o"), "--engine", "torch", "--no-progress"])
    assert res.exit_code == 2 and "no image matches" in res.output


def test_glob_out_into_an_input_folder_exit_2(model_run, shots):
    res = runner.invoke(app, ["predict", str(model_run), str(shots / "**" / "*.png"), "-o",
                              str(shots / "b"), "--engine", "torch", "--no-progress"])
    assert res.exit_code == 2 and "is the input folder" in res.output


def test_video_file_frames_stream(model_run):
    from conftest import SAMPLES

    with VideoReader(SAMPLES / "video.mp4") as vr:
        frames = list(vr)
    model = lkmseg.load(model_run, engine="torch")
    got = model.predict(SAMPLES / "video.mp4", stream=True, batch_size=3)
    n = 0
    for n, r in enumerate(got, 1):
        assert r.frame == n - 1 and r.source == str(SAMPLES / "video.mp4")
        assert r.size == frames[0].shape[:2]
    assert n == len(frames)
    (again,) = model.predict(frames[len(frames) // 2])
    assert np.array_equal(again.mask, list(model.predict(SAMPLES / "video.mp4"))[
        len(frames) // 2].mask)
