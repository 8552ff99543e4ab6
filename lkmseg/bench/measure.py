"""Measuring primitives: FLOPs (torch's flop counter), the machine's matmul peak,
latency percentiles with warm-up and device synchronisation, and memory."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import numpy as np
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


def percentiles(times_s: list[float]) -> dict[str, float]:
    a = np.array(times_s) * 1000
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()),
            "n": int(a.size)}


class LatencyProbe:
    """Times one callable ``fn()`` in chunks so several probes can be interleaved.

    Each call is timed on its own; engines return host numpy arrays, so the host copy is
    the synchronisation point (GPU engines additionally synchronise inside).
    """

    def __init__(self, fn: Callable[[], object], warmup: int = 3) -> None:
        self.fn, self.times = fn, []
        for _ in range(warmup):
            fn()

    def run(self, n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            self.fn()
            self.times.append(time.perf_counter() - t0)

    def stats(self) -> dict[str, float]:
        return percentiles(self.times)


def interleave(probes: dict[str, LatencyProbe], reps: int = 30, rounds: int = 3,
               max_seconds: float = 60.0, progress=None) -> None:
    """Run every probe ``reps`` times in total, spread over ``rounds`` round-robin passes;
    a slow probe gets fewer repetitions when ``max_seconds`` (per probe) would be exceeded."""
    per_round = max(1, reps // rounds)
    for r in range(rounds):
        for p in probes.values():
            spent = sum(p.times)
            est = statistics.median(p.times) if p.times else 0.0
            n = per_round
            if est > 0:
                n = max(1, min(per_round, int((max_seconds - spent) / rounds / est)))
            p.run(n)
        if progress:
            progress(r + 1, rounds)
