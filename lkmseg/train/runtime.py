"""Where and how to compute: device, precision, memory format, distributed setup."""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from lkmseg.errors import UserError


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None = fp32
    use_scaler: bool
    channels_last: bool
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def describe(self) -> str:
        name = (torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                else f"cpu ({torch.get_num_threads()} threads)")
        amp = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        fmt = "channels_last" if self.channels_last else "contiguous"
        ddp = f", {self.world} processes" if self.world > 1 else ""
        return f"{name}, {amp}, {fmt}{ddp}"


def resolve_device(name: str) -> torch.device:
    name = name.lower()
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"--device {name}: choose auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is visible to torch "
                        f"(torch {torch.__version__}); use --device cpu or install a CUDA build")
    return torch.device(name)


def choose_amp(device: torch.device, amp: str) -> tuple[torch.dtype | None, bool]:
    """auto: bf16 (or fp16 + grad scaler) on CUDA; fp32 on CPU, where measured bf16
    autocast convolutions were 10-20x slower than fp32 (torch 2.13, AVX-512 BF16 CPU)."""
    amp = amp.lower()
    if amp not in ("auto", "off", "bf16", "fp16"):
        raise UserError(f"--amp {amp}: choose auto, off, bf16 or fp16")
    if amp == "off" or (amp == "auto" and device.type == "cpu"):
        return None, False
    if amp == "fp16" or (device.type == "cuda" and not torch.cuda.is_bf16_supported()):
        if device.type == "cpu":
            raise UserError("--amp fp16 is not supported on CPU; use --amp bf16 or off")
        return torch.float16, True
    return torch.bfloat16, False


def _time_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cl: bool,
                amp: torch.dtype | None, n: int = 2) -> float:
    m = copy.deepcopy(model).train()
    if cl:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), 1e-4)
    best = float("inf")
    for i in range(n + 1):
        t0 = time.perf_counter()
        with torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = m(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # first step is warm-up
            best = min(best, time.perf_counter() - t0)
    return best


def choose_channels_last(setting: str, model: nn.Module, device: torch.device,
                         shape: tuple[int, int, int], amp: torch.dtype | None,
                         cache_file: os.PathLike | None = None) -> bool:
    """on/off, or auto: CUDA -> on; CPU -> measure both layouts (cached per configuration)."""
    setting = setting.lower()
    if setting in ("on", "off"):
        return setting == "on"
    if setting != "auto":
        raise UserError(f"--channels-last {setting}: choose auto, on or off")
    if device.type == "cuda":
        return True
    bs, h, w = shape
    key = f"{getattr(model, 'cfg', '')}|{bs}x{h}x{w}|{torch.__version__}|{torch.get_num_threads()}"
    cache = {}
    if cache_file and os.path.exists(cache_file):
        try:
            with open(cache_file) as f:
                cache = json.load(f)
        except (OSError, ValueError):
            cache = {}
    if key in cache:
        return bool(cache[key])
    x = torch.rand(bs, 3, h, w)
    y = (torch.rand(bs, 1, h, w) > 0.5).float()
    cl = _time_steps(model, x, y, True, amp) < _time_steps(model, x, y, False, amp)
    if cache_file:
        cache[key] = cl
        try:
            os.makedirs(os.path.dirname(cache_file), exist_ok=True)
            tmp = f"{cache_file}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump(cache, f)
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only cache only costs a re-measurement next time
    return cl


def init_distributed(device_name: str) -> tuple[int, int, int]:
    """Join the process group when launched by torchrun; returns (rank, world, local_rank)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, local
