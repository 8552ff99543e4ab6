"""PyTorch eager: fp32, or fp16 / bf16 autocast. Memory layout (channels_last or NCHW) and,
with precision "auto", the precision are measured on the first batch of each shape and
cached per machine (``lkmseg.tune``), unless ``channels_last`` is given."""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np

from lkmseg import hw, tune
from lkmseg.config import RunConfig
from lkmseg.engines.base import PRECISIONS, Engine
from lkmseg.engines.source import ModelSource
from lkmseg.errors import UserError

INFER_BUDGET_S = 3.0  # measuring the candidates for one input shape takes about this long
INFER_ROUNDS = 10  # timed calls per candidate at most (the best counts), within the budget


def resolve_torch_device(device: str) -> str:
    import torch

    if device in ("auto", "", None):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "gpu":
        return "cuda"
    return device


def _label(precision: str, cl: bool) -> str:
    return f"{precision} {'channels_last' if cl else 'NCHW'}"



@contextlib.contextmanager
def _tf32(allow: bool | None):
    """TF32 for cuDNN convolutions and matmuls while inside: off for fp32 on CUDA (training
    turns it on globally, and Ampere+ would otherwise round fp32 inputs to 10-bit mantissas,
    unlike ORT's use_tf32=0 and TensorRT's fp32), on for the "tf32" precision; None: as set."""
    if allow is None:
        yield
        return
    import torch

    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled,
                                        benchmark=torch.backends.cudnn.benchmark,
                                        deterministic=torch.backends.cudnn.deterministic,
                                        allow_tf32=allow):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, model: Any, config: RunConfig, precision: str = "fp32",
                 device: str = "auto", channels_last: bool | None = None) -> None:
        """``precision``: fp32, fp16, bf16, tf32 (fp32 with TF32 math, CUDA only), or auto
        (the fastest of fp32 and the precisions native here, measured). ``channels_last``:
        True/False forces the layout; None measures both on the first batch of each shape."""
        super().__init__()
        ok, why = self.available(precision, device)
        if not ok:
            raise UserError(f"torch engine: {why}")
        self.device = resolve_torch_device(device)
        self.config = config
        self.precision = self.requested = precision
        self.channels_last = channels_last
        self.model = model.eval().to(self.device)
        self._cl_now = False
        self._set_layout(bool(channels_last))
        self.choices: dict[tuple[int, ...], str] = {}  # input shape -> "bf16 channels_last"
        self._update_detail()

    def _candidates(self) -> list[tuple[str, bool]]:
        precs = [self.requested]
        if self.requested == "auto":
            precs = ["fp32", *(["fp16"] if self.device.startswith("cuda") else []),
                     *(["bf16"] if hw.native_bf16(self.device) else [])]
        layouts = [True, False] if self.channels_last is None else [self.channels_last]
        return [(p, cl) for p in precs for cl in layouts]

    def _set_layout(self, cl: bool) -> None:
        import torch

        if cl != self._cl_now:
            fmt = torch.channels_last if cl else torch.contiguous_format
            self.model = self.model.to(memory_format=fmt)
            self._cl_now = cl

    def _update_detail(self) -> None:
        import torch

        if self.choices:
            shown = sorted({c.split()[1] for c in self.choices.values()})
            self.detail = "/".join(shown) + " (measured)"
        else:
            self.detail = ("layout measured per shape" if self.channels_last is None
                           else "channels_last" if self.channels_last else "NCHW")
        if self.device.startswith("cuda"):
            self.detail += f", {torch.cuda.get_device_name(torch.device(self.device))}"

    @classmethod
    def from_source(cls, src: ModelSource, precision: str = "fp32", device: str = "auto",
                    channels_last: bool | None = None) -> TorchEngine:
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
        if precision not in (*PRECISIONS, "tf32", "auto"):
            return False, (f"unknown precision '{precision}': choose from auto, "
                           f"{', '.join(PRECISIONS)}, tf32")
        dev = resolve_torch_device(device)
        if dev.startswith("cuda"):
            if not torch.cuda.is_available():
                return False, ("no CUDA GPU visible to PyTorch (CPU build or no driver); "
                               "use --device cpu or install the CUDA build of torch")
            if precision == "tf32" and torch.cuda.get_device_capability(0) < (8, 0):
                return False, "TF32 needs a GPU of compute capability 8.0 or later"
            if precision == "bf16" and not torch.cuda.is_bf16_supported():
                return False, "this GPU has no bf16 support; use --precision fp16"
            # supported but below compute capability 8.0 it is emulated: runs, slowly (bench
            # skips such rows, see bench.rows.before_loading; auto never measures it)
            return True, f"cuda ({torch.cuda.get_device_name(0)})"
        if dev != "cpu":
            return False, f"unknown device '{device}': choose cpu, cuda or auto"
        if precision == "tf32":
            return False, "tf32 is a CUDA mode (compute capability >= 8.0); on a CPU fp32 is fp32"
        if precision == "fp16":
            return False, ("fp16 autocast needs a CUDA GPU (CPU fp16 convolutions are "
                           "emulated and slow); use --precision bf16 on CPU")
        return True, "cpu"

    # ---------------------------------------------------------------- measured choice

    def _forward(self, model: Any, xt: Any, precision: str) -> Any:
        import torch

        dtype = {"fp32": None, "tf32": None, "fp16": torch.float16,
                 "bf16": torch.bfloat16}[precision]
        dev_type = "cuda" if self.device.startswith("cuda") else "cpu"
        cast = (torch.autocast(dev_type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())
        tf32 = precision == "tf32" if dev_type == "cuda" and dtype is None else None
        with torch.inference_mode(), cast, _tf32(tf32):
            y = model(xt)
        if dev_type == "cuda":
            torch.cuda.synchronize(torch.device(self.device))
        return y

    def _key(self, shape: tuple[int, ...], labels: list[str]) -> dict:
        cfg = self.config.model
        return {"what": "infer", "machine": hw.machine_key(self.device),
                "device": self.device.split(":")[0],
                "model": asdict(cfg) if is_dataclass(cfg) else str(cfg),
                "shape": list(shape), "candidates": labels}

    def _measure(self, xt: Any, cands: list[tuple[str, bool]]) -> dict[str, float]:
        import torch

        models = {cl: copy.deepcopy(self.model).to(
            memory_format=torch.channels_last if cl else torch.contiguous_format)
            for cl in {cl for _, cl in cands}}
        inputs = {cl: xt.contiguous(memory_format=torch.channels_last) if cl
                  else xt.contiguous() for cl in models}
        fns = {_label(p, cl): (lambda p=p, cl=cl: self._forward(models[cl], inputs[cl], p))
               for p, cl in cands}
        return tune.time_candidates(fns, budget_s=INFER_BUDGET_S, rounds=INFER_ROUNDS)

    def _choose(self, xt: Any) -> tuple[str, bool]:
        """(precision, channels_last) for this input shape: given, cached or measured."""
        cands = self._candidates()
        shape = tuple(xt.shape)
        if len(cands) == 1 or shape in self.choices:
            return cands[0] if len(cands) == 1 else self._parse(self.choices[shape])
        labels = [_label(p, cl) for p, cl in cands]
        key = self._key(shape, labels)
        rec = tune.cached(key)
        if rec is None or rec.get("best") not in labels:
            secs = self._measure(xt, cands)
            rec = {"best": tune.fastest(secs), "ms": {k: round(v * 1000, 3)
                                                      for k, v in secs.items()}}
            if not hw.busy()[0]:  # a busy machine's ranking is used once, not remembered
                tune.remember(key, rec)
        self.choices[shape] = rec["best"]
        self._update_detail()
        return self._parse(rec["best"])

    @staticmethod
    def _parse(label: str) -> tuple[str, bool]:
        prec, layout = label.split()
        return prec, layout == "channels_last"

    def _run(self, x: Any) -> np.ndarray:
        import torch

        t0 = time.perf_counter()
        xt = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
        xt = xt.to(self.device, non_blocking=True)
        new_shape = tuple(xt.shape) not in self.choices
        prec, cl = self._choose(xt)
        if new_shape and len(self._candidates()) > 1:
            # a one-off measurement is not inference time: keep it out of images_per_s
            self.seconds -= time.perf_counter() - t0
        self.precision = prec
        self._set_layout(cl)
        xt = xt.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        y = self._forward(self.model, xt, prec)
        return np.ascontiguousarray(y.float().cpu().numpy())

    def close(self) -> None:
        self.model = None
