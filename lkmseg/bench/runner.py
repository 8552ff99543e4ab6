"""`lkmseg bench`: every model x engine x precision x batch size, in one process, on the
same inputs.

A row (docs/measuring.md): model, block, kernel, engine, status, params, gflops, file_mb,
dice, latency_ms_p50, latency_ms_p99, fps, train_images_per_s — plus precision, batch,
latency_ms_p90, dice_kind, agreement (mask Dice vs torch fp32), mem_mb, gflops_per_s,
frac_of_peak (of the matmul peak measured in this run for the row's precision), device and file
sizes. Rows: torch fp32/bf16, onnxruntime fp32/fp16/int8, openvino fp32/bf16/int8, tensorrt
fp32/fp16/int8. A row that cannot run here is "skipped: why"; a present file that fails, or a
row outside its accuracy gate, is "failed: why" (``bench/rows.py``), never a crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lkmseg import devices, timing
from lkmseg.bench import rows as rowlib
from lkmseg.bench.inputs import BenchInputs, load_inputs
from lkmseg.bench.measure import gflops_per_image, rss_mb
from lkmseg.bench.peaks import measure_peaks, peak_for
from lkmseg.config import RunConfig
from lkmseg.data.transforms import postprocess, preprocess
from lkmseg.errors import UserError
from lkmseg.files.layout import BEST, ENGINE_FILE, ONNX_FILES
from lkmseg.metrics import mean_dice
from lkmseg.models import build_model, count_params

ENGINE_PRECISIONS = rowlib.ENGINE_PRECISIONS


@dataclass
class BenchOptions:
    engines: list[str] = field(default_factory=lambda: ["torch", "onnxruntime", "openvino",
                                                        "tensorrt"])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    size: tuple[int, int] | None = None  # default: each model's training size
    device: str = "auto"
    train: bool = True
    reps: int = 30
    rounds: int = 3  # round-robin passes the reps are spread over (more = finer interleaving)
    max_seconds: float = 20.0  # per latency probe
    limit: int = 32  # images used for Dice
    export_missing: bool = True
    dice_tolerance: float = 0.005  # reduced-precision rows: max Dice drop vs fp32
    tf32: bool = False  # also a torch row with TF32 on for cuDNN and matmuls (CUDA)


@dataclass
class Model:
    run_dir: Path
    name: str
    cfg: RunConfig


def _device(opts: BenchOptions) -> str:
    return str(devices.torch_device(opts.device))


def _combos(opts: BenchOptions, device: str) -> list[tuple[str, str]]:
    return rowlib.combos(opts.engines, device, opts.tf32)


def _file_mb(p: Path | None) -> float | None:
    return round(p.stat().st_size / 1e6, 3) if p and p.is_file() else None


def _files(run: Path) -> dict[str, float | None]:
    ex = run / "export"
    return {"safetensors_mb": _file_mb(run / BEST),
            "onnx_mb": _file_mb(ex / ONNX_FILES["fp32"]),
            "onnx_fp16_mb": _file_mb(ex / ONNX_FILES["fp16"]),
            "onnx_int8_mb": _file_mb(ex / ONNX_FILES["int8"]),
            "engine_mb": _file_mb(ex / ENGINE_FILE)}


def _engine_file_mb(run: Path, eng: str, prec: str) -> float | None:
    return _file_mb(rowlib.model_file(run, eng, prec))


def _ensure_export(run: Path, opts: BenchOptions, console) -> None:
    """Export a run that has no ONNX yet (fp32, fp16 and the gated INT8) for the ONNX rows."""
    ex = run / "export"
    if not opts.export_missing or not {"onnxruntime", "openvino"} & set(opts.engines):
        return
    if (ex / ONNX_FILES["fp32"]).is_file():
        return
    from lkmseg.export.pipeline import ExportOptions, export_run

    if console:
        console.print(f"exporting {run} to ONNX (fp32, fp16, int8) for the onnxruntime and "
                      "openvino rows…")
    export_run(run, ExportOptions(fp16=True, trt=False), strict=False)


def _dice_for(engine, model_cfg: RunConfig, inputs: BenchInputs, size, batch: int,
              ref_masks: list[np.ndarray] | None) -> tuple[float | None, list[np.ndarray]]:
    preds: list[np.ndarray] = []
    for s in range(0, len(inputs.images), batch):
        imgs = inputs.images[s:s + batch]
        logits = engine(preprocess(imgs, size).numpy())
        preds += postprocess(logits, [im.shape[:2] for im in imgs], model_cfg.threshold)
    target = inputs.masks if inputs.has_masks else ref_masks
    if target is None:
        return None, preds
    return mean_dice(preds, target), preds


def _base_row(m: Model, files: dict, eng: str, prec: str, device: str) -> dict:
    return {"model": m.name, "block": m.cfg.model.block, "kernel": m.cfg.model.spec.kernel,
            "family": m.cfg.model.spec.family, "engine": eng, "precision": prec,
            "device": device, "status": "ok", **files}


def _measure_engine(m: Model, eng_name: str, prec: str | None, opts: BenchOptions,
                    device: str, inputs: BenchInputs, ref, size) -> tuple[object, dict]:
    """Load one engine, compute its Dice/agreement and memory; returns (engine, figures)."""
    from lkmseg.engines.factory import load_engine

    rss0 = rss_mb()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    eng = load_engine(eng_name, m.run_dir, precision=prec, device=device)
    dice, preds = _dice_for(eng, m.cfg, inputs, size, max(opts.batch_sizes), ref)
    mem = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" and eng_name == "torch"
           else max(0.0, rss_mb() - rss0))
    return eng, {"dice": dice, "preds": preds, "mem_mb": round(mem, 1),
                 "precision": getattr(eng, "precision", prec) or prec,
                 "engine_detail": eng.describe()}


def bench(runs: list[Path], source: Path | None, opts: BenchOptions,
          console=None) -> tuple[list[dict], dict]:
    """Measure every run x engine x batch size; returns (rows, context)."""
    device = _device(opts)
    from lkmseg.config import load_config

    models = [Model(Path(r), Path(r).name, load_config(r)) for r in runs]
    if not models:
        raise UserError("no runs to benchmark; train some with `lkmseg train` or "
                        "`lkmseg compare`")
    inputs = load_inputs(source, models[0].cfg, opts.limit)
    ctx = {"device": device, "inputs": inputs.origin, "n_images": len(inputs.images),
           "dice_kind": "ground truth" if inputs.has_masks else "agreement with torch fp32",
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
           "threads": torch.get_num_threads(), **_machine(device), "load_before": _load()}
    ctx["peaks"] = measure_peaks(device, opts.engines, torch.get_num_threads())
    ctx["peak_gflops"] = ctx["peaks"]["fp32"]
    if device == "cuda":
        ctx["peak_gflops_fp16"] = ctx["peaks"]["fp16"]
        ctx["gpu"] = torch.cuda.get_device_name()
    for m in models:
        _ensure_export(m.run_dir, opts, console)
    train_ips = _train_throughput(models, opts, device, console) if opts.train else {}
    rows, probes = [], {}
    for m in models:
        rows += _load_model_engines(m, opts, device, inputs, probes, console)
    if console:
        console.print(f"timing {len(probes)} engine/batch configurations, interleaved…")
    timing.interleave(probes, rounds=opts.rounds, per_round=max(1, opts.reps // opts.rounds),
                      max_seconds=opts.max_seconds)
    for r in rows:
        _finish_row(r, probes, train_ips, ctx)
    ctx["load_after"] = _load()
    return rows, ctx


def _machine(device: str) -> dict:
    """The machine (CPU model and flags, cores, memory, library versions, see
    ``hw.machine_info``) and the OpenMP wait policy torch's threads run with: on a busy machine
    the default (spinning) policy can make PyTorch eager several times slower than PASSIVE, so
    a torch-relative figure means little without it."""
    import os

    from lkmseg.hw import describe_isa, machine_info

    info = machine_info(device)
    return {"machine": info, "cpu": info["cpu"], "cpu_flags": describe_isa(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}


def _load() -> list[float] | None:
    """1/5/15-minute load averages: a busy machine slows every row (rounds are interleaved,
    so ratios hold better than absolute times)."""
    import os

    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _train_throughput(models: list[Model], opts: BenchOptions, device: str,
                      console) -> dict[str, float]:
    """Training images/s in each run's own training configuration, models interleaved."""
    from lkmseg.bench.throughput import measure_training

    by_cfg: dict[tuple, list[Model]] = {}
    for m in models:  # models trained at the same size/batch are measured together
        by_cfg.setdefault((m.cfg.size, m.cfg.train.batch_size), []).append(m)
    out = {}
    for (size, bs), group in by_cfg.items():
        if console:
            console.print(f"measuring training throughput at {size[0]}x{size[1]}, batch {bs} "
                          f"({', '.join(g.name for g in group)}), interleaved…")
        res = measure_training({g.name: g.cfg.model for g in group}, size, bs, rounds=4,
                               device=device, tcfg=group[0].cfg.train)
        out.update({k: round(v.images_per_s, 2) for k, v in res.items()})
    return out


