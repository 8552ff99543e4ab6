"""TensorRT on this machine: is it installed, which GPU, which version's API, and the
optimization-profile shapes an engine accepts. Shared by the engine and by export's builder."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import ModuleType

from lkmseg.errors import UserError

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


def dims(d: object) -> tuple[int, ...] | None:
    """A TensorRT ``Dims`` as a tuple, or None for ``Dims{-1}`` (what TensorRT returns for an
    invalid name or profile, NvInferRuntime.h; its ``len()`` raises ValueError)."""
    try:
        n = len(d)  # type: ignore[arg-type]
    except ValueError:
        return None
    return tuple(int(d[i]) for i in range(n))  # type: ignore[index]


def torch_dtype(trt: ModuleType, dtype: object) -> object:
    """The torch dtype of a TensorRT ``DataType`` an lkmseg engine may use for its I/O."""
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
             trt.DataType.BF16: torch.bfloat16}
    if dtype not in table:
        raise UserError(f"TensorRT engine tensor of type {dtype}: lkmseg engines use float32, "
                        "float16 or bfloat16 I/O; rebuild with `lkmseg export RUN --trt`")
    return table[dtype]
