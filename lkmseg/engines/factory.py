"""Pick and load an engine by name — or ``auto``: the fastest one that can run here.

Order for ``auto``: TensorRT engine (GPU) > ONNX Runtime CUDA > ONNX Runtime CPU > PyTorch
eager. On CPUs ONNX Runtime beats PyTorch eager for these U-Nets (benchmarks/ort_vs_torch.py);
on GPUs TensorRT beats both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lkmseg.engines.base import Engine
from lkmseg.engines.source import ModelSource, resolve_model
from lkmseg.errors import UserError

ENGINE_NAMES = ("torch", "onnxruntime", "tensorrt")
ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "trt": "tensorrt", "pytorch": "torch"}


def canonical_name(name: str) -> str:
    n = ALIASES.get(name.strip().lower(), name.strip().lower())
    if n != "auto" and n not in ENGINE_NAMES:
        raise UserError(f"unknown engine '{name}': choose from auto, {', '.join(ENGINE_NAMES)}")
    return n


def engine_class(name: str) -> type[Engine]:
    n = canonical_name(name)
    if n == "torch":
        from lkmseg.engines.torch_engine import TorchEngine as cls
    elif n == "onnxruntime":
        from lkmseg.engines.onnxruntime_engine import OnnxRuntimeEngine as cls
    elif n == "tensorrt":
        from lkmseg.engines.tensorrt_engine import TensorRTEngine as cls
    else:
        raise UserError("engine 'auto' has no class; call load_engine('auto', ...)")
    return cls


def _default_precision(name: str, src: ModelSource, device: str) -> str | None:
    if name == "tensorrt":
        return None  # the engine file decides
    if name == "onnxruntime":
        return "fp32" if "fp32" in src.onnx or not src.onnx else next(iter(src.onnx))
    return "fp32"


def load_engine(name: str, model: str | Path | ModelSource, precision: str | None = None,
                device: str = "auto", **kw: Any) -> Engine:
    """Load ``model`` (run folder, export folder, .onnx, .engine, .safetensors) on engine
    ``name`` ('auto', 'torch', 'onnxruntime', 'tensorrt'). ``kw`` goes to the engine
    (e.g. ``threads``/``spinning``/``providers`` for onnxruntime, ``channels_last`` for torch).
    """
    if device not in ("auto", "cpu", "cuda", "gpu", "tensorrt") and not device.startswith("cuda:"):
        raise UserError(f"--device {device}: choose auto, cpu or cuda")
    src = model if isinstance(model, ModelSource) else resolve_model(model)
    n = canonical_name(name)
    if n == "auto":
        return auto_engine(src, precision, device, **kw)
    cls = engine_class(n)
    prec = precision or _default_precision(n, src, device)
    ok, why = cls.available(prec or "fp32", device)
    if not ok:
        raise UserError(f"--engine {n}: {why}")
    return cls.from_source(src, precision=prec, device=device, **kw)


def _gpu_present() -> bool:
    """A CUDA device is visible to torch or to onnxruntime (without importing tensorrt)."""
    try:
        import torch

        if torch.cuda.is_available():
            return True
    except ImportError:
        pass
    from lkmseg.engines.onnxruntime_engine import CUDA, provider_works

    return provider_works(CUDA)[0]


def auto_plan(src: ModelSource, precision: str | None = None,
              device: str = "auto") -> list[tuple[str, str | None, str]]:
    """Candidates in preference order: (engine, precision, device) that have a model file.
    With ``device='auto'``, GPU candidates are listed only when a GPU is visible."""
    if device == "auto" and not _gpu_present():
        device = "cpu"
    plan: list[tuple[str, str | None, str]] = []
    if src.engine is not None and device in ("auto", "cuda", "gpu"):
        plan.append(("tensorrt", precision, "cuda"))
    for dev in ("cuda", "cpu"):
        if device not in ("auto", dev, "gpu" if dev == "cuda" else dev):
            continue
        wanted = [precision] if precision else (["fp16", "fp32"] if dev == "cuda"
                                                else ["fp32", "fp16"])
        for prec in wanted:
            if prec in src.onnx:
                plan.append(("onnxruntime", prec, dev))
                break
    if src.weights is not None:
        for dev in ("cuda", "cpu"):
            if device in ("auto", dev, "gpu" if dev == "cuda" else dev):
                plan.append(("torch", precision or ("fp16" if dev == "cuda" else "fp32"), dev))
    return plan


def auto_engine(src: ModelSource, precision: str | None = None, device: str = "auto",
                **kw: Any) -> Engine:
    """The first candidate of ``auto_plan`` that loads; ``engine.skipped`` says why others
    did not."""
    skipped: list[str] = []
    for name, prec, dev in auto_plan(src, precision, device):
        cls = engine_class(name)
        ok, why = cls.available(prec or "fp32", dev)
        if not ok:
            skipped.append(f"{name} {prec or ''} {dev}: {why}".replace("  ", " "))
            continue
        opts = {k: v for k, v in kw.items() if k in _ENGINE_KW.get(name, ())}
        try:
            eng = cls.from_source(src, precision=prec, device=dev, **opts)
        except UserError as e:
            skipped.append(f"{name} {dev}: {e}")
            continue
        if name == "torch" and not src.onnx and src.run_dir is not None:
            skipped.append("onnxruntime: no ONNX export yet; `lkmseg export RUN` makes CPU "
                           "inference several times faster")
        eng.skipped = skipped
        return eng
    detail = "; ".join(skipped) if skipped else f"no model files found in {src.describe()}"
    raise UserError(f"no engine can run {src.path} here ({detail})")


_ENGINE_KW = {"onnxruntime": ("threads", "spinning", "providers"),
              "torch": ("channels_last",), "tensorrt": ()}
