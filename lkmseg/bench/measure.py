"""Measuring primitives: FLOPs (torch's flop counter), the machine's matmul peak, memory.
(Timing lives in lkmseg.timing.)"""

from __future__ import annotations

import os
import time

import torch
from torch import nn


def gflops_per_image(model: nn.Module, size: tuple[int, int]) -> float:
    """Forward GFLOPs for one (3, H, W) image, counted by torch.utils.flop_counter
    (a multiply-add counts as 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = model.eval()
    x = torch.zeros(1, 3, *size, device=next(model.parameters()).device)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops() / 1e9


def matmul_peak_gflops(device: str = "cpu", n: int = 2048, dtype=torch.float32,
                       seconds: float = 0.5) -> float:
    """Achieved GFLOP/s of a large square matmul: the practical ceiling for convolutions."""
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    torch.mm(a, b)
    best = 0.0
    t_end = time.perf_counter() + seconds
    while True:
        sync(dev)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(dev)
        dt = time.perf_counter() - t0
        best = max(best, 2 * n**3 / dt / 1e9)
        if time.perf_counter() > t_end:
            return best


def sync(device: torch.device | str) -> None:
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def rss_mb() -> float:
    try:
        import psutil

        return psutil.Process(os.getpid()).memory_info().rss / 2**20
    except ImportError:  # pragma: no cover - psutil is a dependency
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
