"""The GPU benchmark in one prepared run: training images/s and inference latency of the
seed's blocks (3x3, 5x5, 1x5), written as JSON with the device name, versions and date.

    bash benchmarks/gpu.sh                                    # on the GPU machine (< 8 min)
    PYTHONPATH=. python benchmarks/gpu_bench.py --device cpu --tiny   # the code path, seconds

Parts, each in its own try/except (an error is recorded in the JSON and the next part
runs), all under one wall-clock budget (--budget; a part that would not fit is skipped
with the reason):
  train          training images/s at --size (512) of every block in every precision: fp32
                 (TF32 off), tf32, bf16 (only where native: compute capability >= 8.0), fp16
                 (+ GradScaler); channels_last; interleaved round by round; peak memory
  infer_torch    latency of one image in the same precisions, timed with CUDA events
  onnxruntime    the same models exported to ONNX, on every ONNX Runtime path present: CPU,
                 CUDA fp32 (use_tf32=0) and tf32, TensorRT provider fp32 and fp16
  train_compile  the training measurement again with torch.compile (compile time apart)
  tensorrt       native TensorRT engines (fp32 with TF32 off, tf32, fp16) built from the ONNX
                 files, run on a stream of their own, where TensorRT is installed

"fp32" is true fp32 everywhere it can be switched (torch's cuDNN convolutions use TF32 by
default; TensorRT enables TF32 by default); ONNX Runtime's TensorRT provider has no TF32
switch, so its fp32 rows may use TF32 (said in the JSON).

Needs only torch (and onnx + onnxruntime for the ONNX part): it imports nothing from lkmseg
but the model definitions and the loss, which need torch alone, so safetensors, rich,
onnxslim, onnxscript or tensorrt may all be missing. The JSON is rewritten after every part,
so a run killed by the outer guard still leaves what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# torch-only modules: nothing here needs safetensors, rich, onnx or OpenCV
from lkmseg.models import ModelConfig, build_model, count_params  # noqa: E402
from lkmseg.train.losses import bce_dice_loss  # noqa: E402

PARTS = ("train", "infer_torch", "onnxruntime", "train_compile", "tensorrt")
# rough seconds each part needs at full size on one GPU: used to skip what cannot fit
NEEDS = {"train": 40, "infer_torch": 20, "onnxruntime": 40, "train_compile": 90,
         "tensorrt": 60}


class Skip(Exception):
    """A part (or a row) that cannot run here; the message says why."""


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def need(self, seconds: float, what: str) -> None:
        if self.left() < seconds:
            raise Skip(f"time budget: {max(self.left(), 0):.0f} s left, {what} needs "
                       f"~{seconds:.0f} s")


# ----------------------------------------------------------------------------- context


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 — not installed, or installed oddly: report None
        return None


def _importable(module: str) -> tuple[bool, str | None]:
    try:
        __import__(module)
        return True, None
    except Exception as e:  # noqa: BLE001 — ImportError, or a broken install
        return False, f"{type(e).__name__}: {e}"


def _run(cmd: list[str]) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: torch.device) -> dict:
    info = {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(), "platform": platform.platform(),
        "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cudnn": None, "device": str(device),
        "device_name": f"cpu ({torch.get_num_threads()} threads)", "git_commit":
            _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "packages": {m: _version(m) for m in ("onnx", "onnxruntime", "onnxruntime-gpu",
                                               "onnxscript", "onnxslim", "tensorrt",
                                               "tensorrt-cu12", "tensorrt-cu13",
                                               "safetensors", "rich", "numpy")},
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(device_name=torch.cuda.get_device_name(device),
                    capability=f"{p.major}.{p.minor}",
                    memory_gib=round(p.total_memory / 2**30, 1),
                    cudnn=torch.backends.cudnn.version(), native_bf16=native_bf16(device),
                    tf32_defaults={"matmul": torch.backends.cuda.matmul.allow_tf32,
                                   "cudnn": torch.backends.cudnn.allow_tf32},
                    driver=_run(["nvidia-smi", "--query-gpu=driver_version",
                                 "--format=csv,noheader"]))
    return info


class Results:
    """The JSON document, rewritten atomically after every part."""

    def __init__(self, path: Path, meta: dict, args: dict) -> None:
        self.path = path
        self.doc = {"meta": meta, "args": args, "parts": {}}

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[dict]:
        entry: dict = {"status": "running"}
        self.doc["parts"][name] = entry
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            yield entry
            entry["status"] = "ok"
        except Skip as e:
            entry.update(status="skipped", reason=str(e))
        except Exception as e:  # noqa: BLE001 — record it and go on with the next part
            entry.update(status="error", error=f"{type(e).__name__}: {e}",
                         traceback=traceback.format_exc(limit=6)[-3000:])
        finally:
            entry["seconds"] = round(time.perf_counter() - t0, 2)
            if entry["status"] != "ok":
                print(f"   {entry['status']}: {entry.get('reason') or entry.get('error')}",
                      flush=True)
            _free()
            self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                   dir=self.path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(self.doc, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, self.path)


def _free() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _row(block: str, fn: Callable[[], dict]) -> dict:
    """One measurement; its failure becomes an error row, the others still run."""
    try:
        return {"block": block, **fn()}
    except Skip as e:
        return {"block": block, "skipped": str(e)}
    except Exception as e:  # noqa: BLE001 — recorded in the JSON
        return {"block": block, "error": f"{type(e).__name__}: {e}"}
    finally:
        _free()


def _quantiles(ms: list[float]) -> dict:
    s = sorted(ms)

    def q(p: float) -> float:
        return s[min(len(s) - 1, max(0, math.ceil(p * len(s)) - 1))]

    return {"n": len(s), "latency_ms_p50": round(q(0.5), 4), "latency_ms_p90": round(q(0.9), 4),
            "latency_ms_p99": round(q(0.99), 4), "latency_ms_mean": round(statistics.fmean(s), 4),
            "fps": round(1000.0 / statistics.median(s), 2)}


# ----------------------------------------------------------------------------- training

# precision name -> (autocast dtype or None, TF32 allowed). "fp32" is true fp32: torch lets
# cuDNN convolutions use TF32 by default (torch.backends.cudnn.allow_tf32), while TensorRT fp32
# engines here clear TF32, so fp32 rows turn it off and "tf32" rows measure it on.
PRECISIONS = {"fp32": (None, False), "tf32": (None, True), "bf16": (torch.bfloat16, False),
              "fp16": (torch.float16, False)}


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def native_bf16(device: torch.device) -> bool:
    """bf16 tensor cores exist from compute capability 8.0 (Ampere). torch.cuda.
    is_bf16_supported() also says True on T4/V100, where bf16 is emulated (slow)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8


