"""The GPU benchmark in one prepared run: training images/s and inference latency of the
seed's blocks (3x3, 5x5, 1x5), written as JSON with the device name, versions and date.

    bash benchmarks/gpu.sh                                    # on the GPU machine (< 8 min)
    PYTHONPATH=. python benchmarks/gpu_bench.py --device cpu --tiny   # the code path, seconds

Parts, each in its own try/except (an error is recorded in the JSON and the next part
runs), all under one wall-clock budget (--budget; a part that would not fit is skipped
with the reason):
  train          training images/s at --size (512), AMP (bf16, else fp16 + GradScaler) and
                 channels_last, the blocks interleaved round by round; peak memory
  infer_torch    latency of one image, fp32 and fp16, timed with CUDA events (p50/p90/p99)
  onnxruntime    the same models exported to ONNX, on every ONNX Runtime provider present
  train_compile  the training measurement again with torch.compile (compile time apart)
  tensorrt       TensorRT engines built from the ONNX files, where TensorRT is installed

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
                                               "safetensors", "rich", "numpy")},
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(device_name=torch.cuda.get_device_name(device),
                    capability=f"{p.major}.{p.minor}",
                    memory_gib=round(p.total_memory / 2**30, 1),
                    cudnn=torch.backends.cudnn.version(),
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
            self.amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self.amp = torch.bfloat16 if a.tiny else None

    def model(self, block: str) -> torch.nn.Module:
        return build_model(ModelConfig(block=block, width=self.width, depth=self.depth))


class Trainee:
    """A block's model, optimizer and a fixed random batch, ready to take steps."""

    def __init__(self, cfg: Cfg, block: str, batch: int, compile_: bool) -> None:
        self.cfg, self.block, self.batch, dev = cfg, block, batch, cfg.device
        torch.manual_seed(0)
        self.model = cfg.model(block).to(dev).to(memory_format=cfg.memory_format).train()
        self.params = count_params(self.model)
        self.net = (torch.compile(self.model, backend=cfg.compile_backend) if compile_
                    else self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        fp16 = cfg.amp == torch.float16
        self.scaler = torch.amp.GradScaler(dev.type, enabled=fp16)
        s = cfg.size
        self.x = torch.rand(batch, 3, s, s, device=dev).contiguous(
            memory_format=cfg.memory_format)
        yy, xx = torch.meshgrid(torch.arange(s, device=dev), torch.arange(s, device=dev),
                                indexing="ij")
        disk = (((yy - s / 2) ** 2 + (xx - s / 2) ** 2) < (s / 3) ** 2).float()
        self.y = disk.expand(batch, 1, s, s).contiguous()

    def step(self) -> None:
        cfg = self.cfg
        with torch.autocast(cfg.device.type, dtype=cfg.amp or torch.float32,
                            enabled=cfg.amp is not None):
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


def _make_trainee(cfg: Cfg, block: str, compile_: bool, budget: Budget) -> tuple[Trainee, dict]:
    """Build and warm up (compile) a block, halving the batch on out-of-memory."""
    batch = cfg.batch
    while True:
        try:
            t = Trainee(cfg, block, batch, compile_)
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
            print(f"   {block}: out of memory, batch -> {batch}", flush=True)
        budget.need(1, f"warming up {block}")


def train_part(cfg: Cfg, budget: Budget, entry: dict, compile_: bool) -> None:
    """Images/s of every block, interleaved: round r times each block in turn, so drifts
    in clock or temperature hit all blocks alike; the median over rounds is reported."""
    if cfg.cuda:
        torch.backends.cudnn.benchmark = True
    entry.update(size=cfg.size, amp=str(cfg.amp).replace("torch.", "") if cfg.amp else "fp32",
                 channels_last=cfg.cuda, compile=cfg.compile_backend if compile_ else None)
    ready: dict[str, tuple[Trainee, dict]] = {}
    rows = {}
    need = NEEDS["train_compile" if compile_ else "train"] / (4 * (20 if cfg.tiny else 1))
    for b in cfg.blocks:
        if budget.left() < need:  # measure the blocks that are ready, report the others
            rows[b] = {"block": b, "skipped": f"time budget: {budget.left():.0f} s left"}
            continue
        rows[b] = _row(b, lambda b=b: _warm(ready, cfg, b, compile_, budget))
    step_ms: dict[str, list[float]] = {b: [] for b in ready}
    for r in range(cfg.rounds):
        if r and budget.left() < 5:
            entry["rounds_cut"] = f"after {r} rounds: time budget"
            break
        for b, (t, _) in ready.items():
            try:
                step_ms[b].append(1000 * t.timed(cfg.steps) / cfg.steps)
            except Exception as e:  # noqa: BLE001 — one block failing mid-way
                rows[b]["error"] = f"{type(e).__name__}: {e}"
    for b, (t, info) in ready.items():
        ms = step_ms[b]
        if not ms:
            continue
        med = statistics.median(ms)
        rows[b].update(params=t.params, **info, step_ms=[round(x, 3) for x in ms],
                       images_per_s=round(1000 * t.batch / med, 2),
                       images_per_s_best=round(1000 * t.batch / min(ms), 2),
                       peak_memory_mb=(round(torch.cuda.max_memory_allocated(cfg.device) / 2**20)
                                       if cfg.cuda else None))
    ready.clear()
    entry["rows"] = list(rows.values())
    ips = {b: r.get("images_per_s") for b, r in rows.items() if r.get("images_per_s")}
    entry["ratios"] = {f"{a}/{b}": round(ips[a] / ips[b], 3)
                       for a, b in (("1x5", "5x5"), ("1x5", "3x3"), ("5x5", "3x3"))
                       if a in ips and b in ips}


def _warm(ready: dict, cfg: Cfg, block: str, compile_: bool, budget: Budget) -> dict:
    if cfg.cuda:
        torch.cuda.reset_peak_memory_stats(cfg.device)
    t, info = _make_trainee(cfg, block, compile_, budget)
    ready[block] = (t, info)
    return info


# ----------------------------------------------------------------------------- inference


def _time_calls(fn: Callable[[], object], cfg: Cfg, seconds: float,
                events: bool | None = None) -> list[float]:
    """Milliseconds per call: CUDA events for GPU work (``events``, default: on a GPU),
    perf_counter otherwise; at most ``cfg.iters`` calls or ``seconds``, whichever comes
    first (at least 3)."""
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
    precisions = ["fp32", "fp16"] if cfg.cuda else ["fp32", "bf16"]
    entry.update(size=cfg.size, batch=1, channels_last=cfg.cuda,
                 timer="cuda events" if cfg.cuda else "perf_counter")
    rows = []
    per = max(1.0, min(8.0, budget.left() / (3 * len(cfg.blocks) * len(precisions))))
    for b in cfg.blocks:
        for prec in precisions:
            budget.need(per, f"torch {prec} {b}")
            rows.append(_row(b, lambda b=b, prec=prec: _infer_torch(cfg, b, prec, per)))
    entry["rows"] = rows


@torch.no_grad()
def _infer_torch(cfg: Cfg, block: str, precision: str, seconds: float) -> dict:
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    m = cfg.model(block).eval().to(cfg.device, dtype).to(memory_format=cfg.memory_format)
    x = torch.rand(1, 3, cfg.size, cfg.size, device=cfg.device, dtype=dtype).contiguous(
        memory_format=cfg.memory_format)
    return {"engine": "torch", "precision": precision,
            **_quantiles(_time_calls(lambda: m(x), cfg, seconds))}


def _export_onnx(cfg: Cfg, block: str, path: Path) -> str:
    """Export eval-mode fp32 weights at a fixed 1x3xSxS; returns the exporter used."""
    import logging
    import warnings

    m = cfg.model(block).eval()
    x = torch.rand(1, 3, cfg.size, cfg.size)
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

    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]  # TensorRT EP: see tensorrt
    providers = [p for p in wanted if p in ort.get_available_providers()]
    entry.update(onnxruntime=ort.__version__, available=ort.get_available_providers(),
                 measured=providers, size=cfg.size, batch=1)
    rows = []
    per = max(1.0, min(10.0, budget.left() / (4 * len(cfg.blocks) * max(1, len(providers)))))
    for b in cfg.blocks:
        path = workdir / f"{b}.onnx"
        budget.need(5, f"exporting {b}")
        info = _row(b, lambda b=b, path=path: {"exporter": _export_onnx(cfg, b, path),
                                                "onnx_mb": round(path.stat().st_size / 2**20, 3)})
        if "error" in info:
            rows.append(info)
            continue
        for prov in providers:
            budget.need(per, f"{prov} {b}")
            rows.append(_row(b, lambda path=path, prov=prov, info=info: {
                **info, **_infer_ort(ort, path, prov, cfg, per)}) | {"block": b})
    entry["rows"] = rows


