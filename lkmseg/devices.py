"""Which device a command runs on: the one decision train, engines, serve and bench share."""

from __future__ import annotations

from lkmseg.errors import UserError

CHOICES = "auto, cpu, cuda or cuda:N"
GPU_NAMES = ("cuda", "gpu", "tensorrt")  # engines also take gpu/tensorrt for "the GPU"


def is_gpu(device: str) -> bool:
    return device in GPU_NAMES or device.startswith("cuda:")


def gpu_present() -> bool:
    """A CUDA device is visible to torch or to onnxruntime (without importing tensorrt)."""
    try:
        import torch

        if torch.cuda.is_available():
            return True
    except ImportError:
        pass
    from lkmseg.engines.onnxruntime_engine import CUDA, provider_works

    return provider_works(CUDA)[0]


def check(device: str, engines: bool = False) -> str:
    """``device`` lower-cased, or a UserError listing the choices."""
    d = str(device).lower()
    if d in ("auto", "cpu", "cuda") or d.startswith("cuda:") or (engines and d in GPU_NAMES):
        return d
    raise UserError(f"--device {device}: choose {CHOICES}")


def resolve(device: str, engines: bool = False) -> str:
    """'cpu', 'cuda' or 'cuda:N': auto takes the GPU when one is visible."""
    d = check(device, engines)
    if d == "auto":
        return "cuda" if gpu_present() else "cpu"
    return "cuda" if d in GPU_NAMES else d


def torch_device(device: str):
    """The torch.device for ``device``; a CUDA choice needs a CUDA build of torch and a GPU."""
    import torch

    d = check(device)
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if d.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is visible to torch "
                        f"(torch {torch.__version__}); use --device cpu or install a CUDA build")
    return torch.device(d)
