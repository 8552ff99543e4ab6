"""The one interleaved timer: several callables timed round-robin (A B C A B C ...), so a
machine that gets busier during the measurement slows every candidate alike.

Used by autotune (training precision x layout, torch inference layout), engine ``auto``,
``bench`` latency and training throughput.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Clock = Callable[[], float]


@dataclass
class Probe:
    """One callable, timed in chunks. A sample is the mean seconds of ``group`` consecutive
    calls; ``sync`` (e.g. a CUDA synchronize) runs before the clock starts and stops."""

    fn: Callable[[], object]
    group: int = 1
    sync: Callable[[], None] | None = None
    clock: Clock = time.perf_counter
    times: list[float] = field(default_factory=list)

    def warm(self, n: int = 1) -> None:
        for _ in range(n):
            self.fn()
        self._sync()

    def run(self, n: int) -> None:
        for _ in range(n):
            self._sync()
            t0 = self.clock()
            for _ in range(self.group):
                self.fn()
            self._sync()
            self.times.append((self.clock() - t0) / self.group)

    def _sync(self) -> None:
        if self.sync is not None:
            self.sync()

    @property
    def spent(self) -> float:
        return sum(self.times) * self.group

    def median(self) -> float:
        return statistics.median(self.times)

    def best(self) -> float:
        return min(self.times)

    def stats(self) -> dict[str, float]:
        return percentiles(self.times)


def interleave(probes: dict[str, Probe], rounds: int = 3, per_round: int = 1,
               max_seconds: float | None = None, budget_s: float | None = None,
               start: float | None = None, clock: Clock = time.perf_counter,
               progress: Callable[[int, int], None] | None = None) -> None:
    """Run every probe ``per_round`` times in each of ``rounds`` round-robin passes.

    ``max_seconds``: a probe's whole time; a slow probe gets fewer samples per round (never
    fewer than one). ``budget_s``: wall time for the whole measurement since ``start`` (default
    now); rounds after the first are skipped once it is spent."""
    start = clock() if start is None else start
    for r in range(rounds):
        if r and budget_s is not None and clock() - start > budget_s:
            break
        for p in probes.values():
            p.run(_samples(p, per_round, max_seconds, rounds - r))
        if progress:
            progress(r + 1, rounds)


def _samples(p: Probe, per_round: int, max_seconds: float | None, rounds_left: int) -> int:
    """How many more samples ``p`` takes this round; the first sample sizes a slow probe."""
    if max_seconds is None:
        return per_round
    n = per_round
    if not p.times:
        p.run(1)
        n -= 1
    left = (max_seconds - p.spent) / max(rounds_left, 1)
    fit = int(left / max(statistics.median(p.times) * p.group, 1e-9))
    return max(0, min(n, fit)) if n < per_round else max(1, min(n, fit))


def percentiles(times_s: list[float]) -> dict[str, float]:
    """Milliseconds: p50, p90, p99, mean, and the number of samples."""
    a = np.array(times_s) * 1000
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()),
            "n": int(a.size)}
