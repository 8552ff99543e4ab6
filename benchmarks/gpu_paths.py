"""The GPU inference paths of benchmarks/gpu_bench.py that need more than torch: native
TensorRT and ONNX Runtime's CUDA / TensorRT providers. Imported lazily and only by the bench;
tests/test_gpu_fakes.py runs them against the strict fakes (no GPU, no TensorRT needed).

TensorRT (10.x and 11.x Python API, NVIDIA/TensorRT python/src/infer/pyCore.cpp):
- ``build_serialized_network`` returns an ``IHostMemory``: a buffer with ``nbytes``, no len()
  (pyFoundationalTypes.cpp L297-302);
- no network creation flag (11.x is always strongly typed; its STRONGLY_TYPED is 0 and
  ignored); fp32 clears TF32 (on by default), tf32 keeps it; fp16 is BuilderFlag.FP16 on 10.x
  and an fp16 graph on 11.x (no precision flags there);
- tensors bound by address in the dtypes ``get_tensor_dtype`` reports, ``execute_async_v3``
  on a stream of our own (enqueueV3 on the legacy default stream adds synchronisations,
  NvInferRuntime.h) and its bool result checked.
ONNX Runtime: CUDA fp32 with ``use_tf32=0``; the TensorRT provider has no TF32 switch
(microsoft/onnxruntime issue #26029), so its fp32 may use TF32: labelled so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
TRT_PRECISIONS = ("fp32", "tf32", "fp16")  # fp32: TF32 off; fp16: flag (10.x) / fp16 graph (11.x)


def trt_build(trt, onnx_path: Path, precision: str, workspace_gib: int = 4) -> tuple[object, dict]:
    """(plan, info) for a static-shape ONNX file. On TensorRT 11 an fp16 engine needs an fp16
    graph (``onnx_path`` must be one); on 10 it is the fp32 graph with BuilderFlag.FP16."""
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT's ONNX parser: {errs[:500]}")
    conf = builder.create_builder_config()
    conf.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_gib << 30)
    if precision == "fp32":
        conf.clear_flag(trt.BuilderFlag.TF32)
    if precision == "fp16" and hasattr(trt.BuilderFlag, "FP16"):
        conf.set_flag(trt.BuilderFlag.FP16)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, conf)
    if plan is None:
        raise RuntimeError("build_serialized_network returned None (see the TensorRT log)")
    return plan, {"build_s": round(time.perf_counter() - t0, 2), "engine_bytes": plan.nbytes,
                  "engine_mb": round(plan.nbytes / 2**20, 3)}


class TrtRunner:
    """A deserialized static-shape engine with its buffers on ``device``, ready to enqueue."""

    def __init__(self, trt, plan, device: torch.device | str) -> None:
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                  trt.DataType.BF16: torch.bfloat16}
        self.engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(plan)
        if self.engine is None:
            raise RuntimeError("deserialize_cuda_engine returned None")
        self.ctx = self.engine.create_execution_context()
        self.buffers: dict[str, torch.Tensor] = {}
        self.dtypes: dict[str, str] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(int(d) for d in self.engine.get_tensor_shape(name))
            dtype = dtypes[self.engine.get_tensor_dtype(name)]
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                if not self.ctx.set_input_shape(name, shape):
                    raise RuntimeError(f"set_input_shape({name}, {shape}) failed")
                buf = torch.rand(shape, device=device).to(dtype)
            else:
                buf = torch.empty(shape, dtype=dtype, device=device)
            if not self.ctx.set_tensor_address(name, buf.data_ptr()):
                raise RuntimeError(f"set_tensor_address({name}) failed")
            self.buffers[name] = buf
            self.dtypes[name] = str(dtype).replace("torch.", "")

    def run(self, stream_handle: int) -> None:
        if not self.ctx.execute_async_v3(stream_handle):
            raise RuntimeError("execute_async_v3 returned False (see the TensorRT log)")


def ort_paths(ort) -> list[tuple[str, list, str]]:
    """(label, providers, precision) for every ONNX Runtime path this build has."""
    have = set(ort.get_available_providers())
    paths = [("CPU", [CPU], "fp32")]
    if CUDA in have:
        paths.append(("CUDA", [(CUDA, {"use_tf32": 0}), CPU], "fp32"))
        paths.append(("CUDA tf32", [(CUDA, {"use_tf32": 1}), CPU], "tf32"))
    if TRT in have:
        for prec in ("fp32", "fp16"):  # fp32: TensorRT's default lets TF32 in
            paths.append((f"TensorRT {prec}", [(TRT, {"trt_fp16_enable": prec == "fp16"}),
                                               (CUDA, {}), CPU], prec))
    return paths


def ort_call(ort, path: Path, providers: list, x) -> tuple[Callable[[], object], list[str]]:
    """A zero-argument call running the session once, and the providers it got. GPU
    providers go through IO binding (input and output stay on the GPU), so host copies are not
    timed; ONNX Runtime synchronises its stream at the end of each run."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=providers)
    got = sess.get_providers()
    wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
    if got[0] != wanted:
        raise RuntimeError(f"{wanted} did not load (session runs on {got[0]})")
    name, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    if wanted == CPU:
        return (lambda: sess.run(None, {name: x})), got
    binding = sess.io_binding()
    binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    binding.bind_output(out, "cuda", 0)
    return (lambda: sess.run_with_iobinding(binding)), got
