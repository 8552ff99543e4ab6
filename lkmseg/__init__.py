"""lkmseg: square vs separable-kernel U-Nets — train, export, benchmark.

>>> import lkmseg
>>> run = lkmseg.train("1x5", steps=200)           # a run folder: config, weights, logs
>>> model = lkmseg.load(run)                        # the fastest engine measured here
>>> model.predict("car.jpg")[0].mask                # uint8 (H, W), 0/1, at the image's size
>>> net, report = lkmseg.separable(my_model, "1x5")  # any PyTorch model: square -> 1x5 + 5x1

The names below are imported on first use (``import lkmseg`` stays light: the CLI's
``--version`` and ``--help`` do not load torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lkmseg.api import (
        BenchReport,
        Model,
        Result,
        Run,
        ValReport,
        bench,
        compare,
        convert,
        export,
        load,
        train,
        val,
    )
    from lkmseg.models.surgery import SurgeryReport, separable

__all__ = ["BenchReport", "Model", "Result", "Run", "SurgeryReport", "ValReport", "__version__",
           "bench", "compare", "convert", "export", "load", "separable", "train", "val"]
_SURGERY = ("separable", "SurgeryReport")  # lkmseg.models.surgery: any PyTorch model


_PACKAGES = ("train", "export", "bench")  # subpackages that are callable (lkmseg._callable)


def __getattr__(name: str) -> Any:
    import importlib

    if name in _PACKAGES:
        return importlib.import_module(f"lkmseg.{name}")
    if name in _SURGERY:
        return getattr(importlib.import_module("lkmseg.models.surgery"), name)
    if name in __all__ and name != "__version__":
        return getattr(importlib.import_module("lkmseg.api"), name)
    raise AttributeError(f"module 'lkmseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
