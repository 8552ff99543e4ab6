"""Native TensorRT runtime: torch CUDA tensors as buffers (in the dtypes the engine declares),
``execute_async_v3`` on a CUDA stream of the engine's own, dynamic input shapes within the
engine's optimization profile.

The stream: torch's current stream is the legacy default stream unless someone set another,
and TensorRT documents that enqueueing there "may lead to performance issues due to
additional cudaDeviceSynchronize() calls" (NvInferRuntime.h, ``enqueueV3``: release/10.13
L4937, release/11.1 L4639), which would also skew the latency we report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lkmseg.engines.base import Engine
from lkmseg.engines.source import ModelSource
from lkmseg.engines.tensorrt_runtime import (
    ProfileShapes,
    current_gpu,
    dims,
    require_tensorrt,
    tensorrt_status,
    torch_dtype,
)
from lkmseg.errors import UserError
from lkmseg.files.sidecar import check_compatible, read_sidecar, sidecar_config


class TensorRTEngine(Engine):
    name = "tensorrt"

    def __init__(self, engine_path: str | Path, device: str = "cuda") -> None:
        import torch

        super().__init__()
        self.path = Path(engine_path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: engine file not found; build it with "
                            "`lkmseg export RUN --trt`")
        trt = require_tensorrt("the tensorrt engine")
        side = read_sidecar(self.path)
        gpu = current_gpu()
        self.notes = check_compatible(side, self.path, trt.__version__, gpu)
        self.config = sidecar_config(side, self.path)
        self.precision = side.get("precision", "fp32")
        self.device = "cuda"
        self.detail = f"TensorRT {trt.__version__}, {gpu[0]}"
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise UserError(f"{self.path}: TensorRT cannot deserialize this engine (corrupt or "
                            "built elsewhere); rebuild it with `lkmseg export RUN --trt`")
        self._ctx = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise UserError(f"{self.path}: expected one input and one output, found "
                            f"{inputs} / {outputs}; not an lkmseg engine")
        self._in, self._out = inputs[0], outputs[0]
        self.profile = read_profile(self._engine, self._in, self.path)
        self._in_dtype = torch_dtype(trt, self._engine.get_tensor_dtype(self._in))
        self._out_dtype = torch_dtype(trt, self._engine.get_tensor_dtype(self._out))
        self._stream = None  # our CUDA stream, made on first use
        self._torch = torch
        if self.profile.min[2:] == self.profile.max[2:]:
            self.fixed_hw = tuple(self.profile.min[2:])

    @classmethod
    def from_source(cls, src: ModelSource, precision: str | None = None,
                    device: str = "cuda", **_: Any) -> TensorRTEngine:
        if src.engine is None:
            raise UserError(f"{src.path}: no TensorRT engine (export/model.engine); build it "
                            "with `lkmseg export RUN --trt`")
        eng = cls(src.engine, device=device)
        if precision not in (None, eng.precision):
            raise UserError(f"{src.engine} is a {eng.precision} engine, --precision {precision} "
                            "was asked; rebuild with `lkmseg export RUN --trt --trt-precision "
                            f"{precision}` or drop --precision")
        return eng

    @classmethod
    def available(cls, precision: str = "fp32", device: str = "auto") -> tuple[bool, str]:
        if precision not in ("fp32", "fp16"):
            return False, f"TensorRT engines here are fp32 or fp16, not {precision}"
        if device == "cpu":
            return False, "TensorRT runs on CUDA GPUs only"
        return tensorrt_status()

    def _run(self, x: Any) -> np.ndarray:
        torch = self._torch
        xt = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
        min_b, max_b = self.profile.min[0], self.profile.max[0]
        if xt.shape[0] > max_b:  # split a batch larger than the profile allows
            return np.concatenate([self._run(xt[i : i + max_b])
                                   for i in range(0, xt.shape[0], max_b)])
        if xt.shape[0] < min_b:  # a static engine: pad with copies of the last image
            k = xt.shape[0]
            pad = xt[-1:].expand(min_b - k, *xt.shape[1:])
            return self._run(torch.cat([xt, pad]))[:k]
        if self._stream is None:
            self._stream = torch.cuda.Stream()
        self._stream.wait_stream(torch.cuda.current_stream())  # x may come from that stream
        with torch.cuda.stream(self._stream):
            xt = xt.to("cuda", non_blocking=True).contiguous()
            out = self._execute(xt, self._stream.cuda_stream)
            return out.cpu().numpy()  # a blocking copy on our stream: waits for TensorRT

    def _execute(self, xt: Any, stream_handle: int) -> Any:
        """Enqueue one batch that fits the profile on ``stream_handle``: input and output bound
        by address in the dtypes the engine declares; every call's result checked (each returns
        bool, python/src/infer/pyCore.cpp L113-121, L1332-1340). Returns float32 logits on
        ``xt``'s device."""
        torch, ctx = self._torch, self._ctx
        shape = tuple(xt.shape)
        if not self.profile.contains(shape) or not ctx.set_input_shape(self._in, shape):
            raise UserError(f"input {shape} is outside the engine's optimization profile "
                            f"({self.profile}); rebuild with matching --size/--max-batch")
        out_shape = dims(ctx.get_tensor_shape(self._out))
        if out_shape is None or min(out_shape, default=-1) < 0:
            raise RuntimeError(f"TensorRT gives no output shape for input {shape}")
        x_in = xt.to(self._in_dtype).contiguous()
        out = torch.empty(out_shape, dtype=self._out_dtype, device=xt.device)
        for name, t in ((self._in, x_in), (self._out, out)):
            if not ctx.set_tensor_address(name, t.data_ptr()):
                raise RuntimeError(f"TensorRT refused the address of tensor '{name}'")
        if not ctx.execute_async_v3(stream_handle):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for input {shape} "
                               "(see the TensorRT log above)")
        return out.float()

    def close(self) -> None:
        self._ctx = self._engine = self._runtime = self._stream = None


def read_profile(engine: Any, name: str, path: Path) -> ProfileShapes:
    """Profile 0 of input ``name`` as 4-D min/opt/max shapes. For an engine without dynamic
    dimensions ``get_tensor_profile_shape`` may give ``Dims{-1}`` (NvInferRuntime.h,
    ``getProfileShape``): then the input's fixed shape is the whole profile."""
    shapes = [dims(s) for s in engine.get_tensor_profile_shape(name, 0)]
    if all(s is not None and len(s) == 4 and min(s) > 0 for s in shapes):
        return ProfileShapes(*shapes)
    fixed = dims(engine.get_tensor_shape(name))
    if fixed is not None and len(fixed) == 4 and min(fixed) > 0:
        return ProfileShapes(fixed, fixed, fixed)
    raise UserError(f"{path}: no 4-D input profile for tensor '{name}' (profile {shapes}, "
                    f"shape {fixed}); not an lkmseg engine: rebuild with `lkmseg export RUN --trt`")
