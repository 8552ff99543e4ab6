"""ONNX Runtime: CPU, CUDA or TensorRT execution providers, session options set for speed.

CPU: all graph optimizations (including the NCHWc layout transform that makes MLAS convolutions
fast), one intra-op thread per physical core, sequential execution, no thread spinning.
GPU: inputs and outputs go through IO binding, so a CUDA torch tensor is consumed in place.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from lkmseg.engines.base import Engine, run_fixed_batch, to_numpy
from lkmseg.engines.source import ModelSource
from lkmseg.errors import UserError
from lkmseg.files.layout import ORT_TRT_CACHE
from lkmseg.hw import physical_cores

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
PROVIDER_ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TRT, "trt": TRT}
GPU_HINT = ("swap onnxruntime for onnxruntime-gpu (`pip uninstall -y onnxruntime && pip install "
            "'onnxruntime-gpu[cuda,cudnn]~=1.31.0'`, never both; docs/gpu.md)")


def model_load_errors() -> tuple[type[Exception], ...]:
    """What InferenceSession raises for a model it cannot load (invalid graph, unknown op or
    IR version, damaged protobuf): the file's fault. Anything else keeps its traceback."""
    from onnxruntime.capi import onnxruntime_pybind11_state as st

    return (st.Fail, st.InvalidGraph, st.InvalidArgument, st.InvalidProtobuf,
            st.NotImplemented, st.NoSuchFile)


def session_options(threads: int | None = None, spinning: bool = False) -> Any:
    """SessionOptions tuned for speed.

    Thread spinning is off by default: measured here it saves nothing measurable per call,
    while a spinning pool keeps burning every core between calls, starving whatever else runs
    (decode/write threads in predict, a PyTorch model timed alongside: 10x slower). Turn it
    on for a dedicated latency server.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads or physical_cores()
    so.inter_op_num_threads = 1
    so.enable_mem_pattern = True
    so.enable_cpu_mem_arena = True
    so.log_severity_level = 3  # errors only
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return so


@functools.cache
def provider_works(provider: str) -> tuple[bool, str]:
    """Whether ``provider`` is compiled in *and* loads (its CUDA/TensorRT libraries exist)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False, "onnxruntime is not installed: pip install onnxruntime"
    if provider not in ort.get_available_providers():
        if provider == CPU:
            return False, "this onnxruntime build has no CPU provider"
        return False, f"this onnxruntime build has no {provider}: {GPU_HINT}"
    if provider == CPU:
        return True, "onnxruntime CPU"
    try:
        sess = ort.InferenceSession(_probe_model(), _quiet_options(ort),
                                    providers=[provider, CPU])
    except Exception as e:  # noqa: BLE001 — provider load failures have no common type
        first = (str(e).strip().splitlines() or [""])[0][:160]
        return False, f"{provider} failed to load ({type(e).__name__}: {first})"
    if provider not in sess.get_providers():
        return False, (f"{provider} is built in but did not load (missing CUDA/cuDNN"
                       f"{'/TensorRT' if provider == TRT else ''} libraries or no GPU)"
                       f"{_tensorrt_major_hint() if provider == TRT else ''}")
    return True, f"onnxruntime {provider}"


def _tensorrt_major_hint() -> str:
    """onnxruntime-gpu 1.31's TensorRT provider links libnvinfer.so.10 (readelf on its
    libonnxruntime_providers_tensorrt.so): name an installed TensorRT of another major."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("tensorrt-cu13", "tensorrt-cu12", "tensorrt"):
        try:
            v = version(dist)
        except PackageNotFoundError:
            continue
        if not v.startswith("10."):
            return (f"; {dist} {v} is installed, but the provider links TensorRT 10: "
                    "pip install 'tensorrt-cu13>=10.13.2,<11'")
    return ""


def _probe_model() -> bytes:
    """One Relu at opset 13 and IR version 7, which every onnxruntime >= 1.7 reads.

    The IR version must not come from the installed onnx: ``helper.make_model`` stamps
    ``onnx.IR_VERSION``, and an onnx newer than onnxruntime makes the session fail with
    "Unsupported model IR version: N, max supported IR version: M"
    (onnxruntime/core/graph/model.cc), which would read as missing CUDA libraries."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    probe.ir_version = 7
    return probe.SerializeToString()


