"""Engines behind one interface; the factory and auto; TensorRT pieces testable without it
(profile shapes, sidecar compatibility). The builder and runtime against strict fakes of
TensorRT 10.13/11.1: tests/test_gpu_fakes.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from lkmseg.data.transforms import preprocess
from lkmseg.engines import ENGINE_NAMES, load_engine, resolve_model
from lkmseg.engines import tensorrt_runtime as trt_rt
from lkmseg.engines.base import check_input
from lkmseg.engines.info import engine_matrix, environment
from lkmseg.engines.tensorrt_runtime import ProfileShapes
from lkmseg.errors import UserError
from lkmseg.export.tensorrt_build import profile_shapes
from lkmseg.files.sidecar import check_compatible


@pytest.fixture(scope="module")
def batch(run) -> np.ndarray:
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (50 + 7 * i, 70 + 3 * i, 3), dtype=np.uint8) for i in range(3)]
    return preprocess(imgs, (64, 96)).numpy()


def test_all_engines_agree_through_one_interface(run, batch):
    ref = load_engine("torch", run, "fp32", "cpu", channels_last=False)
    out = {"torch": ref(batch)}
    for name, prec, kw in [("torch", "fp32", {}), ("torch", "bf16", {}),
                           ("onnxruntime", "fp32", {}), ("onnxruntime", "fp16", {}),
                           ("ort", "fp32", {"spinning": False, "threads": 1})]:
        with load_engine(name, run, prec, "cpu", **kw) as eng:
            assert eng.config.size == (64, 96) and eng.precision == prec
            y = eng(batch)
            assert y.shape == (3, 1, 64, 96) and y.dtype == np.float32
            tol = {"fp32": 1e-4, "fp16": 5e-2, "bf16": 0.3}[prec]
            assert np.abs(y - out["torch"]).max() <= tol * max(1, np.abs(out["torch"]).max())
            assert eng.images == 3 and eng.calls == 1 and eng.images_per_s > 0
            out[f"{name}-{prec}"] = y
    import torch  # torch tensors are accepted as input too

    with load_engine("onnxruntime", run, "fp32", "cpu") as eng:
        assert np.allclose(eng(torch.from_numpy(batch)), out["torch"], atol=1e-4)


def test_auto_takes_the_fastest_measured_on_cpu(run, batch, monkeypatch, tmp_path):
    from lkmseg.engines import auto

    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))
    fast = {"onnxruntime fp32": 1.0}  # every other candidate: 5 ms
    monkeypatch.setattr(auto, "measure", lambda engines, x, **_: {
        k: fast.get(f"{e.name} {e.precision}", 5.0) for k, e in engines.items()})
    eng = load_engine("auto", run, device="auto")
    assert eng.name == "onnxruntime" and eng.precision == "fp32" and eng.device == "cpu"
    assert "onnxruntime fp32 1.00 ms" in eng.auto_choice
    eng = load_engine("auto", run / "export" / "model.fp16.onnx")  # the one file given
    assert eng.name == "onnxruntime" and eng.precision == "fp16"
    eng = load_engine("auto", run / "model.safetensors")
    assert eng.name == "torch"


def test_auto_falls_back_to_torch_and_says_why(tiny_run):
    eng = load_engine("auto", tiny_run(width=2, depth=2))  # never exported
    assert eng.name == "torch" and eng.device == "cpu"
    assert any("lkmseg export RUN" in s for s in eng.skipped)


def test_resolve_model_forms(run):
    src = resolve_model(run)
    assert src.kind == "run" and set(src.onnx) == {"fp32", "fp16"} and src.weights  # --no-int8
    assert src.engine is None
    exp = resolve_model(run / "export")
    assert exp.run_dir == run
    one = resolve_model(run / "export" / "model.onnx")
    assert one.kind == "onnx" and one.config.model.block == "1x5" and one.weights is None
    with pytest.raises(UserError, match="no PyTorch weights"):
        load_engine("torch", one)


def test_engine_errors_are_user_errors(run, tmp_path):
    with pytest.raises(UserError, match="unknown engine 'tflite'"):
        load_engine("tflite", run)
    with pytest.raises(UserError, match="--engine tensorrt: .*TensorRT"):
        load_engine("tensorrt", run)
    with pytest.raises(UserError, match="fp16 autocast needs a CUDA GPU"):
        load_engine("torch", run, "fp16", "cpu")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage\xff\xfe" * 10)
    with pytest.raises(UserError, match="bad.onnx"):
        load_engine("onnxruntime", bad)
    foreign = tmp_path / "foreign.onnx"
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    onnx.save(helper.make_model(g), str(foreign))
    with pytest.raises(UserError, match="not an lkmseg export"):
        load_engine("auto", foreign)
    with pytest.raises(UserError, match="unknown model file type"):
        resolve_model(Path(__file__))


def test_input_validation():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        check_input(np.zeros((3, 64, 96), np.float32))
    with pytest.raises(ValueError, match="float32"):
        check_input(np.zeros((1, 3, 8, 8), np.float64))


def test_info_matrix_covers_every_engine():
    rows = engine_matrix()
    assert {r["engine"] for r in rows} == set(ENGINE_NAMES)
    by = {(r["engine"], r["precision"], r["device"]): r for r in rows}
    assert by[("onnxruntime", "fp32", "cpu")]["available"]
    assert by[("torch", "fp32", "cpu")]["available"]
    trt = by[("tensorrt", "fp16", "cuda")]
    if not trt["available"]:
        assert "lkmseg[gpu]" in trt["detail"] or "CUDA GPU" in trt["detail"]
    env = environment()
    assert env["onnxruntime_providers"] and env["cpu"]["physical_cores"] >= 1


# --------------------------------------------------------------------- TensorRT, no GPU


def test_profile_shapes():
    p = profile_shapes((256, 384), batch=4)
    assert p == ProfileShapes((1, 3, 128, 192), (4, 3, 256, 384), (8, 3, 512, 768))
    assert p.contains((2, 3, 300, 300)) and not p.contains((9, 3, 256, 384))
    assert ProfileShapes.from_dict(p.to_dict()) == p
    s = profile_shapes((64, 96), batch=2, dynamic=False)
    assert s.min == s.opt == s.max == (2, 3, 64, 96)
    assert profile_shapes((64, 96), batch=1, max_batch=32).max[0] == 32
    with pytest.raises(UserError, match="--max-batch 2 is smaller than --batch 4"):
        profile_shapes((64, 96), batch=4, max_batch=2)
    with pytest.raises(UserError, match="needs --dynamic"):
        profile_shapes((64, 96), batch=1, dynamic=False, max_batch=8)


def test_sidecar_compatibility(tmp_path):
    side = {"tensorrt_version": "10.9.0", "gpu_name": "NVIDIA H100 80GB HBM3",
            "compute_capability": "9.0"}
    eng = tmp_path / "model.engine"
    assert check_compatible(side, eng, "10.9.0", ("NVIDIA H100 80GB HBM3", "9.0")) == []
    notes = check_compatible(side, eng, "10.9.0", ("NVIDIA H100 PCIe", "9.0"))
    assert notes and "same architecture" in notes[0]
    with pytest.raises(UserError, match=r"built with TensorRT 10\.9\.0, this is TensorRT 11\.0"):
        check_compatible(side, eng, "11.0.0", ("NVIDIA H100 80GB HBM3", "9.0"))
    with pytest.raises(UserError, match=r"compute capability 9\.0.*A10G \(8\.6\).*rebuild"):
        check_compatible(side, eng, "10.9.0", ("NVIDIA A10G", "8.6"))


def test_tensorrt_missing_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    ok, why = trt_rt.tensorrt_status()
    assert not ok and "TensorRT is not installed" in why and "lkmseg[gpu]" in why
    with pytest.raises(UserError, match="needs TensorRT and a CUDA GPU: TensorRT is not"):
        trt_rt.require_tensorrt()
