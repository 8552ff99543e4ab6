"""TensorRT engines: build from ONNX with the Python API (TensorRT 10 and 11), and the sidecar.

- TensorRT 10 builds fp16 from the fp32 ONNX with ``BuilderFlag.FP16`` (weak typing).
- TensorRT 11 removed the precision flags and is always strongly typed, so an fp16 engine is
  built from ``model.fp16.onnx`` (fp16 weights/compute, fp32 I/O). No network creation flag is
  needed or set in either version: 11.x keeps ``STRONGLY_TYPED`` (value 0, not 1 as in 10.x)
  only as a deprecated, ignored name (include/NvInfer.h, release/11.1 L11462-11481).
- fp32 engines clear the TF32 flag (on by default in both, NvInfer.h ``kTF32``) so they meet
  the fp32 parity bar.
- The timing cache is checked: ``set_timing_cache`` returns False for a cache made on a device
  with other properties (NvInfer.h release/10.13 L10025-10043); such a cache is replaced.

Engines are tied to the exact TensorRT version and GPU architecture: ``model.engine.json``
records both (and the run config for preprocessing); loading checks them first.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from lkmseg import __version__
from lkmseg.config import RunConfig
from lkmseg.engines.tensorrt_runtime import (
    ProfileShapes,
    current_gpu,
    has_fp16_flag,
    require_tensorrt,
)
from lkmseg.errors import GateFailed, UserError
from lkmseg.files.sidecar import write_sidecar
from lkmseg.fsutil import write_bytes


def profile_shapes(size: tuple[int, int], batch: int = 1, dynamic: bool = True,
                   max_batch: int | None = None) -> ProfileShapes:
    """min/opt/max input shapes: opt = (batch, 3, H, W); dynamic spans batch 1..max_batch
    (default max(batch, 8)) and H/2..2H x W/2..2W; static pins everything to opt."""
    h, w = int(size[0]), int(size[1])
    if batch < 1 or h < 1 or w < 1:
        raise UserError(f"--batch {batch} / --size {h}x{w}: must be positive")
    opt = (batch, 3, h, w)
    if not dynamic:
        if max_batch not in (None, batch):
            raise UserError(f"--max-batch {max_batch} needs --dynamic (a static engine runs "
                            f"batch {batch} only)")
        return ProfileShapes(opt, opt, opt)
    mb = max(batch, 8) if max_batch is None else int(max_batch)
    if mb < batch:
        raise UserError(f"--max-batch {mb} is smaller than --batch {batch}; raise it")
    return ProfileShapes((1, 3, max(1, h // 2), max(1, w // 2)), opt, (mb, 3, 2 * h, 2 * w))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _parser_error(err: Any) -> str:
    desc = getattr(err, "desc", None)
    return str(desc() if callable(desc) else err)


def choose_source(trt: ModuleType, precision: str, onnx_fp32: Path,
                  onnx_fp16: Path | None) -> tuple[Path, bool]:
    """(ONNX file to parse, strongly typed?) for this TensorRT and precision."""
    if precision not in ("fp32", "fp16"):
        raise UserError(f"TensorRT precision '{precision}': choose fp32 or fp16")
    if precision == "fp16" and not has_fp16_flag(trt):
        if onnx_fp16 is None or not Path(onnx_fp16).is_file():
            raise UserError(f"TensorRT {trt.__version__} builds fp16 only from an fp16 graph, "
                            "and model.fp16.onnx is missing: export with --fp16")
        return Path(onnx_fp16), True
    return Path(onnx_fp32), not has_fp16_flag(trt)  # TRT 11: always strongly typed


def _attach_timing_cache(cfg: Any, path: Path | None) -> tuple[Any, str]:
    """(the cache attached to ``cfg`` or None, what happened). A cache TensorRT refuses (made
    on a GPU with other properties: the file name keys only name and SM) is replaced by a new
    one rather than silently ignored."""
    if path is None:
        return None, "off"
    cache = cfg.create_timing_cache(path.read_bytes() if path.is_file() else b"")
    if cache is not None and cfg.set_timing_cache(cache, False):
        return cache, "used"
    cache = cfg.create_timing_cache(b"")
    if cache is not None and cfg.set_timing_cache(cache, False):
        return cache, f"rejected {path.name} (made on a GPU with other properties); replaced"
    return None, f"rejected {path.name}; built without a timing cache"


def build_engine(onnx_fp32: Path, engine_path: Path, shapes: ProfileShapes, *,
                 precision: str = "fp32", onnx_fp16: Path | None = None,
                 workspace_gib: float = 4.0, timing_cache: Path | None = None,
                 config: RunConfig | None = None, trt: ModuleType | None = None,
                 gpu: tuple[str, str] | None = None) -> dict[str, Any]:
    """Build, serialize and write ``engine_path`` and its sidecar; return the sidecar dict."""
    trt = trt or require_tensorrt("--trt")
    gpu = gpu or current_gpu() or ("unknown", "?")
    source, strongly_typed = choose_source(trt, precision, Path(onnx_fp32), onnx_fp16)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        errors = errors or ["no detail"]
        raise GateFailed(f"{source}: TensorRT's ONNX parser failed ({errors[0][:200]}); "
                        "re-export with a different --opset or report a bug")
    input_name = network.get_input(0).name
    cfg = builder.create_builder_config()
    cfg.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16" and not strongly_typed:
        cfg.set_flag(trt.BuilderFlag.FP16)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        cfg.clear_flag(trt.BuilderFlag.TF32)  # true fp32, so the fp32 parity bar applies
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, shapes.min, shapes.opt, shapes.max)
    cfg.add_optimization_profile(profile)
    cache, cache_status = _attach_timing_cache(cfg, timing_cache)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, cfg)
    if plan is None:
        raise GateFailed("TensorRT engine build failed (see the TensorRT log above); "
                        "try a smaller --max-batch, a larger --workspace, or --static")
    build_s = time.perf_counter() - t0
    write_bytes(engine_path, bytes(memoryview(plan)))  # IHostMemory: a buffer, no len()
    if timing_cache is not None and cache is not None:
        write_bytes(timing_cache, bytes(memoryview(cache.serialize())))
    sidecar = {
        "lkmseg_version": __version__,
        "tensorrt_version": str(trt.__version__),
        "gpu_name": gpu[0],
        "compute_capability": gpu[1],
        "precision": precision,
        "strongly_typed": strongly_typed,
        "tf32_allowed": precision != "fp32",
        "source_onnx": source.name,
        "source_sha256": _sha256(source),
        "input": input_name,
        "profile": shapes.to_dict(),
        "workspace_gib": workspace_gib,
        "build_seconds": round(build_s, 2),
        "engine_bytes": int(plan.nbytes),
        "timing_cache": cache_status,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_config": config.to_dict() if config is not None else None,
    }
    write_sidecar(Path(engine_path), sidecar)
    return sidecar