def _load_model_engines(m: Model, opts: BenchOptions, device: str, inputs: BenchInputs,
                        probes: dict, console) -> list[dict]:
    size = opts.size or m.cfg.size
    net = build_model(m.cfg.model)
    static = {"params": count_params(net), "gflops": round(gflops_per_image(net, size), 3),
              "size": f"{size[0]}x{size[1]}", "dice_kind": "gt" if inputs.has_masks else
              "agreement"}
    files = _files(m.run_dir)
    ref: dict = {}  # torch fp32: "preds" (masks) and "dice"
    rows = []
    for eng_name, prec in _combos(opts, device):
        base = {**_base_row(m, files, eng_name, prec, device), **static,
                "file_mb": _engine_file_mb(m.run_dir, eng_name, prec)}
        verdict = rowlib.before_loading(m.run_dir, eng_name, prec, device)
        if not verdict.ok:
            rows.append({**base, "status": verdict.status, "failure": verdict.kind,
                         "batch": None})
            continue
        try:
            eng, fig = _measure_engine(m, eng_name, prec, opts, device, inputs,
                                       ref.get("preds"), size)
        except UserError as e:  # the file is there (checked above) but does not load or run
            rows.append({**base, "status": f"failed: {e}", "failure": "file", "batch": None})
            continue
        rows += _timed_rows(m, eng, fig, base, ref, opts, inputs, size, probes)
        if console:
            console.print(f"  {m.name}: {eng.describe()} ready (dice {fig['dice']})")
    return rows


