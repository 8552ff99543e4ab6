"""Export: ONNX parity for every block family (odd sizes, batch > 1), fp16, metadata,
report.json, the CLI (incl. TensorRT missing and parity failures -> exit 2, files kept)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import make_run
from typer.testing import CliRunner

from lkmseg import metrics
from lkmseg.cli.app import app
from lkmseg.config import RunConfig
from lkmseg.engines.onnxruntime_engine import OnnxRuntimeEngine
from lkmseg.errors import UserError
from lkmseg.export import parity
from lkmseg.export.onnx_export import convert_fp16, export_onnx
from lkmseg.files.onnx_meta import MARKER, config_from_metadata, read_metadata, save_onnx
from lkmseg.models import ModelConfig, build_model

BLOCKS = ["3x3", "5x5", "1x5", "7x7", "1x7", "gcn7"]  # double3, square, separable, gcn


def _calibrated(cfg: RunConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_model(cfg.model)
    m.train()
    with torch.no_grad():
        for _ in range(2):
            m(torch.rand(4, 3, *cfg.size))
    return m.eval()


@pytest.fixture(scope="module", params=BLOCKS)
def exported(request, tmp_path_factory):
    """(torch model, cfg, fp32 path, fp16 path) for one block, exported once per module."""
    cfg = RunConfig(model=ModelConfig(block=request.param, width=2, depth=2), size=(32, 48),
                    threshold=0.4)
    model = _calibrated(cfg)
    d = tmp_path_factory.mktemp(f"onnx_{request.param}")
    fp32 = export_onnx(model, cfg)  # dynamic batch/height/width
    return model, cfg, save_onnx(fp32, d / "m.onnx"), save_onnx(convert_fp16(fp32), d / "m16.onnx")


def _torch(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_fp32_parity_odd_sizes_and_batches(exported):
    model, _, fp32, _ = exported
    eng = OnnxRuntimeEngine(fp32, device="cpu")
    rng = np.random.default_rng(1)
    for shape in [(3, 3, 67, 93), (1, 3, 32, 48), (2, 3, 5, 129), (1, 3, 1, 1)]:
        x = rng.random(shape, dtype=np.float32)
        y, ref = eng(x), _torch(model, x)
        assert y.shape == (shape[0], 1, *shape[2:])
        assert np.abs(y - ref).max() <= 1e-4, shape


def test_fp16_parity_and_io_types(exported):
    model, _, _, fp16 = exported
    m = onnx.load(str(fp16))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    conv_w = [t for t in m.graph.initializer if len(t.dims) == 4]
    assert conv_w and all(t.data_type == onnx.TensorProto.FLOAT16 for t in conv_w)
    eng = OnnxRuntimeEngine(fp16, device="cpu")
    assert eng.precision == "fp16"
    x = np.random.default_rng(2).random((3, 3, 67, 93), dtype=np.float32)
    y, ref = eng(x), _torch(model, x)
    scale = max(1.0, float(np.abs(ref).max()))
    assert np.abs(y - ref).max() <= 2e-2 * scale
    assert metrics.pooled_dice(list(y > 0), list(ref > 0)) >= 0.995


def test_metadata_round_trip(exported):
    _, cfg, fp32, fp16 = exported
    for path, prec in ((fp32, "fp32"), (fp16, "fp16")):
        meta = read_metadata(path)
        assert meta[MARKER] == "1" and meta["precision"] == prec
        assert meta["block"] == cfg.model.block
        assert int(meta["kernel"]) == cfg.model.spec.kernel
        assert json.loads(meta["size"]) == list(cfg.size)
        assert json.loads(meta["normalization"]) == cfg.normalization
        assert float(meta["threshold"]) == pytest.approx(0.4)
        assert meta["torch_version"] == torch.__version__ and meta["lkmseg_version"]
        back = config_from_metadata(meta)
        assert back.model == cfg.model and back.size == cfg.size and back.threshold == 0.4
    m = onnx.load(str(fp32))
    onnx.checker.check_model(m, full_check=True)
    assert not [n for n in m.graph.node if n.op_type == "BatchNormalization"]  # folded, GCN too
    dims = [d.dim_param for d in m.graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    assert not m.graph.initializer[0].external_data  # one self-contained file


def test_static_export_pins_shape(tmp_path):
    cfg = RunConfig(model=ModelConfig(block="1x5", width=2, depth=2), size=(32, 48))
    model = _calibrated(cfg)
    proto = export_onnx(model, cfg, dynamic=False, size=(40, 56), batch=2)
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 40, 56]
    path = save_onnx(proto, tmp_path / "s.onnx")
    meta = read_metadata(path, proto)
    assert meta["dynamic"] == "0" and json.loads(meta["input_shape"]) == [2, 3, 40, 56]
    assert json.loads(meta["size"]) == [40, 56]  # what predict must resize inputs to
    assert json.loads(meta["training_size"]) == [32, 48]
    eng = OnnxRuntimeEngine(path, device="cpu")
    assert eng.config.size == (40, 56) and eng.fixed_hw == (40, 56)
    x = np.random.default_rng(3).random((3, 3, 40, 56), dtype=np.float32)  # batch 3 != 2
    assert np.abs(eng(x) - _torch(model, x)).max() <= 1e-4  # split + padded internally
    with pytest.raises(UserError, match="exported with --static for 40x56"):
        eng(np.zeros((2, 3, 32, 48), np.float32))


def test_opset_validation():
    cfg = RunConfig(model=ModelConfig(block="1x5", width=2, depth=2), size=(32, 48))
    with pytest.raises(UserError, match="opset"):
        export_onnx(build_model(cfg.model).eval(), cfg, opset=13)


def test_verdict_thresholds():
    ok = {"max_abs_logit_diff": 1e-6, "mask_dice_vs_torch": 1.0,
          "odd_shape_check": {"max_abs_logit_diff": 1e-6, "mask_dice_vs_torch": 1.0}}
    assert parity.verdict(ok, "fp32") == []
    bad = {**ok, "max_abs_logit_diff": 2e-3}
    assert "max |Δ logit| 0.002 > 0.001" in parity.verdict(bad, "fp32")[0]
    assert parity.verdict(bad, "fp16") == []  # fp16 is gated on masks only
    assert parity.verdict({**ok, "mask_dice_vs_torch": 0.99}, "fp16")
    assert parity.verdict({**ok, "max_abs_logit_diff": None}, "fp16")  # NaN/inf fails
    assert metrics.dice(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0


# ----------------------------------------------------------------------------- the CLI

runner = CliRunner()


_SHARED: dict = {}


def shared_export(tmp_path_factory) -> tuple[Path, object]:
    """`lkmseg export RUN` on a tiny run, done once per session and shared by the export,
    engine and predict tests (an export costs ~10 s on this CPU)."""
    if "run" not in _SHARED:
        run = make_run(tmp_path_factory.mktemp("shared") / "run", block="1x5", width=4,
                       depth=3, size=(64, 96))
        _SHARED["res"] = runner.invoke(app, ["export", str(run), "--parity-images", "4",
                                                  "--no-int8"])
        _SHARED["run"] = run
    return _SHARED["run"], _SHARED["res"]


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory):
    return shared_export(tmp_path_factory)


def test_cli_export_writes_files_and_report(cli_export):
    run, res = cli_export
    assert res.exit_code == 0, res.output
    ex = run / "export"
    for name in ("model.onnx", "model.fp16.onnx", "report.json"):
        assert (ex / name).is_file()
    rep = json.loads((ex / "report.json").read_text())
    assert rep["passed"] is True and rep["problems"] == []
    assert rep["block"] == "1x5" and rep["kernel"] == 5 and rep["training_size"] == [64, 96]
    assert rep["inputs"]["n_images"] >= 1 and rep["inputs"]["model_size"] == [64, 96]
    assert rep["inputs"]["odd_shape"][0] == 3 and rep["inputs"]["odd_shape"][2] % 2 == 1
    for key in ("onnx_fp32", "onnx_fp16"):
        f = rep["formats"][key]
        assert f["passed"] and f["failures"] == []
        assert f["mask_dice_vs_torch"] >= 0.995 and f["mb"] > 0
        assert f["odd_shape_check"]["output_shape"][2:] == rep["inputs"]["odd_shape"][2:]
    assert rep["formats"]["onnx_fp32"]["max_abs_logit_diff"] <= 1e-3
    assert rep["formats"]["onnx_fp32"]["mask_dice_vs_torch"] >= 0.999
    assert 0.0 <= rep["formats"]["torch"]["dice_vs_gt"] <= 1.0  # samples/synthetic have GT
    assert "model.onnx" in res.output and "report.json" in res.output
    assert read_metadata(ex / "model.onnx")["block"] == "1x5"


def test_cli_trt_missing_exit_2_keeps_onnx(tiny_run, monkeypatch):
    from lkmseg.export import pipeline

    monkeypatch.setattr(pipeline, "tensorrt_status",
                        lambda: (False, ("TensorRT is not installed (pip install "
                                         "'lkmseg[gpu]' on a machine with an NVIDIA GPU)")))
    run = tiny_run(block="3x3", width=2, depth=2, size=(32, 48))
    (run / "export").mkdir()
    (run / "export" / "model.engine").write_bytes(b"an engine from an earlier export")
    res = runner.invoke(app, ["export", str(run), "--trt", "--parity-images", "2",
                                "--no-int8"])
    assert res.exit_code == 2, res.output
    err = res.output.strip().splitlines()[-1]
    assert err.startswith("error: --trt needs TensorRT and a CUDA GPU")
    assert "pip install 'lkmseg[gpu]'" in err and "ONNX files were written" in err
    assert "Traceback" not in res.output
    ex = run / "export"
    assert (ex / "model.onnx").is_file() and (ex / "model.fp16.onnx").is_file()
    assert not (ex / "model.engine").exists()  # the stale engine was removed, none built
    rep = json.loads((ex / "report.json").read_text())
    assert rep["passed"] is False and rep["gate_failures"] == []
    assert rep["formats"]["tensorrt"]["status"] == "unavailable"
    assert rep["formats"]["onnx_fp32"]["passed"] is True
    assert rep["formats"]["onnx_fp16"]["passed"] is True


def test_cli_parity_failure_outranks_trt_missing(tiny_run, monkeypatch):
    """A missed gate exits 3 even when --trt is also unavailable (exit 2 alone)."""
    from lkmseg.export import pipeline

    monkeypatch.setattr(pipeline, "tensorrt_status", lambda: (False, "TensorRT is not installed"))
    strict = {"fp32": dict(parity.THRESHOLDS["fp32"]), "fp16": {"max_abs_logit": None,
                                                                "mask_dice": 1.01}}
    monkeypatch.setattr(parity, "THRESHOLDS", strict)  # fp16 cannot pass: Dice <= 1
    run = tiny_run(block="3x3", width=2, depth=2, size=(32, 48))
    res = runner.invoke(app, ["export", str(run), "--trt", "--parity-images", "2",
                                "--no-int8"])
    assert res.exit_code == 3, res.output
    err = res.output.strip().splitlines()[-1]
    assert err.startswith("error: parity failed for model.fp16.onnx: mask Dice vs torch")
    assert "(+1 more)" in err and "report.json" in err
    rep = json.loads((run / "export" / "report.json").read_text())
    assert rep["formats"]["onnx_fp32"]["passed"] is True
    assert rep["formats"]["onnx_fp16"]["passed"] is False
    assert len(rep["gate_failures"]) == 1 and len(rep["problems"]) == 2


def test_cli_export_bad_inputs(tmp_path):
    res = runner.invoke(app, ["export", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "run folder not found" in res.output
    res = runner.invoke(app, ["export", str(tmp_path), "--size", "12xa"])
    assert res.exit_code == 2 and "--size" in res.output


def test_parity_inputs_prefer_the_validation_split(tmp_path):
    import cv2

    img, msk = tmp_path / "car_01.jpg", tmp_path / "car_01_mask.png"
    cv2.imwrite(str(img), np.full((30, 40, 3), 90, np.uint8))
    cv2.imwrite(str(msk), np.pad(np.full((10, 10), 255, np.uint8), ((10, 10), (15, 15))))
    cfg = RunConfig(size=(32, 48), data={"val_items": [[str(img), str(msk)]]})
    ps = parity.parity_set(cfg, limit=4, samples=tmp_path / "no_samples")
    assert ps.origin == "val_items" and ps.names == ["car_01.jpg"]
    assert ps.masks[0].shape == (30, 40) and ps.masks[0].sum() == 100
    cfg.data["val_items"] = [[str(tmp_path / "gone.jpg"), None]]  # moved data: fall back
    ps = parity.parity_set(cfg, limit=4, samples=tmp_path / "no_samples")
    assert ps.origin == "synthetic" and "val_items unreadable" in ps.notes[0]
    assert len(ps.images) == 4 and all(m.any() for m in ps.masks)
