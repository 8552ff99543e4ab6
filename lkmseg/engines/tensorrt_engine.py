"""Native TensorRT runtime: torch CUDA tensors as buffers, ``execute_async_v3`` on the current
torch stream, dynamic input shapes within the engine's optimization profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lkmseg.config import RunConfig
from lkmseg.engines.base import Engine
from lkmseg.engines.source import ModelSource
from lkmseg.engines.tensorrt_runtime import (
    ProfileShapes,
    current_gpu,
    require_tensorrt,
    tensorrt_status,
)
from lkmseg.errors import UserError
from lkmseg.files.sidecar import check_compatible, read_sidecar


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
        self.config = RunConfig.from_dict(side["run_config"])
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
        self.profile = ProfileShapes(*(tuple(int(d) for d in s) for s in
                                       self._engine.get_tensor_profile_shape(self._in, 0)))
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
        xt = xt.to("cuda", torch.float32, non_blocking=True).contiguous()
        min_b, max_b = self.profile.min[0], self.profile.max[0]
        if xt.shape[0] > max_b:  # split a batch larger than the profile allows
            return np.concatenate([self._run(xt[i : i + max_b])
                                   for i in range(0, xt.shape[0], max_b)])
        if xt.shape[0] < min_b:  # a static engine: pad with copies of the last image
            k = xt.shape[0]
            pad = xt[-1:].expand(min_b - k, *xt.shape[1:])
            return self._run(torch.cat([xt, pad]))[:k]
        shape = tuple(xt.shape)
        if not self.profile.contains(shape):
            raise UserError(f"input {shape} is outside the engine's optimization profile "
                            f"({self.profile}); rebuild with matching --size/--max-batch")
        self._ctx.set_input_shape(self._in, shape)
        out = torch.empty(tuple(self._ctx.get_tensor_shape(self._out)), dtype=torch.float32,
                          device=xt.device)
        self._ctx.set_tensor_address(self._in, xt.data_ptr())
        self._ctx.set_tensor_address(self._out, out.data_ptr())
        stream = torch.cuda.current_stream(xt.device)
        if not self._ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for input {shape}")
        return out.cpu().numpy()  # .cpu() synchronizes with the stream

    def close(self) -> None:
        self._ctx = self._engine = self._runtime = None
