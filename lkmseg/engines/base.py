"""The one interface every runtime implements.

An engine maps a preprocessed batch — float32 (B, 3, H, W) in [0, 1], numpy or torch — to
logits float32 (B, 1, H, W) as numpy. Pre/post-processing is not the engine's business: it
lives in ``lkmseg.data.transforms`` and is the same for all engines (``engine.config`` says
which size, threshold and normalization the model expects).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from lkmseg.config import RunConfig

PRECISIONS = ("fp32", "fp16", "bf16")  # torch autocast; ONNX/OpenVINO add "int8"


def check_input(x: Any) -> tuple[int, ...]:
    """Validate a model input batch; returns its shape. Wrong shapes are programming errors."""
    shape = tuple(x.shape)
    if len(shape) != 4 or shape[1] != 3:
        raise ValueError(f"engine input must be (B, 3, H, W), got {shape}")
    dtype = str(x.dtype)
    if "float32" not in dtype:
        raise ValueError(f"engine input must be float32 in [0, 1], got {dtype}")
    return shape


def to_numpy(x: Any) -> np.ndarray:
    """A C-contiguous float32 numpy view/copy of a numpy array or (CPU/GPU) torch tensor."""
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x, dtype=np.float32)
    return np.ascontiguousarray(x.detach().to("cpu").numpy(), dtype=np.float32)


def run_fixed_batch(run: Any, x: np.ndarray, n: int) -> np.ndarray:
    """Run a model that only accepts batch ``n`` (a static export): split into chunks of
    ``n``, pad the last one by repeating its last image, and drop the padding's outputs."""
    outs = []
    for i in range(0, len(x), n):
        chunk = x[i : i + n]
        k = len(chunk)
        if k < n:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], n - k, axis=0)])
        outs.append(run(chunk)[:k])
    return np.concatenate(outs)


class Engine(ABC):
    """A loaded model on one runtime, precision and device.

    Subclasses set ``name``, implement ``available`` and ``_run``; ``__call__`` validates the
    input and keeps the engine's own timing (``seconds``, ``images``) for frames/s reports.
    """

    name: ClassVar[str]
    precision: str = "fp32"
    device: str = "cpu"
    config: RunConfig
    detail: str = ""  # e.g. the ONNX Runtime provider, the GPU name
    skipped: tuple[str, ...] | list[str] = ()  # set by auto: candidates it left out, and why
    auto_choice: str = ""  # set by auto: what it chose and the timings it chose on
    fixed_hw: tuple[int, int] | None = None  # a static export's input (H, W), else None

    def __init__(self) -> None:
        self.seconds = 0.0
        self.images = 0
        self.calls = 0

    @classmethod
    @abstractmethod
    def available(cls, precision: str = "fp32", device: str = "auto") -> tuple[bool, str]:
        """(True, what it would run on) or (False, why not and how to fix it)."""

    @abstractmethod
    def _run(self, x: Any) -> np.ndarray:
        """Logits float32 (B, 1, H, W) for a validated float32 batch."""

    def __call__(self, x: Any) -> np.ndarray:
        b = check_input(x)[0]
        t0 = time.perf_counter()
        out = self._run(x)
        self.seconds += time.perf_counter() - t0
        self.images += b
        self.calls += 1
        return out

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def reset_stats(self) -> None:
        self.seconds, self.images, self.calls = 0.0, 0, 0

    def describe(self) -> str:
        extra = f", {self.detail}" if self.detail else ""
        return f"{self.name} ({self.precision}, {self.device}{extra})"

    def close(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Release runtime resources (sessions, contexts, GPU memory)."""

    def __enter__(self) -> Engine:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
