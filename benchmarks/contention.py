"""How precision and layout rank when the cores are shared: training images/s of every
precision x layout, interleaved, first alone, then while N busy-loop processes compete for
the cores (what other people's jobs do on a shared machine), then alone again.

    .venv/bin/python benchmarks/contention.py [--block 5x5] [--size 128] [--batch 8] \\
        [--hogs 2] [--rounds 6] [--json out.json]

`lkmseg train --amp auto` measures once, at its start: its choice is right for the load it
saw. This shows how much a later change of load can change the ranking.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from lkmseg import hw
from lkmseg.models import ModelConfig, build_model
from lkmseg.train.runtime import label, random_batch, train_step_fn


def _rounds(fns: dict, n: int, batch: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(n):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: round(batch / statistics.median(v), 2) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--block", default="5x5")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--hogs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.manual_seed(0)
    model = build_model(ModelConfig(block=a.block))
    x, y = random_batch(a.batch, a.size, a.size, torch.device("cpu"))
    fns = {label(p, cl): train_step_fn(model, x, y, p, cl)
           for p in hw.native_precisions("cpu") for cl in (True, False)}
    for fn in fns.values():
        fn()
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": hw.machine_info("cpu"),
           "block": a.block, "size": a.size, "batch": a.batch, "phases": []}
    for phase, n in (("alone", 0), (f"{a.hogs} busy-loop processes", a.hogs), ("alone", 0)):
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
        try:
            load0 = os.getloadavg()[0]
            ips = _rounds(fns, a.rounds, a.batch)
        finally:
            for h in hogs:
                h.kill()
                h.wait()
        best = {p: max(v for k, v in ips.items() if k.startswith(p + " "))
                for p in hw.native_precisions("cpu")}
        out["phases"].append({"phase": phase, "load_avg_at_start": round(load0, 2),
                              "images_per_s": ips, "best_per_precision": best,
                              "fastest": max(ips, key=ips.get)})
        print(phase, ips, "fastest:", max(ips, key=ips.get), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
