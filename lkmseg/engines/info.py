"""What can run here: library versions, devices, and every engine x precision x device."""

from __future__ import annotations

import importlib
import platform
from typing import Any

from lkmseg import __version__

MATRIX = [("torch", "fp32", "cpu"), ("torch", "bf16", "cpu"), ("torch", "fp32", "cuda"),
          ("torch", "fp16", "cuda"), ("torch", "bf16", "cuda"),
          ("onnxruntime", "fp32", "cpu"), ("onnxruntime", "fp16", "cpu"),
          ("onnxruntime", "int8", "cpu"),
          ("openvino", "fp32", "cpu"), ("openvino", "bf16", "cpu"), ("openvino", "int8", "cpu"),
          ("onnxruntime", "fp32", "cuda"), ("onnxruntime", "fp16", "cuda"),
          ("onnxruntime", "fp16", "tensorrt"),
          ("tensorrt", "fp32", "cuda"), ("tensorrt", "fp16", "cuda")]


def _version(module: str) -> str | None:
    try:
        return getattr(importlib.import_module(module), "__version__", "?")
    except Exception:  # noqa: BLE001 — a broken optional install must not break `info`
        return None


def environment() -> dict[str, Any]:
    """Versions and devices (None = not installed)."""
    env: dict[str, Any] = {"lkmseg": __version__, "python": platform.python_version(),
                           "platform": platform.platform()}
    for mod in ("torch", "onnx", "onnxruntime", "onnxslim", "openvino", "tensorrt", "cv2",
                "numpy"):
        env[mod] = _version(mod)
    env["cuda"] = env["cudnn"] = None
    env["gpus"] = []
    try:
        import torch

        env["cuda"] = torch.version.cuda
        if torch.backends.cudnn.is_available():
            env["cudnn"] = str(torch.backends.cudnn.version())
        env["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            p = torch.cuda.get_device_properties(i)
            env["gpus"].append({"index": i, "name": p.name, "capability": f"{p.major}.{p.minor}",
                                "memory_gib": round(p.total_memory / 2**30, 1)})
    except ImportError:
        pass
    try:
        import onnxruntime as ort

        env["onnxruntime_providers"] = ort.get_available_providers()
        env["onnxruntime_device"] = ort.get_device()
    except ImportError:
        env["onnxruntime_providers"] = []
    from lkmseg.hw import cpu_model, describe_isa, physical_cores

    env["cpu"] = {"name": cpu_model(), "physical_cores": physical_cores(),
                  "flags": describe_isa()}
    return env


def engine_matrix() -> list[dict[str, Any]]:
    """One row per (engine, precision, device): available here? if not, why and how to fix."""
    from lkmseg.engines.factory import engine_class

    rows = []
    for name, prec, dev in MATRIX:
        try:
            ok, why = engine_class(name).available(prec, dev)
        except Exception as e:  # noqa: BLE001 — report, don't crash, on a broken runtime
            ok, why = False, f"{type(e).__name__}: {e}"
        rows.append({"engine": name, "precision": prec, "device": dev, "available": ok,
                     "detail": why})
    return rows
