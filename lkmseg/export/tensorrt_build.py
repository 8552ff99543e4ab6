"""TensorRT engines: build from ONNX with the Python API (TensorRT 10 and 11), and the sidecar.

- TensorRT 10 builds fp16 from the fp32 ONNX with ``BuilderFlag.FP16`` (weak typing).
- TensorRT 11 removed the precision flags: networks are strongly typed, so an fp16 engine is
  built from ``model.fp16.onnx`` (fp16 weights/compute, fp32 I/O) with the STRONGLY_TYPED flag.
- fp32 engines clear the TF32 flag where it exists so they meet the fp32 parity bar.

Engines are tied to the exact TensorRT version and GPU architecture: ``model.engine.json``
records both (and the run config for preprocessing); loading checks them first.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from lkmseg import __version__
from lkmseg.config import RunConfig
from lkmseg.errors import UserError
from lkmseg.fsutil import write_bytes, write_json

INSTALL_HINT = "pip install 'lkmseg[gpu]' on a machine with an NVIDIA GPU"


@dataclass(frozen=True)
class ProfileShapes:
    """One TensorRT optimization profile for the input (B, 3, H, W)."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def contains(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == 4 and all(lo <= s <= hi for lo, s, hi in
                                       zip(self.min, shape, self.max))

    def to_dict(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> ProfileShapes:
        return cls(*(tuple(int(v) for v in d[k]) for k in ("min", "opt", "max")))

    def __str__(self) -> str:
        fmt = "x".join
        return (f"min {fmt(map(str, self.min))}, opt {fmt(map(str, self.opt))}, "
                f"max {fmt(map(str, self.max))}")


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


def tensorrt_status() -> tuple[bool, str]:
    """(True, 'TensorRT x.y on <GPU>') or (False, what is missing and how to get it)."""
    missing = []
    version = None
    try:
        import tensorrt as trt

        version = trt.__version__
    except ImportError:
        missing.append(f"TensorRT is not installed ({INSTALL_HINT})")
    except Exception as e:  # noqa: BLE001 — a broken install raises OSError/RuntimeError…
        missing.append(f"TensorRT fails to import ({type(e).__name__}: {e}); reinstall it")
    gpu = current_gpu()
    if gpu is None:
        missing.append("no CUDA GPU is visible to PyTorch (needs an NVIDIA GPU, its driver "
                       "and the CUDA build of torch)")
    if missing:
        return False, "; ".join(missing)
    return True, f"TensorRT {version} on {gpu[0]} (compute capability {gpu[1]})"


def require_tensorrt(what: str = "TensorRT") -> ModuleType:
    """Import tensorrt, or raise one UserError line naming everything that is missing."""
    ok, why = tensorrt_status()
    if not ok:
        raise UserError(f"{what} needs TensorRT and a CUDA GPU: {why}")
    import tensorrt as trt

    return trt


def current_gpu() -> tuple[str, str] | None:
    """(name, 'major.minor') of the current CUDA device, or None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    idx = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(idx)
    return torch.cuda.get_device_name(idx), f"{major}.{minor}"


def trt_major(trt: ModuleType) -> int:
    return int(str(trt.__version__).split(".")[0])


def has_fp16_flag(trt: ModuleType) -> bool:
    """TensorRT 10 has BuilderFlag.FP16 (weak typing); TensorRT 11 removed it."""
    return hasattr(trt.BuilderFlag, "FP16")


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
    typed_flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    flags = 1 << int(typed_flag) if strongly_typed and typed_flag is not None else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        errors = errors or ["no detail"]
        raise UserError(f"{source}: TensorRT's ONNX parser failed ({errors[0][:200]}); "
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
    blob = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = cfg.create_timing_cache(blob)
    cfg.set_timing_cache(cache, False)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, cfg)
    if plan is None:
        raise UserError("TensorRT engine build failed (see the TensorRT log above); "
                        "try a smaller --max-batch, a larger --workspace, or --static")
    build_s = time.perf_counter() - t0
    write_bytes(engine_path, bytes(memoryview(plan)))
    if timing_cache is not None:
        write_bytes(timing_cache, bytes(memoryview(cache.serialize())))
    sidecar = {
        "lkmseg_version": __version__,
        "tensorrt_version": str(trt.__version__),
        "gpu_name": gpu[0],
        "compute_capability": gpu[1],
        "precision": precision,
        "strongly_typed": strongly_typed,
        "source_onnx": source.name,
        "source_sha256": _sha256(source),
        "input": input_name,
        "profile": shapes.to_dict(),
        "workspace_gib": workspace_gib,
        "build_seconds": round(build_s, 2),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_config": config.to_dict() if config is not None else None,
    }
    from lkmseg.engines.source import sidecar_path

    write_json(sidecar_path(Path(engine_path)), sidecar)
    return sidecar


def check_compatible(sidecar: dict, engine_path: Path, trt_version: str,
                     gpu: tuple[str, str]) -> list[str]:
    """Refuse (UserError) an engine built by another TensorRT or for another GPU architecture;
    return notes (e.g. same architecture, different GPU model — it runs, timings may differ)."""
    fix = "rebuild it here with `lkmseg export RUN --trt`"
    built_v = str(sidecar.get("tensorrt_version", "?"))
    if built_v != str(trt_version):
        raise UserError(f"{engine_path}: built with TensorRT {built_v}, this is TensorRT "
                        f"{trt_version} (engines are tied to the exact version); {fix}")
    built_cc = str(sidecar.get("compute_capability", "?"))
    if built_cc != gpu[1]:
        raise UserError(f"{engine_path}: built for {sidecar.get('gpu_name', '?')} (compute "
                        f"capability {built_cc}), this GPU is {gpu[0]} ({gpu[1]}); {fix}")
    notes = []
    if sidecar.get("gpu_name") != gpu[0]:
        notes.append(f"built on {sidecar.get('gpu_name')} (same architecture {built_cc}); "
                     "rebuild here for best speed")
    return notes
