"""What this machine can do fast: CPU model and instruction-set flags, GPU compute capability,
and whether bf16 is native (hardware instructions) or emulated (slow) here.

Every speed choice is measured at run time (see ``lkmseg.tune``); these probes only decide
which candidates are worth measuring and name the machine beside every figure and cache key.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily: the ONNX/OpenVINO engines and `lkmseg info`
    import torch  # ask about the CPU without paying for importing it

# lscpu / /proc/cpuinfo flags that change which precision is fast (x86: AVX-512 BF16 and AMX
# run bf16 natively, VNNI / AMX-INT8 int8; aarch64: "bf16" is the BFMMLA/BFDOT extension).
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16",
                  "avx512_vnni", "amx_int8", "bf16", "asimd", "sve")
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "i8mm", "asimddp")
CUDA_BF16_CC = (8, 0)  # Ampere and newer have bf16 tensor cores; older GPUs emulate it


def _cpuinfo() -> dict[str, str]:
    """First value of each key in /proc/cpuinfo (Linux), {} elsewhere."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep:
                    out.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    return out


def _lscpu() -> dict[str, str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """e.g. 'Intel(R) Xeon(R) Processor' (lscpu's "Model name")."""
    info = _cpuinfo()
    name = info.get("model name") or _lscpu().get("model name")
    return name or platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """All instruction-set flags the kernel reports (x86 "flags", aarch64 "features")."""
    info = _cpuinfo()
    text = info.get("flags") or info.get("features")
    if text is None:
        text = _lscpu().get("flags", "")
    return frozenset(text.split())


def relevant_flags() -> list[str]:
    """The flags in RELEVANT_FLAGS this CPU has, in that order."""
    have = cpu_flags()
    return [f for f in RELEVANT_FLAGS if f in have]


def describe_isa() -> str:
    """The speed-relevant flags as one string, e.g. 'avx2 avx512f avx512_bf16 amx_bf16 ...'."""
    return " ".join(relevant_flags()) or "unknown"


def cpu_bf16() -> bool | None:
    """The CPU runs bf16 natively (True/False from its flags); None where the flags are
    unknown (not Linux), so callers fall back to asking the runtime itself."""
    return any(f in cpu_flags() for f in BF16_FLAGS) if cpu_flags() else None


def cpu_int8() -> bool | None:
    """The CPU has fast int8 dot products (VNNI / AMX-INT8 / Arm i8mm); None where unknown."""
    return any(f in cpu_flags() for f in INT8_FLAGS) if cpu_flags() else None


def cpu_key() -> str:
    """A short hash of the CPU model and all its flags: the same key means the same kind of
    CPU (cache keys for measured choices that do not involve torch)."""
    text = cpu_model() + "|" + " ".join(sorted(cpu_flags())) + "|" + platform.machine()
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def cuda_capability(device: torch.device | str | None = None) -> tuple[int, int] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """bf16 runs on hardware instructions here. CPU: an AVX512-BF16 / AMX-BF16 (x86) or BF16
    (aarch64) flag. CUDA: compute capability >= 8.0 — not ``torch.cuda.is_bf16_supported()``
    alone, which also says yes on T4/V100, where bf16 is emulated and slower than fp16."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        cc = cuda_capability(dev)
        return cc is not None and cc >= CUDA_BF16_CC
    return any(f in cpu_flags() for f in BF16_FLAGS)


def why_not_bf16(device: torch.device | str = "cpu") -> str:
    """One phrase saying why bf16 is not native here (for messages and skipped rows)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        cc = cuda_capability(dev)
        shown = "?" if cc is None else f"{cc[0]}.{cc[1]}"
        return (f"this GPU (compute capability {shown} < 8.0) emulates bf16; fp16 with a "
                "gradient scaler is its fast mixed precision")
    return (f"this CPU ({cpu_model()}) has no avx512_bf16/amx_bf16 flag, so bf16 is "
            "emulated (measured 10-20x slower than fp32 on such a CPU)")


def native_precisions(device: torch.device | str = "cpu") -> list[str]:
    """Precisions worth running here: fp32, plus bf16 where native; on CUDA without native
    bf16, fp16 (with a gradient scaler when training)."""
    import torch

    dev = torch.device(device)
    if native_bf16(dev):
        return ["fp32", "bf16"]
    return ["fp32", "fp16"] if dev.type == "cuda" else ["fp32"]


def device_name(device: torch.device | str = "cpu") -> str:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        cc = cuda_capability(dev)
        return f"{torch.cuda.get_device_name(dev)} (cc {cc[0]}.{cc[1]})" if cc else "cuda"
    return cpu_model()


def busy(factor: float = 1.5) -> tuple[bool, str]:
    """(True, why) when the 1-minute load average exceeds ``factor`` x the CPU count: other
    work is competing for the cores, so a speed measurement taken now may mislead."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return False, ""
    cpus = os.cpu_count() or 1
    return load > factor * cpus, f"load average {load:.1f} on {cpus} CPUs"


def machine_key(device: torch.device | str = "cpu") -> str:
    """Identifies the hardware + software a speed measurement holds for (a cache key part)."""
    import torch

    dev = torch.device(device)
    hw = device_name(dev) if dev.type == "cuda" else (
        f"{cpu_model()} [{' '.join(relevant_flags())}]")
    return f"{hw} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def machine_info(device: torch.device | str = "cpu") -> dict:
    """Recorded beside every committed figure: CPU model + flags, torch, threads, GPU."""
    import torch

    dev = torch.device(device)
    info = {"cpu": cpu_model(), "cpu_flags": relevant_flags(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "device": dev.type,
            "native_precisions": native_precisions(dev)}
    if dev.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = device_name(dev)
    info["cpus"] = os.cpu_count()
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                   / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # not POSIX
        info["memory_gib"] = None
    info["libraries"] = library_versions()
    return info


LIBRARIES = ("torch", "onnx", "onnxslim", "onnxruntime", "onnxruntime-gpu", "openvino", "numpy",
             "tensorrt", "nvidia-pytriton", "tritonclient")


def library_versions(dists: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed versions of the runtimes a figure may depend on (absent ones left out),
    read from package metadata without importing them."""
    from importlib import metadata

    out = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads do not help convolutions)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = os.cpu_count() or 1
    try:
        import psutil

        phys = psutil.cpu_count(logical=False) or allowed
    except ImportError:
        phys = allowed
    return max(1, min(allowed, phys))
