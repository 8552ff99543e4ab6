"""Does `lkmseg train` with defaults train at the speed of the fastest precision x layout?

For each block: a `lkmseg train` run with default options (precision and layout chosen by
its own measurement) is trained in chunks of wall time, and between chunks this process
times one training step of every precision x layout in turn (the same step as
benchmarks/train_speed.py), so both sides see the same machine load. Reported: the run's
summary images/s, the median images/s of each combination, the fastest, and their ratio.

    LKMSEG_CARVANA=/work/shared/data/carvana-mini \\
    .venv/bin/python benchmarks/train_vs_fastest.py [--size 256] [--batch 8] [--budget 75] \\
        [--chunk 30] [--blocks 3x3,5x5,1x5] [--out runs/train_vs_fastest] [--json out.json]

The run's images/s counts every training step of every chunk, including the first, slower
step after each resume (a cost of the chunking that an uninterrupted run pays once).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from chunked_run import ChunkedRun

from lkmseg import hw
from lkmseg.models import ModelConfig, build_model
from lkmseg.train.runtime import label, random_batch, train_step_fn


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("LKMSEG_CARVANA"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--budget", type=float, default=75.0)
    ap.add_argument("--chunk", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=3, help="harness rounds between chunks")
    ap.add_argument("--blocks", default="3x3,5x5,1x5")
    ap.add_argument("--out", default="runs/train_vs_fastest")
    ap.add_argument("--train-args", default="",
                    help="more `lkmseg train` options, e.g. '--no-augment' (a diagnostic: "
                         "the data loader shares the cores with training)")
    ap.add_argument("--json", default=None)
    return ap.parse_args()


def _harness(block: str, size: int, batch: int) -> dict:
    """One training step per precision x layout native here (copies of one model)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(block=block))
    x, y = random_batch(batch, size, size, torch.device("cpu"))
    fns = {label(p, cl): train_step_fn(model, x, y, p, cl)
           for p in hw.native_precisions("cpu") for cl in (True, False)}
    for fn in fns.values():
        fn()  # warm-up
    return fns


def _time_rounds(fns: dict, rounds: int, times: dict[str, list[float]]) -> None:
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)


def _block(a: argparse.Namespace, block: str) -> dict:
    run = ChunkedRun(Path(a.out) / block,
                     ["--block", block, "--size", str(a.size), "--batch-size", str(a.batch),
                      "--time-budget", f"{a.budget:g}s", "--data", str(a.data),
                      "--out", a.out, "--name", block, *a.train_args.split()], a.budget)
    fns = _harness(block, a.size, a.batch)
    times: dict[str, list[float]] = {k: [] for k in fns}
    while not run.done():
        _time_rounds(fns, a.rounds, times)
        run.train(a.chunk)
        print(f"{block}: chunk {run.chunks} done", flush=True)
    _time_rounds(fns, a.rounds, times)
    ips = {k: a.batch / statistics.median(v) for k, v in times.items()}
    best = max(ips, key=ips.get)
    s = run.summary()
    chosen = label(s["precision"], s["channels_last"])
    return {"run": str(run.run), "chosen": chosen, "why": s["precision_why"],
            "train_images_per_s": s["images_per_s"], "steps": s["steps"],
            "chunks": run.chunks, "load_avg_per_chunk": run.load_avg,
            "harness_median_images_per_s": ips,
            "harness_step_ms": {k: [round(t * 1000) for t in v] for k, v in times.items()},
            "fastest": best, "fastest_images_per_s": ips[best],
            "train_vs_fastest": s["images_per_s"] / ips[best],
            "chosen_vs_fastest_in_harness": ips[chosen] / ips[best]}


def main() -> None:
    a = _args()
    if not a.data:
        raise SystemExit("set LKMSEG_CARVANA or pass --data (the carvana-mini folder)")
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": hw.machine_info("cpu"),
           "size": a.size, "batch": a.batch, "budget_s": a.budget, "chunk_s": a.chunk,
           "train_args": a.train_args,
           "load_avg_before": [round(x, 2) for x in os.getloadavg()], "blocks": {}}
    for b in a.blocks.split(","):
        r = out["blocks"][b] = _block(a, b)
        print(f"{b}: train (defaults: {r['chosen']}) {r['train_images_per_s']:.1f} img/s; "
              f"fastest {r['fastest']} {r['fastest_images_per_s']:.1f} img/s -> "
              f"{r['train_vs_fastest']:.2f}; chosen/fastest in the harness "
              f"{r['chosen_vs_fastest_in_harness']:.2f}", flush=True)
    out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
