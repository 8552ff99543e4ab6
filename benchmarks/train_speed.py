"""Training images/s of the seed's blocks (3x3, 5x5, 1x5) at 256x256, batch 8, in every
precision this machine runs natively x every memory layout, all interleaved in one process;
the 1xK/KxK speed-up within each precision; and the data loader's images/s.

    .venv/bin/python benchmarks/train_speed.py [--size 256] [--batch 8] [--rounds 6]
        [--blocks 3x3,5x5,1x5] [--precisions fp32,bf16] [--data DIR] [--json out.json]

A training step = forward + BCE-Dice + backward + AdamW, as `lkmseg train` runs it. Each
round runs one step of every variant (block x precision x layout) in turn; the figure is the
median over rounds (after one warm-up step each).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from lkmseg import hw
from lkmseg.bench.throughput import loader_throughput
from lkmseg.bench.train_speed import (
    best_per_precision,
    measure_per_precision,
    ratios_per_precision,
)
from lkmseg.models import ModelConfig, build_model, count_params
from lkmseg.train.runtime import resolve_device


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--blocks", default="3x3,5x5,1x5")
    ap.add_argument("--precisions", default=None,
                    help="default: the precisions native here (fp32, and bf16 on CPUs with "
                         "AVX512-BF16/AMX or GPUs with compute capability >= 8.0)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", default=None, help="dataset for the loader figure "
                    "(default: random uint8 arrays of the same shape)")
    ap.add_argument("--json", default=None)
    return ap.parse_args()


def _loader(a: argparse.Namespace, size: tuple[int, int]) -> float:
    if a.data:
        from lkmseg.data.prepare import prepare
        p = prepare(a.data, size)
        imgs, msks = p.train_images, p.train_masks
    else:
        rng = np.random.default_rng(0)
        imgs = rng.integers(0, 256, (64, *size, 3), dtype=np.uint8)
        msks = rng.integers(0, 2, (64, *size), dtype=np.uint8)
    return loader_throughput(imgs, msks, a.batch)


def main() -> None:
    a = _args()
    con = Console()
    size = (a.size, a.size)
    blocks = a.blocks.split(",")
    dev = resolve_device(a.device)
    precs = a.precisions.split(",") if a.precisions else hw.native_precisions(dev)
    info = hw.machine_info(dev)
    load_before = [round(x, 2) for x in os.getloadavg()]
    con.print(f"{info['cpu']} [{' '.join(info['cpu_flags'])}], torch {info['torch']}, "
              f"{info['threads']} threads; size {a.size}, batch {a.batch}; precisions "
              f"{', '.join(precs)}")
    with Progress(console=con) as bar:
        task = bar.add_task("interleaved rounds", total=a.rounds)
        res = measure_per_precision({b: ModelConfig(block=b) for b in blocks}, size, a.batch,
                                    device=a.device, precisions=precs, layouts=("on", "off"),
                                    rounds=a.rounds,
                                    progress=lambda r, n: bar.update(task, completed=r))
    loader = _loader(a, size)
    best = best_per_precision(res)
    ratios = ratios_per_precision(best, {b: b for b in blocks})
    t = Table(title=f"training throughput, {a.size}x{a.size}, batch {a.batch} (interleaved)")
    for c in ["block", "params (M)", "precision", "layout", "images/s (median)",
              "images/s (best)", "step ms per round"]:
        t.add_column(c)
    for key, r in res.items():
        b = key.split("|")[0]
        t.add_row(b, f"{count_params(build_model(b)) / 1e6:.2f}", r.precision,
                  "channels_last" if r.channels_last else "NCHW", f"{r.images_per_s:.2f}",
                  f"{r.images_per_s_best:.2f}", " ".join(f"{x:.0f}" for x in r.step_ms))
    con.print(t)
    fastest = {b: max((r for k, r in res.items() if k.startswith(f"{b}|")),
                      key=lambda r: r.images_per_s) for b in blocks}
    for b, r in fastest.items():
        con.print(f"fastest for {b}: {r.precision} "
                  f"{'channels_last' if r.channels_last else 'NCHW'} {r.images_per_s:.2f} img/s")
    for p, rs in ratios.items():
        for pair, v in rs.items():
            con.print(f"speed-up {pair} in {p} (best layout each): {v:.2f}x")
    con.print(f"loader (gather + augment, one thread): {loader:.0f} images/s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": info,
                       "load_avg_before": load_before,
                       "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                       "size": a.size, "batch": a.batch, "rounds": a.rounds,
                       "results": {k: vars(r) for k, r in res.items()},
                       "fastest": {b: {"precision": r.precision,
                                       "channels_last": r.channels_last,
                                       "images_per_s": r.images_per_s}
                                   for b, r in fastest.items()},
                       "ratios_per_precision": ratios,
                       "loader_images_per_s": loader}, f, indent=2)


if __name__ == "__main__":
    main()