def _timed_rows(m: Model, eng, fig: dict, base: dict, ref: dict, opts: BenchOptions,
                inputs: BenchInputs, size, probes: dict) -> list[dict]:
    """Agreement with torch fp32, the accuracy gate, and one latency probe per batch size."""
    preds = fig.pop("preds")
    if base["engine"] == "torch" and base["precision"] == "fp32":
        ref.update(preds=preds, dice=fig["dice"] if inputs.has_masks else None)
        if not inputs.has_masks:
            fig["dice"] = 1.0
    fig["agreement"] = mean_dice(preds, ref["preds"]) if "preds" in ref else None
    verdict = rowlib.dice_gate(fig["dice"] if inputs.has_masks else None, ref.get("dice"),
                               base["precision"], opts.dice_tolerance)
    out = []
    for bs in opts.batch_sizes:
        x = preprocess([inputs.images[i % len(inputs.images)] for i in range(bs)],
                       size).numpy()
        key = f"{m.name}|{base['engine']}|{fig['precision']}|{bs}"
        probes[key] = timing.Probe(lambda e=eng, x=x: e(x))
        probes[key].warm(3)
        out.append({**base, **fig, "batch": bs, "probe": key, "status": verdict.status,
                    "failure": verdict.kind})
    return out


def _finish_row(r: dict, probes: dict, train_ips: dict, ctx: dict) -> None:
    r["train_images_per_s"] = train_ips.get(r["model"])
    key = r.pop("probe", None)
    if key is None:
        return
    st = probes[key].stats()
    r.update(latency_ms_p50=round(st["p50"], 3), latency_ms_p90=round(st["p90"], 3),
             latency_ms_p99=round(st["p99"], 3), reps=st["n"],
             fps=round(r["batch"] / (st["p50"] / 1000), 2))
    peak = peak_for(ctx["peaks"], r["precision"], r["device"])
    r["gflops_per_s"] = round(r["gflops"] * r["fps"], 1)
    r["peak_gflops"] = peak
    r["frac_of_peak"] = float(f"{r['gflops'] * r['fps'] / peak:.4g}") if peak else None
