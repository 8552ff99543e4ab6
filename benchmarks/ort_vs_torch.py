"""Latency of ONNX Runtime vs PyTorch eager on this CPU, per block, measured side by side.

Each block's model (width 8, depth 6 — the seed's size — unless --width/--depth) is exported
with lkmseg's exporter, then PyTorch eager (NCHW, its default layout, and channels_last, the
lkmseg torch engine's default) and ONNX Runtime (lkmseg's session options) are timed
*interleaved* in one process: every round runs each engine in a fresh random order, so load
from other processes on a shared machine hits all of them alike.

ONNX Runtime runs with thread spinning off (lkmseg's default): a spinning ORT pool keeps
burning both cores between its own calls and would slow the PyTorch calls timed right after it
(an unfair advantage to ORT). --spin adds ORT with spinning on as an extra row — expect it to
inflate the torch rows.

    .venv/bin/python benchmarks/ort_vs_torch.py [--blocks 3x3,5x5,1x5] [--size 256]
        [--batch 1] [--rounds 7] [--reps 5] [--json out.json] [--check 1.3]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from lkmseg.config import RunConfig
from lkmseg.engines.onnxruntime_engine import OnnxRuntimeEngine, physical_cores
from lkmseg.engines.torch_engine import TorchEngine
from lkmseg.export.onnx_export import export_onnx
from lkmseg.files.onnx_meta import save_onnx
from lkmseg.models import ModelConfig, build_model, count_params


def calibrated_model(block: str, width: int, depth: int, size: tuple[int, int]):
    """Random weights with BatchNorm statistics from a few forward passes (realistic
    activation ranges; untouched BN would feed denormal-prone values)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(block=block, width=width, depth=depth))
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(2, 3, *size))
    return model.eval()


def time_calls(fn, x, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blocks", default="3x3,5x5,1x5")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=5, help="calls per engine per round")
    ap.add_argument("--spin", action="store_true", help="also time ORT with spinning on")
    ap.add_argument("--json", default=None)
    ap.add_argument("--check", type=float, default=None,
                    help="exit 1 unless ORT's median latency beats torch eager (NCHW, its "
                         "default) by this factor for every block")
    a = ap.parse_args()
    con = Console()
    size = (a.size, a.size)
    threads = physical_cores()
    torch.set_num_threads(threads)
    con.print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
              f"onnxruntime {__import__('onnxruntime').__version__}, {threads} threads, "
              f"{platform.processor() or platform.machine()}; batch {a.batch}, "
              f"{a.size}x{a.size}, width {a.width}, depth {a.depth}")
    results = []
    tmp = Path(tempfile.mkdtemp(prefix="lkmseg-ortbench-"))
    for block in a.blocks.split(","):
        model = calibrated_model(block, a.width, a.depth, size)
        cfg = RunConfig(model=ModelConfig(block=block, width=a.width, depth=a.depth), size=size)
        onnx_path = save_onnx(export_onnx(model, cfg), tmp / f"{block}.onnx")
        engines = {
            "torch eager NCHW": TorchEngine(calibrated_model(block, a.width, a.depth, size), cfg,
                                            device="cpu", channels_last=False),
            "torch eager channels_last": TorchEngine(model, cfg, device="cpu",
                                                     channels_last=True),
            "onnxruntime": OnnxRuntimeEngine(onnx_path, device="cpu", spinning=False),
        }
        if a.spin:
            engines["onnxruntime (spinning)"] = OnnxRuntimeEngine(onnx_path, device="cpu",
                                                                  spinning=True)
        x = np.random.default_rng(0).random((a.batch, 3, *size), dtype=np.float32)
        ref = engines["torch eager NCHW"](x)
        for name, eng in engines.items():  # warm-up + a parity sanity check
            for _ in range(2):
                y = eng(x)
            assert np.abs(y - ref).max() < 1e-3, f"{name} disagrees with torch"
        lat: dict[str, list[float]] = {n: [] for n in engines}
        rng = random.Random(0)
        for _ in range(a.rounds):
            order = list(engines)
            rng.shuffle(order)
            for name in order:
                lat[name] += time_calls(engines[name], x, a.reps)
        med = {n: statistics.median(v) for n, v in lat.items()}
        best = {n: min(v) for n, v in lat.items()}  # least disturbed by other processes
        p90 = {n: float(np.percentile(v, 90)) for n, v in lat.items()}
        results.append({"block": block, "params": count_params(model),
                        "median_ms": med, "best_ms": best, "p90_ms": p90,
                        "speedup_vs_nchw": med["torch eager NCHW"] / med["onnxruntime"],
                        "speedup_vs_channels_last":
                            med["torch eager channels_last"] / med["onnxruntime"],
                        "best_speedup_vs_nchw": best["torch eager NCHW"] / best["onnxruntime"],
                        "best_speedup_vs_channels_last":
                            best["torch eager channels_last"] / best["onnxruntime"]})
        for eng in engines.values():
            eng.close()
    t = Table(title=f"latency ms, batch {a.batch}, {a.size}x{a.size}: median / best (p90) "
                    f"over {a.rounds}x{a.reps} interleaved calls")
    names = list(results[0]["median_ms"])
    for c in ["block", "params", *names, "ORT speed-up vs NCHW (median / best)",
              "vs channels_last (median / best)"]:
        t.add_column(c, justify="right")
    for r in results:
        t.add_row(r["block"], f"{r['params'] / 1e6:.2f}M",
                  *[f"{r['median_ms'][n]:.1f} / {r['best_ms'][n]:.1f} ({r['p90_ms'][n]:.1f})"
                    for n in names],
                  f"{r['speedup_vs_nchw']:.2f}x / {r['best_speedup_vs_nchw']:.2f}x",
                  f"{r['speedup_vs_channels_last']:.2f}x / "
                  f"{r['best_speedup_vs_channels_last']:.2f}x")
    con.print(t)
    con.print("A p90 far above the median means other processes were running: rerun when "
              "the machine is quiet.")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "results": results}, indent=2))
    if a.check is not None:
        worst = min(r["speedup_vs_nchw"] for r in results)
        if worst < a.check:
            con.print(f"[red]ORT speed-up {worst:.2f}x < {a.check}x[/]")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
