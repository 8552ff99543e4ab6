"""Pick the fastest of a few ways to run the same work, by measuring it once per machine and
configuration, and remember the answer (``$LKMSEG_CACHE/autotune.json``).

Used for training (precision x memory layout, ``lkmseg.train.runtime``) and inference (the
torch engine's layout and precision). Candidates are timed interleaved, round-robin, so a
machine that gets busier during the measurement does not favour the one measured first.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from lkmseg import timing
from lkmseg.files.cache import cache_root, read_json, update_json
from lkmseg.files.layout import AUTOTUNE
from lkmseg.timing import Clock


def time_candidates(fns: dict[str, Callable[[], None]], budget_s: float, rounds: int = 3,
                    clock: Clock = time.perf_counter) -> dict[str, float]:
    """Best seconds per call of each candidate. One warm-up call each (not counted), then up
    to ``rounds`` interleaved timed calls each; rounds after the first are skipped once
    ``budget_s`` (the whole measurement, warm-up included) is spent."""
    start = clock()
    probes = {k: timing.Probe(fn, clock=clock) for k, fn in fns.items()}
    for p in probes.values():
        p.warm()
    timing.interleave(probes, rounds=rounds, budget_s=budget_s, start=start, clock=clock)
    return {k: p.best() for k, p in probes.items()}


def fastest(seconds: dict[str, float]) -> str:
    """The candidate with the lowest time; ties go to the first listed."""
    return min(seconds, key=lambda k: (seconds[k], list(seconds).index(k)))


def cache_file() -> Path:
    return cache_root() / AUTOTUNE


def key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True)


def cached(key: dict, path: str | os.PathLike | None = None) -> dict | None:
    """The stored record for ``key`` (a dict), or None."""
    rec = read_json(Path(path or cache_file())).get(key_text(key))
    return rec if isinstance(rec, dict) else None


def remember(key: dict, record: dict, path: str | os.PathLike | None = None) -> None:
    """Store ``record`` under ``key`` (under the file's lock: records other processes store
    meanwhile are kept); a cache that cannot be written only costs a re-measurement."""
    rec = {**record, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    update_json(Path(path or cache_file()), lambda data: {**data, key_text(key): rec})