class Cfg:
    """What to measure, from the command line (full size or --tiny)."""

    def __init__(self, a: argparse.Namespace, device: torch.device) -> None:
        self.device = device
        self.blocks = [b.strip() for b in a.blocks.split(",") if b.strip()]
        self.size = a.size if not a.tiny else 64
        self.width, self.depth = (8, 6) if not a.tiny else (4, 3)
        self.batch = a.batch if not a.tiny else 2
        self.rounds = a.rounds if not a.tiny else 2
        self.steps = a.steps if not a.tiny else 2  # timed steps per block per round
        self.warmup = 3 if not a.tiny else 1
        self.iters = a.iters if not a.tiny else 5  # inference repetitions (at most)
        self.tiny = a.tiny
        self.compile_backend = a.compile_backend or ("eager" if a.tiny else "inductor")
        self.cuda = device.type == "cuda"
        # channels_last: the GPU layout; on CPU it made this U-Net's small eval passes 40x
        # slower (torch 2.13, oneDNN), so the CPU code path runs contiguous
        self.memory_format = torch.channels_last if self.cuda else torch.contiguous_format
        if self.cuda:
            self.precisions = ["fp32", "tf32", "fp16"]
            if native_bf16(device):
                self.precisions.insert(2, "bf16")
            self.compile_precision = "bf16" if native_bf16(device) else "fp16"
        else:  # CPU: fp32, and bf16 to run that code path (--tiny)
            self.precisions = ["fp32", "bf16"] if a.tiny else ["fp32"]
            self.compile_precision = "bf16" if a.tiny else "fp32"

    def model(self, block: str) -> torch.nn.Module:
        return build_model(ModelConfig(block=block, width=self.width, depth=self.depth))