def _infer_ort(ort, path: Path, provider: str, cfg: Cfg, seconds: float) -> dict:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=[provider])
    if sess.get_providers()[0] != provider:
        raise Skip(f"{provider} fell back to {sess.get_providers()[0]}")
    import numpy as np

    x = np.random.default_rng(0).random((1, 3, cfg.size, cfg.size), dtype=np.float32)
    name = sess.get_inputs()[0].name
    ms = _time_calls(lambda: sess.run(None, {name: x}), cfg, seconds, events=False)
    return {"engine": "onnxruntime", "provider": provider, "precision": "fp32",
            "timer": "perf_counter (host array in, host array out)", **_quantiles(ms)}


def tensorrt_part(cfg: Cfg, budget: Budget, entry: dict, workdir: Path) -> None:
    if not cfg.cuda:
        raise Skip("TensorRT needs a CUDA GPU")
    ok, why = _importable("tensorrt")
    if not ok:
        raise Skip(f"tensorrt is not installed ({why})")
    import tensorrt as trt

    entry.update(tensorrt=trt.__version__, size=cfg.size, batch=1)
    fp16 = hasattr(trt.BuilderFlag, "FP16")  # TensorRT 11: strongly typed, fp32 ONNX -> fp32
    rows = []
    for b in cfg.blocks:
        path = workdir / f"{b}.onnx"
        for prec in (["fp32", "fp16"] if fp16 else ["fp32"]):
            budget.need(25, f"building a TensorRT {prec} engine for {b}")
            rows.append(_row(b, lambda b=b, path=path, prec=prec: _trt(cfg, trt, b, path, prec)))
    entry["rows"] = rows


