"""What this CPU can execute natively: its model name and instruction-set flags.

Read from ``/proc/cpuinfo`` (Linux); elsewhere the flags are unknown (an empty set) and
callers fall back to asking the runtime itself. Used to decide whether bf16/int8 runs natively
and to key measurement caches by machine (a cached "fastest engine" is only valid on the CPU
that measured it).
"""

from __future__ import annotations

import functools
import hashlib
import platform
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@functools.cache
def _cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


def cpu_model() -> str:
    """e.g. 'Intel(R) Xeon(R) Processor' (falls back to platform.processor())."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel names them (empty where unknown)."""
    return frozenset(_cpuinfo().get("flags", "").split())


def has_any(flags: tuple[str, ...]) -> bool:
    return bool(cpu_flags() & set(flags))


def native_bf16() -> bool | None:
    """True/False from the CPU flags; None when the flags are unknown (not Linux)."""
    return has_any(BF16_FLAGS) if cpu_flags() else None


def native_int8() -> bool | None:
    """VNNI or AMX int8 dot products (fast int8); None when the flags are unknown."""
    return has_any(INT8_FLAGS) if cpu_flags() else None


def machine_key() -> str:
    """A short hash of the CPU model and its flags: the same key means the same kind of CPU."""
    text = cpu_model() + "|" + " ".join(sorted(cpu_flags())) + "|" + platform.machine()
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def describe_isa() -> str:
    """The flags that matter for inference speed, e.g. 'avx512f avx512_vnni amx_bf16 ...'."""
    wanted = ("avx2", "avx512f", *INT8_FLAGS, *BF16_FLAGS, "avx512_fp16", "amx_tile")
    have = cpu_flags()
    return " ".join(f for f in wanted if f in have) or "unknown"
