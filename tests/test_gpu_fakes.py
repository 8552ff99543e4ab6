"""The TensorRT builder/runtime and the ONNX Runtime GPU providers against strict fakes of
TensorRT 10.13 / 11.1 and of an onnxruntime-gpu build (tests/fakes): what real TensorRT or
onnxruntime-gpu would reject, these tests reject too. No GPU or TensorRT needed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes.models import reference, tiny_onnx
from fakes.onnxruntime_fake import CPU, CUDA, TRT, make_onnxruntime
from fakes.tensorrt_fake import make_tensorrt

from lkmseg.config import RunConfig
from lkmseg.engines import load_engine
from lkmseg.engines import onnxruntime_engine as ort_eng
from lkmseg.engines import tensorrt_engine as trt_eng
from lkmseg.engines import tensorrt_runtime as trt_rt
from lkmseg.engines.tensorrt_runtime import ProfileShapes
from lkmseg.errors import GateFailed, UserError
from lkmseg.export import tensorrt_build as tb
from lkmseg.export.tensorrt_build import profile_shapes

GPU = ("NVIDIA L4", "8.9")
VERSIONS = ["10.13.3.9", "11.1.0.106"]


# --------------------------------------------------------------------------- the fake itself


@pytest.mark.parametrize("version", VERSIONS)
def test_fake_has_the_real_enums_and_types(version, tmp_path):
    trt = make_tensorrt(version)
    flags = {f.name: int(f) for f in trt.NetworkDefinitionCreationFlag}
    if version.startswith("10."):  # include/NvInfer.h, release/10.13
        assert flags == {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1,
                         "PREFER_JIT_PYTHON_PLUGINS": 2, "PREFER_AOT_PYTHON_PLUGINS": 3}
        assert int(trt.BuilderFlag.FP16) == 0 and int(trt.BuilderFlag.TF32) == 6
    else:  # release/11.1: STRONGLY_TYPED=0 is deprecated and ignored
        assert flags == {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1,
                         "PREFER_AOT_PYTHON_PLUGINS": 2}
        assert not hasattr(trt.BuilderFlag, "FP16") and int(trt.BuilderFlag.TF32) == 6
    with pytest.raises(AttributeError):
        trt.build_engine  # noqa: B018 — a TensorRT 7 name: gone, as in the real module
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    net = builder.create_network(0)
    assert trt.OnnxParser(net, logger).parse_from_file(str(tiny_onnx(tmp_path / "m.onnx")))
    cfg = builder.create_builder_config()
    prof = builder.create_optimization_profile()
    prof.set_shape("image", (1, 3, 8, 8), (1, 3, 16, 16), (2, 3, 32, 32))
    cfg.add_optimization_profile(prof)
    plan = builder.build_serialized_network(net, cfg)
    with pytest.raises(TypeError):
        len(plan)  # IHostMemory: buffer protocol and nbytes, no __len__
    assert plan.nbytes == len(bytes(memoryview(plan))) > 0
    assert trt.Runtime(logger).deserialize_cuda_engine(plan) is not None
    assert trt.Runtime(logger).deserialize_cuda_engine(b"not a plan") is None
    with pytest.raises(TypeError):
        cfg.set_flag("TF32")  # pybind enums only


# --------------------------------------------------------------------------- builder


def _onnx_pair(tmp_path: Path) -> tuple[Path, Path]:
    return tiny_onnx(tmp_path / "model.onnx"), tiny_onnx(tmp_path / "model.fp16.onnx", fp16=True)


def _build(trt, tmp_path, precision="fp32", cache=None, **kw) -> dict:
    fp32, fp16 = _onnx_pair(tmp_path)
    return tb.build_engine(fp32, tmp_path / "model.engine", profile_shapes((64, 96), batch=2),
                           precision=precision, onnx_fp16=fp16, timing_cache=cache,
                           config=RunConfig(), trt=trt, gpu=GPU, workspace_gib=2, **kw)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_builder_against_strict_fake(tmp_path, version, precision, monkeypatch):
    trt = make_tensorrt(version)
    seen = {}
    real_build = trt.Builder.build_serialized_network

    def spy(self, network, config):
        seen.update(network=network, config=config)
        return real_build(self, network, config)

    monkeypatch.setattr(trt.Builder, "build_serialized_network", spy)
    side = _build(trt, tmp_path, precision, cache=tmp_path / "c" / "t.timing")
    net, cfg = seen["network"], seen["config"]
    v11 = version.startswith("11.")
    # no creation flag at all: TensorRT 11 is always strongly typed (NvInfer.h release/11.1,
    # kSTRONGLY_TYPED "ignored"); TensorRT 10 builds weakly typed, fp16 via BuilderFlag.FP16
    assert net.flags == 0 and net.strongly_typed == v11 == side["strongly_typed"]
    fp16_flag = getattr(trt.BuilderFlag, "FP16", None)
    assert (fp16_flag in cfg.flags) == (precision == "fp16" and not v11)
    assert (trt.BuilderFlag.TF32 in cfg.flags) == (precision != "fp32")  # true fp32
    assert cfg.pools == {trt.MemoryPoolType.WORKSPACE: 2 << 30}
    assert cfg.profiles[0].shapes["image"] == [[1, 3, 32, 48], [2, 3, 64, 96], [8, 3, 128, 192]]
    assert side["source_onnx"] == ("model.fp16.onnx" if precision == "fp16" and v11
                                   else "model.onnx")
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(
        (tmp_path / "model.engine").read_bytes())
    assert engine is not None and side["engine_bytes"] == (tmp_path / "model.engine").stat().st_size
    assert json.loads((tmp_path / "model.engine.json").read_text()) == json.loads(
        json.dumps(side))
    assert side["timing_cache"] == "used"


def test_timing_cache_from_another_gpu_is_replaced(tmp_path):
    cache = tmp_path / "t.timing"
    _build(make_tensorrt(gpu_key="NVIDIA A10G/8.6"), tmp_path, cache=cache)
    first = cache.read_bytes()
    trt = make_tensorrt(gpu_key="NVIDIA RTX A6000/8.6")  # same SM, other device properties
    side = _build(trt, tmp_path, cache=cache)
    assert side["timing_cache"].startswith("rejected")
    assert any("other properties" in msg for _, msg in trt._log)
    assert cache.read_bytes() != first and b"RTX A6000" in cache.read_bytes()


def test_timing_cache_path_names_the_gpu(monkeypatch, tmp_path):
    from lkmseg.export import pipeline

    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt("10.13.3.9"))
    paths = set()
    for gpu in [("NVIDIA A10G", "8.6"), ("NVIDIA RTX A6000", "8.6"), ("NVIDIA A10G", "8.6")]:
        monkeypatch.setattr(pipeline, "current_gpu", lambda gpu=gpu: gpu)
        paths.add(pipeline.timing_cache_path().name)
    assert paths == {"tensorrt-10.13.3.9-nvidia-a10g-sm86.timing",
                     "tensorrt-10.13.3.9-nvidia-rtx-a6000-sm86.timing"}


def test_tensorrt11_fp16_needs_fp16_graph(tmp_path):
    fp32 = tiny_onnx(tmp_path / "model.onnx")
    with pytest.raises(UserError, match="builds fp16 only from an fp16 graph"):
        tb.build_engine(fp32, tmp_path / "model.engine", profile_shapes((64, 96)),
                        precision="fp16", onnx_fp16=None, trt=make_tensorrt("11.1.0.106"),
                        gpu=GPU)


def test_parse_and_build_failures_are_gate_failures(tmp_path, monkeypatch):
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07 not onnx \xff")
    with pytest.raises(GateFailed, match="ONNX parser failed"):
        tb.build_engine(tmp_path / "model.onnx", tmp_path / "model.engine",
                        profile_shapes((64, 96)), trt=make_tensorrt(), gpu=GPU)
    trt = make_tensorrt()
    monkeypatch.setattr(trt.Builder, "build_serialized_network", lambda *a: None)
    with pytest.raises(GateFailed, match="TensorRT engine build failed"):
        tb.build_engine(tiny_onnx(tmp_path / "model.onnx"), tmp_path / "model.engine",
                        profile_shapes((64, 96)), trt=trt, gpu=GPU)
    assert not (tmp_path / "model.engine").exists()


# --------------------------------------------------------------------------- runtime engine


@pytest.fixture
def fake_gpu(monkeypatch):
    """Install a fake tensorrt (10.13 unless asked) and a visible 'GPU' for the engine."""

    def install(version: str = "10.13.3.9", **kw):
        trt = make_tensorrt(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(trt_rt, "current_gpu", lambda: GPU)
        monkeypatch.setattr(trt_eng, "current_gpu", lambda: GPU)
        return trt

    return install


@pytest.mark.parametrize("version", VERSIONS)
def test_engine_binds_by_address_and_checks_results(tmp_path, fake_gpu, version):
    trt = fake_gpu(version)
    _build(trt, tmp_path)
    eng = trt_eng.TensorRTEngine(tmp_path / "model.engine")
    assert eng.profile == ProfileShapes((1, 3, 32, 48), (2, 3, 64, 96), (8, 3, 128, 192))
    x = torch.rand(3, 3, 40, 56)
    y = eng._execute(x, stream_handle=0x1234)
    assert y.dtype == torch.float32 and y.shape == (3, 1, 40, 56)
    assert np.allclose(y.numpy(), reference(x.numpy()), atol=1e-5)
    assert not [msg for sev, msg in trt._log if "default stream" in msg]
    with pytest.raises(UserError, match="outside the engine's optimization profile"):
        eng._execute(torch.rand(1, 3, 300, 56), stream_handle=0x1234)


def test_engine_reads_output_dtype(tmp_path, fake_gpu):
    """An engine whose output is fp16: the buffer must be fp16, the result float32."""
    trt = fake_gpu()
    tiny_onnx(tmp_path / "model.onnx", fp16_output=True)
    tb.build_engine(tmp_path / "model.onnx", tmp_path / "model.engine",
                    profile_shapes((16, 16), batch=1), config=RunConfig(), trt=trt, gpu=GPU)
    eng = trt_eng.TensorRTEngine(tmp_path / "model.engine")
    x = torch.rand(2, 3, 16, 16)
    y = eng._execute(x, stream_handle=1)
    assert y.dtype == torch.float32
    assert np.allclose(y.numpy(), reference(x.numpy()), atol=2e-3)


def test_engine_execute_failure_is_an_error(tmp_path, fake_gpu, monkeypatch):
    trt = fake_gpu()
    _build(trt, tmp_path)
    eng = trt_eng.TensorRTEngine(tmp_path / "model.engine")
    monkeypatch.setattr(trt.IExecutionContext, "execute_async_v3", lambda self, h: False)
    with pytest.raises(RuntimeError, match="execute_async_v3 failed"):
        eng._execute(torch.rand(1, 3, 64, 96), stream_handle=1)


@pytest.mark.parametrize("static_profile", ["shape", "invalid"])
def test_static_engine_profile(tmp_path, static_profile):
    """A static engine: get_tensor_profile_shape may give its shape or Dims{-1}; either way
    the profile is the fixed 4-D input shape."""
    trt = make_tensorrt(static_profile=static_profile)
    logger = trt.Logger()
    builder = trt.Builder(logger)
    net = builder.create_network(0)
    trt.OnnxParser(net, logger).parse_from_file(str(tiny_onnx(tmp_path / "s.onnx",
                                                              static=(2, 16, 24))))
    plan = builder.build_serialized_network(net, builder.create_builder_config())
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    p = trt_eng.read_profile(engine, "image", tmp_path / "s.engine")
    assert p == ProfileShapes((2, 3, 16, 24), (2, 3, 16, 24), (2, 3, 16, 24))
    with pytest.raises(UserError, match="no 4-D input"):
        trt_eng.read_profile(engine, "no-such-tensor", tmp_path / "s.engine")


def test_foreign_or_corrupt_engine(tmp_path, fake_gpu):
    trt = fake_gpu()
    _build(trt, tmp_path)
    (tmp_path / "model.engine").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot deserialize"):
        trt_eng.TensorRTEngine(tmp_path / "model.engine")
    fake_gpu("11.1.0.106")
    with pytest.raises(UserError, match=r"built with TensorRT 10\.13\.3\.9, this is TensorRT 11"):
        trt_eng.TensorRTEngine(tmp_path / "model.engine")


# --------------------------------------------------------------------------- onnxruntime-gpu


@pytest.fixture
def fake_ort(monkeypatch):
    def install(**kw):
        ort = make_onnxruntime(**kw)
        monkeypatch.setitem(sys.modules, "onnxruntime", ort)
        ort_eng.provider_works.cache_clear()
        return ort

    yield install
    ort_eng.provider_works.cache_clear()


def test_cuda_probe_survives_a_newer_onnx(fake_ort):
    """Defect 2: onnx newer than onnxruntime must not read as 'CUDA libraries missing'."""
    import onnx

    assert onnx.IR_VERSION > 10  # the installed onnx writes newer IR than this fake accepts
    fake_ort(max_ir=10)
    ok, why = ort_eng.provider_works(CUDA)
    assert ok, why
    ort_eng.provider_works.cache_clear()
    fake_ort(loadable=(CPU,))  # compiled in, libraries missing
    ok, why = ort_eng.provider_works(CUDA)
    assert not ok and "did not load" in why


def test_tensorrt_provider_names_a_tensorrt_of_the_wrong_major(fake_ort, monkeypatch):
    import importlib.metadata as md

    real = md.version
    monkeypatch.setattr(md, "version", lambda d: "11.4.0.106" if d == "tensorrt-cu13" else
                        real(d))
    fake_ort(loadable=(CUDA, CPU))  # TensorRT 11 installed: libnvinfer.so.10 is missing
    ok, why = ort_eng.provider_works(TRT)
    assert not ok and "tensorrt-cu13 11.4.0.106 is installed" in why and "TensorRT 10" in why


@pytest.mark.parametrize("max_ir", [10, 99])  # onnx newer than onnxruntime, or not
def test_onnxruntime_tensorrt_device_loads(run, fake_ort, max_ir):
    """Defect 3: --device tensorrt is advertised and must load the TensorRT provider."""
    ort = fake_ort(max_ir=max_ir)
    x = np.random.default_rng(0).random((2, 3, 64, 96), dtype=np.float32)
    ref = load_engine("onnxruntime", run, "fp32", "cpu")(x)
    with load_engine("onnxruntime", run, "fp32", "tensorrt") as eng:
        assert eng.provider == TRT and eng.device == "cuda"
        assert np.allclose(eng(x), ref, atol=1e-5)
    names = [name for name, _ in ort._sessions[-1]]
    assert names == [TRT, CUDA, CPU]
    opts = dict(ort._sessions[-1])[TRT]
    assert opts["trt_engine_cache_enable"] and not opts["trt_fp16_enable"]


def test_model_newer_than_onnxruntime_is_one_clear_line(run, fake_ort):
    import onnx

    assert onnx.load(str(run / "export" / "model.onnx")).ir_version > 7
    fake_ort(max_ir=7)  # the probe (IR 7) loads; the exported model does not
    with pytest.raises(UserError, match="cannot load this model .*Unsupported model IR version"):
        load_engine("onnxruntime", run, "fp32", "cuda")


def test_ort_tensorrt_cache_follows_the_weights(run, fake_ort, tmp_path):
    """Defect 4: ONNX Runtime names cached engines by graph structure and versions, not
    weights; the cache folder is keyed by the model file's content."""
    import shutil

    ort = fake_ort()
    copy = tmp_path / "export"
    shutil.copytree(run / "export", copy)
    with load_engine("onnxruntime", copy / "model.onnx", "fp32", "tensorrt"):
        first = dict(ort._sessions[-1])[TRT]["trt_engine_cache_path"]
    assert Path(first).parent == copy / "ort_trt_cache"
    import onnx

    model = onnx.load(str(copy / "model.onnx"))  # "retrained": same graph, other weights
    w = next(i for i in model.graph.initializer if i.dims and np.prod(i.dims) > 8)
    arr = onnx.numpy_helper.to_array(w) * 0.5
    w.CopyFrom(onnx.numpy_helper.from_array(arr, w.name))
    onnx.save(model, str(copy / "model.onnx"))
    with load_engine("onnxruntime", copy / "model.onnx", "fp32", "tensorrt"):
        second = dict(ort._sessions[-1])[TRT]["trt_engine_cache_path"]
    assert second != first and Path(second).parent == copy / "ort_trt_cache"


def test_unknown_provider_option_is_caught_by_the_fake(fake_ort):
    ort = fake_ort()
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    with pytest.raises(Fail, match='Unknown provider option: "trt_fp16"'):
        ort.InferenceSession(b"", providers=[(TRT, {"trt_fp16": True})])
