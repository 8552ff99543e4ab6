"""Why a finished `--nproc 2` run could exit 1: gloo's threads outlive destroy_process_group.

DDP imports torch._dynamo, which imports torch.distributed.nn.functional, whose functions keep
``group.WORLD`` in their default arguments. Imported after ``init_process_group``, that holds
the process group for good: ``destroy_process_group`` cannot free it, its gloo threads still
run while the interpreter exits, and now and then a process aborts there ("terminate called
without an active exception", SIGABRT; the launcher then SIGTERMs the other one).
``lkmseg.train.runtime.init_distributed`` imports those modules before the group exists.

This runs a minimal DDP program (5 steps, then exit; rank 0 exits 0.3 s later, as rank 0 does
after its last evaluation) N times each way under ``torchrun --nproc-per-node 2`` and counts
the runs that failed, with the threads each process still had at exit:

    python experiments/2026-12-03-ddp-exit-race/ddp_exit_repro.py --runs 40 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = '''
import glob, os, sys, time
import torch, torch.distributed as dist
from torch import nn
if sys.argv[1] == "import-first":
    import torch._dynamo  # what lkmseg does
dist.init_process_group("gloo")
model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
opt = torch.optim.SGD(model.parameters(), 0.1)
for _ in range(5):
    model(torch.rand(2, 3, 8, 8)).sum().backward()
    opt.step()
del model, opt
if os.environ["RANK"] == "0":
    time.sleep(0.3)
dist.destroy_process_group()
names = sorted(open(p).read().strip() for p in glob.glob("/proc/self/task/*/comm"))
print("threads at exit:", " ".join(names), flush=True)
'''


def run_once(script: Path, mode: str) -> tuple[bool, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node", "2", str(script), mode], env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    out = p.stdout + p.stderr
    threads = next((x.split(":", 1)[1].strip() for x in out.splitlines()
                    if "threads at exit:" in x), "?")
    return p.returncode == 0 and "terminate called" not in out, threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=40, help="runs of each variant")
    ap.add_argument("--json", type=Path, help="also write the counts here")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "worker.py"
        script.write_text(WORKER)
        for mode in ("import-after", "import-first"):
            t0, failed, threads = time.perf_counter(), 0, set()
            for i in range(a.runs):
                ok, th = run_once(script, mode)
                failed += not ok
                threads.add(th)
                print(f"{mode}: run {i + 1}/{a.runs} {'ok' if ok else 'FAILED'}", flush=True)
            rows.append({"variant": mode, "runs": a.runs, "failed": failed,
                         "threads_at_exit": sorted(threads),
                         "seconds": round(time.perf_counter() - t0, 1)})
    print("| variant | runs | failed | threads at exit |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['runs']} | {r['failed']} | "
              f"{'; '.join(r['threads_at_exit'])} |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
