"""Pick and load an engine by name — or ``auto``: the fastest one measured on this machine.

``auto`` lists the engine x precision candidates that have a model file on the device it
targets (a GPU when one is visible, else the CPU), keeps those inside export's accuracy gate
(``RUN/export/report.json``), times them briefly at first use and caches the winner per machine,
model files and input size (``lkmseg.engines.auto``). Nothing is preferred by assumption: the
answer differs between CPUs (ONNX Runtime is 2x faster than PyTorch eager on one, no faster on
another; OpenVINO int8 wins where the CPU has VNNI/AMX).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lkmseg import devices
from lkmseg.engines.base import Engine
from lkmseg.engines.source import ModelSource, resolve_model
from lkmseg.errors import UserError

ENGINE_NAMES = ("torch", "onnxruntime", "openvino", "tensorrt")
ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "trt": "tensorrt", "pytorch": "torch",
           "ov": "openvino"}


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
    elif n == "openvino":
        from lkmseg.engines.openvino_engine import OpenVinoEngine as cls
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
    if name == "openvino" and "fp32" not in src.onnx and "int8" in src.onnx:
        return "int8"
    return "fp32"


def load_engine(name: str, model: str | Path | ModelSource, precision: str | None = None,
                device: str = "auto", **kw: Any) -> Engine:
    """Load ``model`` (run folder, export folder, .onnx, .engine, .safetensors) on engine
    ``name`` ('auto', 'torch', 'onnxruntime', 'openvino', 'tensorrt'). ``kw`` goes to the
    engine (e.g. ``threads``/``spinning``/``providers`` for onnxruntime, ``channels_last`` for
    torch, ``threads`` for openvino).
    """
    device = devices.check(device, engines=True)
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


CPU_CANDIDATES = [("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("onnxruntime", "int8"),
                  ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"),
                  ("torch", "fp32"), ("torch", "bf16")]
GPU_CANDIDATES = [("onnxruntime", "fp16"), ("onnxruntime", "fp32"), ("torch", "fp16"),
                  ("torch", "fp32")]


def auto_plan(src: ModelSource, precision: str | None = None,
              device: str = "auto") -> list[tuple[str, str | None, str]]:
    """Candidates (engine, precision, device) that have a model file, on the GPU when
    ``device`` is auto and one is visible, else on the CPU; ``precision`` filters them."""
    from lkmseg.engines.auto import candidate_files

    dev = devices.resolve(device, engines=True)
    gpu = devices.is_gpu(dev)
    plan: list[tuple[str, str | None, str]] = []
    if gpu and src.engine is not None:
        plan.append(("tensorrt", precision, dev))
    for name, prec in (GPU_CANDIDATES if gpu else CPU_CANDIDATES):
        if precision in (None, prec) and candidate_files(src, name, prec):
            plan.append((name, prec, dev))
    return plan


def auto_engine(src: ModelSource, precision: str | None = None, device: str = "auto",
                **kw: Any) -> Engine:
    """The fastest candidate of ``auto_plan`` that is available, inside export's accuracy
    gate and loads; ``engine.auto_choice`` says what was measured, ``engine.skipped`` why the
    others were left out."""
    from lkmseg.engines.auto import choose, gated

    skipped: list[str] = []
    plan = []
    for name, prec, dev in auto_plan(src, precision, device):
        ok, why = engine_class(name).available(prec or "fp32", dev)
        if ok:
            plan.append((name, prec, dev))
        else:
            skipped.append(f"{name} {prec or ''} {dev}: {why}".replace("  ", " "))
    plan, notes = gated(src, plan)
    skipped += notes
    if not src.onnx and src.run_dir is not None:
        skipped.append("onnxruntime/openvino: no ONNX export yet (`lkmseg export RUN` writes "
                       "one; auto then measures those engines too)")
    if not plan:
        detail = "; ".join(skipped) if skipped else f"no model files found in {src.describe()}"
        raise UserError(f"no engine can run {src.path} here ({detail})")

    def load(c: tuple[str, str | None, str]) -> Engine:
        opts = {k: v for k, v in kw.items() if k in _ENGINE_KW.get(c[0], ())}
        return engine_class(c[0]).from_source(src, precision=c[1], device=c[2], **opts)

    size = tuple(int(s) for s in src.config.size)
    # the options (threads: serve's instances share the cores) change what is fastest
    eng = choose(src, plan, load, size, skipped,  # type: ignore[arg-type]
                 options=",".join(f"{k}={kw[k]}" for k in sorted(kw)))
    eng.skipped = skipped
    return eng


_ENGINE_KW = {"onnxruntime": ("threads", "spinning", "providers"),
              "torch": ("channels_last",), "openvino": ("threads",), "tensorrt": ()}
