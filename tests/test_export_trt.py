"""TensorRT on a real GPU: build fp32/fp16 engines, parity, load, auto, predict, refuse a
foreign engine. Runs only where `tensorrt` imports and PyTorch sees a CUDA GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_run
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.engines.tensorrt_runtime import tensorrt_status

ok, why = tensorrt_status()
pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu,
              pytest.mark.skipif(not ok, reason=f"TensorRT tests need TensorRT + a GPU: {why}")]
runner = CliRunner()


@pytest.fixture(scope="module")
def trt_run(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("trt") / "run", block="1x5", width=4, depth=3,
                   size=(64, 96))
    return run


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_engine_parity_and_sidecar(trt_run, precision):
    res = runner.invoke(app, ["export", str(trt_run), "--trt", "--trt-precision", precision,
                              "--batch", "2", "--max-batch", "4", "--parity-images", "4"])
    assert res.exit_code == 0, res.output
    ex = trt_run / "export"
    rep = json.loads((ex / "report.json").read_text())
    t = rep["formats"]["tensorrt"]
    assert t["passed"] and t["precision"] == precision
    side = json.loads((ex / "model.engine.json").read_text())
    import tensorrt as trt
    import torch

    assert side["tensorrt_version"] == trt.__version__
    assert side["gpu_name"] == torch.cuda.get_device_name()
    assert side["profile"]["opt"] == [2, 3, 64, 96] and side["profile"]["max"][0] == 4


def test_engine_runs_and_auto_picks_it(trt_run):  # uses the engine built just above
    from lkmseg.engines import load_engine

    eng = load_engine("auto", trt_run)
    assert eng.name == "tensorrt"
    x = np.random.default_rng(0).random((6, 3, 64, 96), dtype=np.float32)  # > max batch 4
    ref = load_engine("torch", trt_run, "fp32", "cpu")(x)
    y = eng(x)
    assert y.shape == ref.shape
    assert ((y > 0) == (ref > 0)).mean() > 0.99


def test_foreign_engine_is_refused(trt_run, tmp_path):
    ex = trt_run / "export"
    side = json.loads((ex / "model.engine.json").read_text())
    side["tensorrt_version"] = "0.0.1"
    (ex / "model.engine.json").write_text(json.dumps(side))
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((40, 60, 3), np.uint8))
    res = runner.invoke(app, ["predict", str(ex / "model.engine"), str(tmp_path / "a.png"),
                              "--out", str(tmp_path / "o"), "--engine", "tensorrt"])
    assert res.exit_code == 2
    assert "built with TensorRT 0.0.1" in res.output and "rebuild" in res.output
