"""Why did `lkmseg train` step slower than the training-step harness? Short 5x5 runs with the
batches made by a background loader thread, in the training thread, and without augmentation,
against the harness step (benchmarks/train_speed.py's) on a fixed random batch.

    LKMSEG_CARVANA=/work/shared/data/carvana-mini .venv/bin/python benchmarks/loader_thread.py

Prints the median seconds per step (steps 6-40, from train_log.csv) of each, per round.
Result (2-core Xeon): results/loader-thread-5x5-256/loader_thread.txt.
"""

from __future__ import annotations

import csv
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from lkmseg.models import ModelConfig, build_model
from lkmseg.train.runtime import random_batch, train_step_fn

OUT = Path("/tmp/lkmseg-loader-thread")
LKMSEG = str(Path(sys.executable).parent / "lkmseg")


def run(name: str, extra: list[str]) -> float:
    out = OUT / name
    shutil.rmtree(out, ignore_errors=True)
    cmd = [LKMSEG, "train", "--block", "5x5", "--data", os.environ["LKMSEG_CARVANA"], "--size",
           "256", "--steps", "40", "--val-every", "1000", "--amp", "bf16", "--channels-last",
           "off", "--out", str(OUT), "--name", name, *extra]
    subprocess.run(cmd, check=True, capture_output=True)
    with open(out / "train_log.csv") as f:
        el = [float(r["elapsed_s"]) for r in csv.DictReader(f)]
    return statistics.median(el[i] - el[i - 1] for i in range(5, len(el)))


def harness_step() -> float:
    torch.manual_seed(0)
    x, y = random_batch(8, 256, 256, torch.device("cpu"))
    fn = train_step_fn(build_model(ModelConfig(block="5x5")), x, y, "bf16", False)
    fn()
    ts = []
    for _ in range(8):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    res: dict[str, list[float]] = {}
    for rnd in range(2):
        for name, extra in (("thread", ["--workers", "2"]), ("in_training_thread",
                                                             ["--workers", "0"]),
                            ("thread_noaug", ["--workers", "2", "--no-augment"])):
            res.setdefault(name, []).append(run(name, extra))
        res.setdefault("harness", []).append(harness_step())
        print(rnd, {k: [round(v, 3) for v in vs] for k, vs in res.items()}, flush=True)


if __name__ == "__main__":
    main()
