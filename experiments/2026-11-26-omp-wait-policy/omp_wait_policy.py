"""PyTorch eager latency (batch 1) under OpenMP's default wait policy vs OMP_WAIT_POLICY=PASSIVE,
alternating fresh processes (the policy is read once, when libgomp starts). On a machine shared
with other jobs, spinning OpenMP threads can make torch several times slower.

    python benchmarks/omp_wait_policy.py RUN [--pairs 3] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import sys, time, numpy as np
from lkmseg.engines import load_engine
x = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
eng = load_engine("torch", sys.argv[1], precision="fp32", device="cpu")
for _ in range(3):
    eng(x)
ts = []
for _ in range(30):
    t0 = time.perf_counter(); eng(x); ts.append((time.perf_counter() - t0) * 1000)
print(float(np.median(ts)))
"""


def once(run: Path, policy: str | None) -> float:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD, str(run)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    res = {"run": str(a.run), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "load_before": os.getloadavg(), "default_ms": [], "passive_ms": []}
    for _ in range(a.pairs):
        res["default_ms"].append(round(once(a.run, None), 2))
        res["passive_ms"].append(round(once(a.run, "PASSIVE"), 2))
    res["load_after"] = os.getloadavg()
    print(json.dumps(res, indent=2))
    if a.out:
        a.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