def _quiet_options(ort: Any) -> Any:
    so = ort.SessionOptions()
    so.log_severity_level = 4
    return so


def ort_trt_cache_dir(model_path: Path) -> Path:
    """``export/ort_trt_cache/<content digest>``: ONNX Runtime's TensorRT provider names its
    cached engines from the graph's input and node-output names plus the ORT/CUDA/TensorRT
    versions, never the weights (``TRTGenerateId``, onnxruntime/core/providers/tensorrt/
    tensorrt_execution_provider_utils.h), and its docs say to clear the cache whenever the model
    changes (docs/execution-providers/TensorRT-ExecutionProvider.md). Retrained weights of the
    same architecture would silently reuse the old engine; a folder per file content cannot."""
    h = hashlib.sha256()
    with open(model_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return Path(model_path).parent / ORT_TRT_CACHE / h.hexdigest()[:16]


def resolve_providers(device: str = "auto", providers: str | list | None = None,
                      fp16: bool = False, model_path: Path | None = None) -> list:
    """The provider list for a session; raise UserError when a named one cannot run here.
    ``device`` 'tensorrt' asks for ONNX Runtime's TensorRT provider (CUDA, then CPU, behind
    it for what TensorRT does not take); ``model_path`` keys its engine cache."""
    if providers not in (None, "auto"):
        names = [providers] if isinstance(providers, str) else list(providers)
        names = [PROVIDER_ALIASES.get(n.lower(), n) for n in names]
    elif device in ("tensorrt", "trt"):
        names = [TRT]
    elif device == "cpu":
        names = [CPU]
    elif device in ("cuda", "gpu"):
        names = [CUDA]
    elif device == "auto":
        names = [CUDA] if provider_works(CUDA)[0] else [CPU]
    else:
        raise UserError(f"unknown device '{device}': choose cpu, cuda, tensorrt or auto")
    for name in names:
        ok, why = provider_works(name)
        if not ok:
            raise UserError(f"onnxruntime: {why}")
    if TRT in names and CUDA not in names:
        names.insert(names.index(TRT) + 1, CUDA)
    if CPU not in names:
        names.append(CPU)
    return [_with_options(n, fp16, model_path) for n in names]


def _with_options(name: str, fp16: bool, model_path: Path | None) -> Any:
    if name == TRT:
        opts: dict[str, Any] = {"trt_fp16_enable": fp16,
                                "trt_engine_cache_enable": model_path is not None}
        if model_path is not None:
            cache = str(ort_trt_cache_dir(model_path))
            opts.update(trt_engine_cache_path=cache, trt_timing_cache_enable=True,
                        trt_timing_cache_path=cache)
        return TRT, opts
    if name == CUDA:
        # use_tf32 (onnxruntime >= 1.18, PRs #19357/#19426): TF32 is on by default in cuBLAS
        # GEMMs and cuDNN convolutions; "fp32" here means fp32, as for TensorRT engines
        return CUDA, {"cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": 0}
    return name


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "auto",
                 providers: str | list | None = None, threads: int | None = None,
                 spinning: bool = False) -> None:
        import onnxruntime as ort

        from lkmseg.files.onnx_meta import config_from_metadata, load_onnx, read_metadata

        super().__init__()
        self.path = Path(path)
        proto = load_onnx(self.path)
        meta = read_metadata(self.path, proto)
        self.config = config_from_metadata(meta, self.path)
        self.precision = meta.get("precision", "fp32")
        provs = resolve_providers(device, providers, fp16=self.precision == "fp16",
                                  model_path=self.path)
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(),
                                                session_options(threads, spinning),
                                                providers=provs)
        except model_load_errors() as e:  # a graph this onnxruntime cannot run: bad file
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise UserError(f"{self.path}: onnxruntime cannot load this model "
                            f"({type(e).__name__}: {first}); re-export it") from e
        del proto
        self.threads = threads or physical_cores()
        self.provider = self.session.get_providers()[0]
        self.device = "cpu" if self.provider == CPU else "cuda"
        self.detail = self.provider.replace("ExecutionProvider", "")
        if self.device == "cpu":
            self.detail += f", {self.threads} threads"
        inp = self.session.get_inputs()[0]
        self._in, self._out = inp.name, self.session.get_outputs()[0].name
        dims = list(inp.shape)
        out_dims = list(self.session.get_outputs()[0].shape)
        if len(dims) != 4 or dims[1] != 3 or len(out_dims) != 4 or out_dims[1] != 1:
            raise UserError(f"{self.path}: model maps {dims} -> {out_dims}, not an lkmseg U-Net "
                            "(B, 3, H, W) -> (B, 1, H, W); re-export it with `lkmseg export RUN`")
        self.fixed_batch = dims[0] if isinstance(dims[0], int) else None
        if all(isinstance(d, int) for d in dims[2:]):
            self.fixed_hw = (dims[2], dims[3])

    @classmethod
    def from_source(cls, src: ModelSource, precision: str = "fp32", device: str = "auto",
                    **kw: Any) -> OnnxRuntimeEngine:
        path = src.onnx.get(precision)
        if path is None:
            have = ", ".join(src.onnx) or "none"
            fix = ("export it with `lkmseg export RUN`" if src.run_dir else
                   f"pass the {precision} .onnx file instead")
            raise UserError(f"{src.path}: no {precision} ONNX model (have: {have}); {fix}")
        if precision == "int8" and device == "auto":
            device = "cpu"  # the QDQ model is made for (and gated on) the CPU provider
        return cls(path, device=device, **kw)

    @classmethod
    def available(cls, precision: str = "fp32", device: str = "auto") -> tuple[bool, str]:
        if precision not in ("fp32", "fp16", "int8"):
            return False, f"no {precision} ONNX export; use fp32, fp16 or int8"
        if precision == "int8":
            if device in ("cuda", "gpu", "tensorrt"):
                return False, "the int8 (QDQ) model runs on the CPU provider; use --device cpu"
            ok, why = provider_works(CPU)
            return ok, why + " int8 (QDQ)" if ok else why
        if device in ("cuda", "gpu"):
            return provider_works(CUDA)
        if device == "tensorrt":
            return provider_works(TRT)
        if device == "auto" and provider_works(CUDA)[0]:
            return True, "onnxruntime CUDA"
        ok, why = provider_works(CPU)
        if ok and precision == "fp16":
            why += " (fp16 runs through fp32 casts on CPU: parity only, not faster)"
        return ok, why

    def _run(self, x: Any) -> np.ndarray:
        if self.fixed_hw is not None and tuple(x.shape[2:]) != self.fixed_hw:
            h, w = self.fixed_hw
            raise UserError(f"{self.path.name} was exported with --static for {h}x{w} inputs, "
                            f"got {x.shape[2]}x{x.shape[3]}; re-export with --dynamic")
        one = self._run_cpu if self.device == "cpu" else self._run_bound
        if self.fixed_batch is not None and x.shape[0] != self.fixed_batch:
            return run_fixed_batch(one, to_numpy(x), self.fixed_batch)
        return one(x)

    def _run_cpu(self, x: Any) -> np.ndarray:
        return self.session.run([self._out], {self._in: to_numpy(x)})[0]

    def _run_bound(self, x: Any) -> np.ndarray:
        import onnxruntime as ort

        binding = self.session.io_binding()
        is_cuda_tensor = getattr(x, "is_cuda", False)
        if is_cuda_tensor:
            import torch

            x = x.contiguous()
            torch.cuda.current_stream(x.device).synchronize()  # ORT runs on its own stream
            binding.bind_input(self._in, "cuda", x.device.index or 0, np.float32,
                               tuple(x.shape), x.data_ptr())
        else:
            binding.bind_ortvalue_input(self._in, ort.OrtValue.ortvalue_from_numpy(
                to_numpy(x), "cuda", 0))
        binding.bind_output(self._out, "cuda", 0)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def close(self) -> None:
        self.session = None
