"""PyTorch eager: fp32, or fp16 / bf16 autocast; channels_last by default."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from lkmseg.config import RunConfig
from lkmseg.engines.base import PRECISIONS, Engine
from lkmseg.engines.source import ModelSource
from lkmseg.errors import UserError


def resolve_torch_device(device: str) -> str:
    import torch

    if device in ("auto", "", None):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "gpu":
        return "cuda"
    return device


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, model: Any, config: RunConfig, precision: str = "fp32",
                 device: str = "auto", channels_last: bool = True) -> None:
        import torch

        super().__init__()
        ok, why = self.available(precision, device)
        if not ok:
            raise UserError(f"torch engine: {why}")
        self.device = resolve_torch_device(device)
        self.precision, self.config = precision, config
        self.channels_last = channels_last
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device, memory_format=fmt)
        self._dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self.detail = "channels_last" if channels_last else "NCHW"
        if self.device.startswith("cuda"):
            self.detail += f", {torch.cuda.get_device_name(torch.device(self.device))}"

    @classmethod
    def from_source(cls, src: ModelSource, precision: str = "fp32", device: str = "auto",
                    channels_last: bool = True) -> TorchEngine:
        from lkmseg.files.run_folder import load_weights
        from lkmseg.models import build_model

        if src.weights is None:
            raise UserError(f"{src.path}: no PyTorch weights (model.safetensors) here; the torch "
                            "engine needs a run folder — or pick --engine onnxruntime")
        model = load_weights(build_model(src.config.model), src.weights)
        return cls(model, src.config, precision=precision, device=device,
                   channels_last=channels_last)

    @classmethod
    def available(cls, precision: str = "fp32", device: str = "auto") -> tuple[bool, str]:
        try:
            import torch
        except ImportError:
            return False, "PyTorch is not installed: run scripts/setup.sh (or pip install torch)"
        if precision not in PRECISIONS:
            return False, f"unknown precision '{precision}': choose from {', '.join(PRECISIONS)}"
        dev = resolve_torch_device(device)
        if dev.startswith("cuda"):
            if not torch.cuda.is_available():
                return False, ("no CUDA GPU visible to PyTorch (CPU build or no driver); "
                               "use --device cpu or install the CUDA build of torch")
            if precision == "bf16" and not torch.cuda.is_bf16_supported():
                return False, "this GPU has no bf16 support; use --precision fp16"
            return True, f"cuda ({torch.cuda.get_device_name(0)})"
        if dev != "cpu":
            return False, f"unknown device '{device}': choose cpu, cuda or auto"
        if precision == "fp16":
            return False, ("fp16 autocast needs a CUDA GPU (CPU fp16 convolutions are "
                           "emulated and slow); use --precision bf16 on CPU")
        return True, "cpu"

    def _run(self, x: Any) -> np.ndarray:
        import torch

        xt = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
        xt = xt.to(self.device, non_blocking=True)
        if self.channels_last:
            xt = xt.contiguous(memory_format=torch.channels_last)
        dev_type = "cuda" if self.device.startswith("cuda") else "cpu"
        cast = (torch.autocast(dev_type, dtype=self._dtype) if self._dtype is not None
                else contextlib.nullcontext())
        with torch.inference_mode(), cast:
            y = self.model(xt)
        return np.ascontiguousarray(y.float().cpu().numpy())

    def close(self) -> None:
        self.model = None
