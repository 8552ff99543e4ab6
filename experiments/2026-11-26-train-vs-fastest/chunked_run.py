"""A `lkmseg train` run trained in chunks of wall time (stopped with Ctrl-C, which
checkpoints, then resumed), so that other work can be interleaved with it: the benchmarks
that compare runs, or a run with in-process measurements, use it to expose both sides to the
same machine load. Resuming is exact (batches are a function of the step) and keeps the
run's precision and layout; start-up (data loading, the one-off precision/layout measurement)
is not part of a chunk: its clock starts when the run's train_log.csv grows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lkmseg.train.logs import read_csv


class ChunkedRun:
    def __init__(self, run: Path, first_args: list[str], budget_s: float) -> None:
        """``first_args``: `lkmseg train` options of the first chunk (including --out and
        --name, which must make ``run``); ``budget_s``: its --time-budget."""
        self.run, self.budget_s = Path(run), budget_s
        self.first = [sys.executable, "-m", "lkmseg", "train", *first_args]
        self.log = self.run.parent / f"{self.run.name}.log"
        self.chunks = 0
        self.wall_s = 0.0
        self.load_avg: list[float] = []  # 1-minute load average at the end of each chunk

    def done(self) -> bool:
        s = self.run / "summary.json"
        return s.is_file() and json.loads(s.read_text()).get("status") == "complete"

    def summary(self) -> dict:
        return json.loads((self.run / "summary.json").read_text())

    def train(self, chunk_s: float) -> None:
        """Train for about ``chunk_s`` s (0: to the end of the budget)."""
        cmd = self.first if self.chunks == 0 else [sys.executable, "-m", "lkmseg", "train",
                                                   "--resume", str(self.run)]
        self.run.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(self.log, "a") as log:
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            if chunk_s:
                self._stop_after(p, chunk_s)
            p.wait()
        self.wall_s += time.perf_counter() - t0
        self.chunks += 1
        self.load_avg.append(round(os.getloadavg()[0], 2))
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}); see {self.log}")

    def _stop_after(self, p: subprocess.Popen, chunk_s: float) -> None:
        log = self.run / "train_log.csv"
        size0 = log.stat().st_size if log.is_file() else 0
        while p.poll() is None and (not log.is_file() or log.stat().st_size <= size0):
            time.sleep(0.2)
        try:
            p.wait(timeout=chunk_s)
        except subprocess.TimeoutExpired:
            if self._left_s(log) > 10:  # else let it finish (and run its final evaluation)
                p.send_signal(signal.SIGINT)  # checkpoint and stop; resumed next chunk

    def _left_s(self, log: Path) -> float:
        rows = read_csv(log)
        return self.budget_s - (rows[-1]["elapsed_s"] if rows else 0.0)