def _trt(cfg: Cfg, trt, block: str, onnx_path: Path, precision: str) -> dict:
    if not onnx_path.is_file():
        _export_onnx(cfg, block, onnx_path)
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt, "NetworkDefinitionCreationFlag") and hasattr(
            trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"ONNX parser: {errs[:500]}")
    conf = builder.create_builder_config()
    conf.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 4 << 30)
    if precision == "fp16":
        conf.set_flag(trt.BuilderFlag.FP16)
    t0 = time.perf_counter()
    blob = builder.build_serialized_network(network, conf)
    if blob is None:
        raise RuntimeError("build_serialized_network returned None")
    build_s = time.perf_counter() - t0
    engine = trt.Runtime(logger).deserialize_cuda_engine(blob)
    ctx = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
    bufs = {}
    for n in names:
        shape = tuple(engine.get_tensor_shape(n))
        if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT:
            ctx.set_input_shape(n, shape)
        bufs[n] = torch.empty(shape, device=cfg.device,
                              dtype=dtypes.get(engine.get_tensor_dtype(n), torch.float32))
        ctx.set_tensor_address(n, bufs[n].data_ptr())
    stream = torch.cuda.current_stream(cfg.device)
    ms = _time_calls(lambda: ctx.execute_async_v3(stream.cuda_stream), cfg, 8.0)
    return {"engine": "tensorrt", "precision": precision, "build_s": round(build_s, 1),
            "engine_mb": round(len(blob) / 2**20, 3), **_quantiles(ms)}


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