class Trainee:
    """A block's model, optimizer and a fixed random batch, ready to take steps."""

    def __init__(self, cfg: Cfg, block: str, precision: str, batch: int, compile_: bool) -> None:
        self.cfg, self.block, self.batch, dev = cfg, block, batch, cfg.device
        self.precision = precision
        self.amp, self.tf32 = PRECISIONS[precision]
        torch.manual_seed(0)
        self.model = cfg.model(block).to(dev).to(memory_format=cfg.memory_format).train()
        self.params = count_params(self.model)
        self.net = (torch.compile(self.model, backend=cfg.compile_backend) if compile_
                    else self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.scaler = torch.amp.GradScaler(dev.type, enabled=self.amp == torch.float16)
        s = cfg.size
        self.x = torch.rand(batch, 3, s, s, device=dev).contiguous(
            memory_format=cfg.memory_format)
        yy, xx = torch.meshgrid(torch.arange(s, device=dev), torch.arange(s, device=dev),
                                indexing="ij")
        disk = (((yy - s / 2) ** 2 + (xx - s / 2) ** 2) < (s / 3) ** 2).float()
        self.y = disk.expand(batch, 1, s, s).contiguous()

    def step(self) -> None:
        with tf32(self.tf32):
            with torch.autocast(self.cfg.device.type, dtype=self.amp or torch.float32,
                                enabled=self.amp is not None):
                logits = self.net(self.x)
            loss = bce_dice_loss(logits, self.y)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()

    def timed(self, n: int) -> float:
        """Seconds for ``n`` steps (device synchronised)."""
        _sync(self.cfg.device)
        t0 = time.perf_counter()
        for _ in range(n):
            self.step()
        _sync(self.cfg.device)
        return time.perf_counter() - t0


def _make_trainee(cfg: Cfg, block: str, precision: str, compile_: bool,
                  budget: Budget) -> tuple[Trainee, dict]:
    """Build and warm up (compile) a block, halving the batch on out-of-memory."""
    batch = cfg.batch
    while True:
        try:
            t = Trainee(cfg, block, precision, batch, compile_)
            t0 = time.perf_counter()
            t.step()  # first step: cudnn autotuning, or compilation
            first = time.perf_counter() - t0
            for _ in range(cfg.warmup):
                t.step()
            _sync(cfg.device)
            return t, {"batch": batch, "first_step_s": round(first, 2)}
        except torch.cuda.OutOfMemoryError:
            _free()
            if batch == 1:
                raise
            batch //= 2
            print(f"   {block} {precision}: out of memory, batch -> {batch}", flush=True)
        budget.need(1, f"warming up {block}")


def train_part(cfg: Cfg, budget: Budget, entry: dict, compile_: bool) -> None:
    """Images/s of every block and precision, interleaved: round r times each in turn, so
    drifts in clock or temperature hit all alike; the median over rounds is reported."""
    if cfg.cuda:
        torch.backends.cudnn.benchmark = True
    precisions = [cfg.compile_precision] if compile_ else cfg.precisions
    entry.update(size=cfg.size, precisions=precisions, channels_last=cfg.cuda,
                 compile=cfg.compile_backend if compile_ else None)
    ready: dict[tuple[str, str], tuple[Trainee, dict]] = {}
    rows = {}
    need = NEEDS["train_compile" if compile_ else "train"] / (4 * (20 if cfg.tiny else 1))
    for b in cfg.blocks:
        for p in precisions:
            if budget.left() < need:  # measure what is ready, report the others
                rows[b, p] = {"block": b, "precision": p,
                              "skipped": f"time budget: {budget.left():.0f} s left"}
                continue
            rows[b, p] = _row(b, lambda b=b, p=p: _warm(ready, cfg, b, p, compile_, budget))
            rows[b, p]["precision"] = p
    _interleave(cfg, budget, entry, ready, rows)
    ready.clear()
    entry["rows"] = list(rows.values())
    entry["ratios"] = _ratios(rows)


def _interleave(cfg: Cfg, budget: Budget, entry: dict, ready: dict, rows: dict) -> None:
    step_ms: dict[tuple[str, str], list[float]] = {k: [] for k in ready}
    for r in range(cfg.rounds):
        if r and budget.left() < 5:
            entry["rounds_cut"] = f"after {r} rounds: time budget"
            break
        for k, (t, _) in ready.items():
            try:
                step_ms[k].append(1000 * t.timed(cfg.steps) / cfg.steps)
            except Exception as e:  # noqa: BLE001 — one block failing mid-way
                rows[k]["error"] = f"{type(e).__name__}: {e}"
    for k, (t, info) in ready.items():
        ms = step_ms[k]
        if not ms:
            continue
        med = statistics.median(ms)
        rows[k].update(params=t.params, **info, step_ms=[round(x, 3) for x in ms],
                       images_per_s=round(1000 * t.batch / med, 2),
                       images_per_s_best=round(1000 * t.batch / min(ms), 2),
                       peak_memory_mb=(round(torch.cuda.max_memory_allocated(cfg.device) / 2**20)
                                       if cfg.cuda else None))


def _ratios(rows: dict) -> dict:
    ips = {k: r.get("images_per_s") for k, r in rows.items() if r.get("images_per_s")}
    out = {}
    for p in sorted({p for _, p in ips}):
        for a, b in (("1x5", "5x5"), ("1x5", "3x3"), ("5x5", "3x3")):
            if (a, p) in ips and (b, p) in ips:
                out[f"{a}/{b} {p}"] = round(ips[a, p] / ips[b, p], 3)
    return out


def _warm(ready: dict, cfg: Cfg, block: str, precision: str, compile_: bool,
          budget: Budget) -> dict:
    if cfg.cuda:
        torch.cuda.reset_peak_memory_stats(cfg.device)
    t, info = _make_trainee(cfg, block, precision, compile_, budget)
    ready[block, precision] = (t, info)
    return info


# ----------------------------------------------------------------------------- inference


def _time_calls(fn: Callable[[], object], cfg: Cfg, seconds: float,
                events: bool | None = None) -> list[float]:
    """Milliseconds per call: CUDA events (recorded on the current stream) for GPU work
    (``events``, default: on a GPU), perf_counter otherwise; at most ``cfg.iters`` calls or
    ``seconds``, whichever comes first (at least 3)."""
    events = cfg.cuda if events is None else events
    for _ in range(3):
        fn()
    _sync(cfg.device)
    out, t_end = [], time.perf_counter() + seconds
    while len(out) < cfg.iters and (len(out) < 3 or time.perf_counter() < t_end):
        if events:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            out.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            out.append(1000 * (time.perf_counter() - t0))
    return out


def infer_torch_part(cfg: Cfg, budget: Budget, entry: dict) -> None:
    entry.update(size=cfg.size, batch=1, channels_last=cfg.cuda,
                 timer="cuda events" if cfg.cuda else "perf_counter",
                 note="fp32: TF32 off; tf32: TF32 on (torch's default for cuDNN convolutions)")
    rows = []
    per = max(1.0, min(8.0, budget.left() / (3 * len(cfg.blocks) * len(cfg.precisions))))
    for b in cfg.blocks:
        for prec in cfg.precisions:
            budget.need(per, f"torch {prec} {b}")
            rows.append(_row(b, lambda b=b, prec=prec: _infer_torch(cfg, b, prec, per)))
    entry["rows"] = rows


@torch.no_grad()
def _infer_torch(cfg: Cfg, block: str, precision: str, seconds: float) -> dict:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    m = cfg.model(block).eval().to(cfg.device, dtype).to(memory_format=cfg.memory_format)
    x = torch.rand(1, 3, cfg.size, cfg.size, device=cfg.device, dtype=dtype).contiguous(
        memory_format=cfg.memory_format)
    with tf32(PRECISIONS[precision][1]):
        ms = _time_calls(lambda: m(x), cfg, seconds)
    return {"engine": "torch", "precision": precision, **_quantiles(ms)}


def _export_onnx(cfg: Cfg, block: str, path: Path, half: bool = False) -> str:
    """Export eval-mode weights at a fixed 1x3xSxS (``half``: fp16 weights and I/O, for
    TensorRT 11, which takes fp16 only from the graph); returns the exporter used."""
    import logging
    import warnings

    m = cfg.model(block).eval()
    x = torch.rand(1, 3, cfg.size, cfg.size)
    if half:
        m, x = m.half(), x.half()
    for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(None):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(m, (x,), str(path), input_names=["image"],
                              output_names=["logits"], opset_version=18, dynamo=True,
                              external_data=False, verbose=False)
            return "dynamo"
        except Exception as e:  # noqa: BLE001 — e.g. onnxscript missing: the legacy exporter
            first = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        torch.onnx.export(m, (x,), str(path), input_names=["image"],
                          output_names=["logits"], opset_version=17, dynamo=False)
        return f"torchscript (dynamo failed: {first[:200]})"


def onnx_part(cfg: Cfg, budget: Budget, entry: dict, workdir: Path) -> None:
    ok, why = _importable("onnx")
    if not ok:
        raise Skip(f"onnx is not installed ({why})")
    ok, why = _importable("onnxruntime")
    if not ok:
        raise Skip(f"onnxruntime is not installed ({why})")
    import onnxruntime as ort
    from gpu_paths import ort_paths

    paths = ort_paths(ort)
    entry.update(onnxruntime=ort.__version__, available=ort.get_available_providers(),
                 measured=[label for label, _, _ in paths], size=cfg.size, batch=1,
                 timer="perf_counter; GPU providers through IO binding (no host copies)")
    rows = []
    per = max(1.0, min(10.0, budget.left() / (4 * len(cfg.blocks) * len(paths))))
    for b in cfg.blocks:
        path = workdir / f"{b}.onnx"
        budget.need(5, f"exporting {b}")
        info = _row(b, lambda b=b, path=path: {"exporter": _export_onnx(cfg, b, path),
                                                "onnx_mb": round(path.stat().st_size / 2**20, 3)})
        if "error" in info:
            rows.append(info)
            continue
        for label, providers, prec in paths:
            budget.need(per * (4 if "TensorRT" in label else 1), f"{label} {b}")
            rows.append(_row(b, lambda path=path, lp=(label, providers, prec), info=info: {
                **info, **_infer_ort(ort, path, lp, cfg, per)}) | {"block": b})
    entry["rows"] = rows


def _infer_ort(ort, path: Path, path_spec: tuple, cfg: Cfg, seconds: float) -> dict:
    import numpy as np
    from gpu_paths import ort_call

    label, providers, precision = path_spec
    x = np.random.default_rng(0).random((1, 3, cfg.size, cfg.size), dtype=np.float32)
    t0 = time.perf_counter()
    call, got = ort_call(ort, path, providers, x)
    session_s = time.perf_counter() - t0
    ms = _time_calls(call, cfg, seconds, events=False)
    return {"engine": "onnxruntime", "provider": label, "precision": precision,
            "session_providers": got, "session_s": round(session_s, 2), **_quantiles(ms)}


def tensorrt_part(cfg: Cfg, budget: Budget, entry: dict, workdir: Path) -> None:
    if not cfg.cuda:
        raise Skip("TensorRT needs a CUDA GPU")
    ok, why = _importable("tensorrt")
    if not ok:
        raise Skip(f"tensorrt is not installed ({why})")
    import tensorrt as trt
    from gpu_paths import TRT_PRECISIONS

    entry.update(tensorrt=trt.__version__, size=cfg.size, batch=1,
                 timer="cuda events on the engine's own stream",
                 fp16_from=("BuilderFlag.FP16" if hasattr(trt.BuilderFlag, "FP16")
                            else "an fp16 ONNX export (fp16 I/O): TensorRT 11 is strongly typed"))
    rows = []
    for b in cfg.blocks:
        for prec in TRT_PRECISIONS:
            budget.need(25, f"building a TensorRT {prec} engine for {b}")
            rows.append(_row(b, lambda b=b, prec=prec: _trt(cfg, trt, b, workdir, prec)))
    entry["rows"] = rows


def _trt(cfg: Cfg, trt, block: str, workdir: Path, precision: str) -> dict:
    from gpu_paths import TrtRunner, trt_build

    half = precision == "fp16" and not hasattr(trt.BuilderFlag, "FP16")
    onnx_path = workdir / f"{block}{'.fp16' if half else ''}.onnx"
    if not onnx_path.is_file():
        _export_onnx(cfg, block, onnx_path, half=half)
    plan, info = trt_build(trt, onnx_path, precision)
    runner = TrtRunner(trt, plan, cfg.device)
    stream = torch.cuda.Stream(cfg.device)  # not the legacy default stream
    stream.wait_stream(torch.cuda.current_stream(cfg.device))
    with torch.cuda.stream(stream):
        ms = _time_calls(lambda: runner.run(stream.cuda_stream), cfg, 8.0)
    return {"engine": "tensorrt", "precision": precision, **info,
            "io_dtypes": runner.dtypes, **_quantiles(ms)}


# ----------------------------------------------------------------------------- main


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"error: --device {name}: no CUDA GPU visible to torch {torch.__version__}")
    return torch.device(name)


