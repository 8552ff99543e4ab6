"""Training images/s of the seed's blocks (3x3, 5x5, 1x5) at 256x256, batch 8, measured
interleaved in one process, plus the data loader's images/s on the same size.

    .venv/bin/python benchmarks/train_speed.py [--size 256] [--batch 8] [--rounds 5]
        [--blocks 3x3,5x5,1x5] [--data DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from lkmseg.bench.throughput import loader_throughput, measure_training
from lkmseg.models import ModelConfig, build_model, count_params


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--blocks", default="3x3,5x5,1x5")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", default=None, help="dataset for the loader figure "
                    "(default: random uint8 arrays of the same shape)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    con = Console()
    size = (a.size, a.size)
    blocks = a.blocks.split(",")
    con.print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{platform.processor() or platform.machine()}; size {a.size}, batch {a.batch}")
    res = measure_training({b: ModelConfig(block=b) for b in blocks}, size, a.batch,
                           rounds=a.rounds, device=a.device)
    if a.data:
        from lkmseg.data.prepare import prepare
        p = prepare(a.data, size)
        imgs, msks = p.train_images, p.train_masks
    else:
        rng = np.random.default_rng(0)
        imgs = rng.integers(0, 256, (64, *size, 3), dtype=np.uint8)
        msks = rng.integers(0, 2, (64, *size), dtype=np.uint8)
    loader = loader_throughput(imgs, msks, a.batch)
    t = Table(title=f"training throughput, {a.size}x{a.size}, batch {a.batch} (interleaved)")
    for c in ["block", "params (M)", "precision", "channels_last", "images/s (median)",
              "images/s (best)", "step ms per round"]:
        t.add_column(c)
    for b, r in res.items():
        t.add_row(b, f"{count_params(build_model(b)) / 1e6:.2f}", r.precision,
                  str(r.channels_last), f"{r.images_per_s:.2f}", f"{r.images_per_s_best:.2f}",
                  " ".join(f"{x:.0f}" for x in r.step_ms))
    con.print(t)
    con.print(f"loader (gather + augment, one thread): {loader:.0f} images/s")
    ratios = {}
    if "1x5" in res and "5x5" in res:
        ratios["1x5/5x5"] = res["1x5"].images_per_s / res["5x5"].images_per_s
    if "1x5" in res and "3x3" in res:
        ratios["1x5/3x3"] = res["1x5"].images_per_s / res["3x3"].images_per_s
    for k, v in ratios.items():
        con.print(f"speed-up {k}: {v:.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "size": a.size, "batch": a.batch,
                       "machine": platform.processor() or platform.machine(),
                       "results": {b: vars(r) for b, r in res.items()},
                       "loader_images_per_s": loader, "ratios": ratios}, f, indent=2)


if __name__ == "__main__":
    main()
