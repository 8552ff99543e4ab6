"""``auto``: the fastest engine x precision measured on this machine, among those with a model
file and inside export's accuracy gate.

At first use every candidate is loaded and timed for a few interleaved calls on one input of
the model's size (batch 1); the winner is cached per machine (CPU model + flags), model files
(path, size, mtime) and input size in ``$LKMSEG_CACHE/auto/``, so later calls load only the
winner. What was chosen, and the figures it was chosen on, are in ``engine.auto_choice``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lkmseg import __version__, timing
from lkmseg.engines.base import Engine
from lkmseg.engines.source import ModelSource
from lkmseg.errors import UserError
from lkmseg.files.cache import cache_root, read_json, update_json
from lkmseg.files.export_report import gate_verdict, read_report, varies
from lkmseg.hw import cpu_key, library_versions

Candidate = tuple[str, str | None, str]  # engine, precision, device
CACHE_VERSION = 1


def candidate_files(src: ModelSource, name: str, prec: str | None) -> list[Path]:
    """The model files a candidate reads (for the cache key and "present?")."""
    if name == "torch":
        return [src.weights] if src.weights else []
    if name == "tensorrt":
        return [src.engine] if src.engine else []
    key = "int8" if prec == "int8" else ("fp16" if prec == "fp16" and name == "onnxruntime"
                                         else "fp32")
    return [src.onnx[key]] if key in src.onnx else []


def _export_dir(src: ModelSource) -> Path | None:
    if src.onnx:
        return next(iter(src.onnx.values())).parent
    if src.engine is not None:
        return src.engine.parent
    return None


def gated(src: ModelSource, cands: list[Candidate]) -> tuple[list[Candidate], list[str]]:
    """Keep the candidates export found accurate enough; say why the others were dropped.
    A single model file named by the user runs in its own precision (their choice), never
    in another one export did not check (bf16 from an fp32 file)."""
    if src.kind in ("onnx", "tensorrt"):
        keep = [c for c in cands if c[1] in (None, *src.onnx)]
        return keep, [f"{c[0]} {c[1]}: not checked for a single file; pass the run folder "
                      "to use export's accuracy gate" for c in cands if c not in keep]
    folder = _export_dir(src)
    report = read_report(folder) if folder else None
    keep, notes = [], []
    for name, prec, dev in cands:
        why = varies(report, name, prec or "fp32")
        if why is not None:
            notes.append(f"{name} {prec or 'fp32'}: {why}")
            continue
        if prec in (None, "fp32") or (prec == "fp16" and name in ("torch", "tensorrt")):
            keep.append((name, prec, dev))  # the reference / GPU autocast: parity-checked paths
            continue
        ok, why = gate_verdict(report, name, prec)
        if ok:
            keep.append((name, prec, dev))
        else:
            notes.append(f"{name} {prec}: {why}")
    return keep, notes


def _versions() -> str:
    runtimes = ("torch", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt")
    return ",".join(f"{k}={v}" for k, v in library_versions(runtimes).items())


def cache_key(src: ModelSource, cands: list[Candidate], size: tuple[int, int],
              options: str = "") -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}|{__version__}|{cpu_key()}|{_versions()}|"
                     f"{size[0]}x{size[1]}|{options}".encode())
    for name, prec, dev in cands:
        h.update(f"|{name}/{prec}/{dev}".encode())
        for f in candidate_files(src, name, prec):
            st = f.stat()
            h.update(f"|{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def cache_file(key: str) -> Path:
    return cache_root() / "auto" / f"{key}.json"


def read_cached(key: str) -> dict | None:
    d = read_json(cache_file(key))
    return d if "choice" in d and "ms" in d else None


def measure(engines: dict[str, Engine], x: np.ndarray, rounds: int = 3, reps: int = 3,
            budget_s: float = 0.3) -> dict[str, float]:
    """Median milliseconds per call of each engine: a warm-up call (compiles, allocates), then
    ``rounds`` interleaved passes of up to ``reps`` calls; a slow candidate gets fewer calls
    per pass (about ``budget_s`` each), never fewer than one."""
    probes = {k: timing.Probe(lambda e=eng: e(x)) for k, eng in engines.items()}
    for p in probes.values():
        p.warm()
    timing.interleave(probes, rounds=rounds, per_round=reps, max_seconds=budget_s * rounds)
    return {k: 1000 * p.median() for k, p in probes.items()}


def label(c: Candidate) -> str:
    return f"{c[0]} {c[1] or ''}".strip()


def explain(choice: str, ms: dict[str, float], size: tuple[int, int], when: str) -> str:
    ranked = sorted(ms.items(), key=lambda kv: kv[1])
    figures = ", ".join(f"{k} {v:.2f} ms" for k, v in ranked)
    return (f"auto chose {choice}: fastest of {len(ms)} measured on this machine at "
            f"{size[0]}x{size[1]}, batch 1 ({when}): {figures}")


def choose(src: ModelSource, cands: list[Candidate], load: Callable[[Candidate], Engine],
           size: tuple[int, int], skipped: list[str], options: str = "") -> Engine:
    """Load the cached winner, or measure every candidate and cache the winner (per engine
    ``options`` too: one thread per serve instance can rank the engines otherwise)."""
    by_label = {label(c): c for c in cands}
    key = cache_key(src, cands, size, options)
    cached = read_cached(key)
    if cached and cached["choice"] in by_label:
        try:
            eng = load(by_label[cached["choice"]])
        except UserError as e:
            skipped.append(f"{cached['choice']}: {e} (cached choice; measuring again)")
        else:
            eng.auto_choice = explain(cached["choice"], cached["ms"], size,
                                      f"cached from {cached.get('date', '?')}")
            return eng
    engines: dict[str, Engine] = {}
    for c in cands:
        try:
            engines[label(c)] = load(c)
        except UserError as e:
            skipped.append(f"{label(c)} {c[2]}: {e}")
    if not engines:
        raise UserError(f"no engine can run {src.path} here ({'; '.join(skipped)})")
    x = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    ms = measure(engines, x) if len(engines) > 1 else {}
    best = min(ms, key=ms.__getitem__) if ms else next(iter(engines))
    for k, eng in engines.items():
        if k != best:
            eng.close()
    eng = engines[best]
    eng.reset_stats()
    if ms:  # a cache that cannot be written is said once; the engine runs all the same
        rec = {"choice": best, "ms": ms, "size": list(size),
               "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        update_json(cache_file(key), lambda _old: rec)
        eng.auto_choice = explain(best, ms, size, "measured now")
    else:
        eng.auto_choice = f"auto chose {best}: the only candidate that loads here"
    return eng