def _out_path(a: argparse.Namespace, meta: dict) -> Path:
    if a.out:
        return Path(a.out) / "gpu_bench.json"
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu_bench.json"
    slug = "".join(c if c.isalnum() else "-" for c in meta["device_name"]).strip("-").lower()
    stamp = meta["date_utc"][:16].replace(":", "").replace("-", "")
    return ROOT / "benchmarks" / "results" / f"gpu_bench-{slug[:40]}-{stamp}.json"


def summary_lines(doc: dict) -> list[str]:
    m = doc["meta"]
    lines = [(f"{m['device_name']} | torch {m['torch']} (CUDA {m['torch_cuda']}) | "
              f"{m['date_utc']}")]
    for name, part in doc["parts"].items():
        if part["status"] != "ok":
            lines.append(f"{name:14s} {part['status']}: {part.get('reason') or part.get('error')}")
            continue
        for r in part.get("rows", []):
            what = r.get("images_per_s") and f"{r['images_per_s']:.1f} img/s (batch {r['batch']})"
            what = what or (r.get("latency_ms_p50") is not None and
                            f"p50 {r['latency_ms_p50']:.3f} ms, p99 {r['latency_ms_p99']:.3f} ms")
            tag = r.get("provider") or r.get("precision") or ""
            lines.append(f"{name:14s} {r['block']:6s} {tag:22s} "
                         f"{what or r.get('error') or r.get('skipped')}")
        if part.get("ratios"):
            lines.append(f"{name:14s} ratios {part['ratios']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    ap.add_argument("--tiny", action="store_true",
                    help="64x64, width 4, depth 3, a few steps: checks the code path in seconds")
    ap.add_argument("--blocks", default="3x3,5x5,1x5")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8, help="training batch (halved on OOM)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per block per round")
    ap.add_argument("--iters", type=int, default=200, help="inference calls per row (max)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    ap.add_argument("--compile-backend", default=None,
                    help="torch.compile backend [inductor; eager with --tiny]")
    ap.add_argument("--budget", type=float, default=440.0, help="wall-clock seconds, all parts")
    ap.add_argument("--out", default=None, help=("folder for gpu_bench.json [$OUT, else "
                                                 "benchmarks/results/gpu_bench-<device>-"
                                                 "<date>.json]"))
    a = ap.parse_args(argv)
    budget = Budget(a.budget)
    device = _device(a.device)
    cfg = Cfg(a, device)
    meta = machine_info(device)
    res = Results(_out_path(a, meta), meta, vars(a))
    res.save()
    print(f"{meta['device_name']}, torch {meta['torch']}; writing {res.path}", flush=True)
    parts = [p.strip() for p in a.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        sys.exit(f"error: --parts {','.join(unknown)}: choose from {','.join(PARTS)}")
    workdir = Path(tempfile.mkdtemp(prefix="lkmseg-gpu-bench-"))
    try:
        for name in [p for p in PARTS if p in parts]:
            with res.part(name) as entry:
                budget.need(NEEDS[name] / (20 if a.tiny else 1), name)
                if name in ("train", "train_compile"):
                    train_part(cfg, budget, entry, compile_=name == "train_compile")
                elif name == "infer_torch":
                    infer_torch_part(cfg, budget, entry)
                elif name == "onnxruntime":
                    onnx_part(cfg, budget, entry, workdir)
                else:
                    tensorrt_part(cfg, budget, entry, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    res.doc["meta"]["total_seconds"] = round(a.budget - budget.left(), 1)
    res.save()
    print("\n".join(summary_lines(res.doc)))
    print(f"results: {res.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
