"""Training throughput (forward + backward + AdamW step) measured the way `train` runs,
for several models interleaved round-robin so a noisy machine cannot favour one of them."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from lkmseg.config import TrainConfig
from lkmseg.data.cache import cache_root
from lkmseg.models import ModelConfig, build_model
from lkmseg.train.losses import bce_dice_loss
from lkmseg.train.runtime import choose_amp, choose_channels_last, resolve_device


@dataclass
class Throughput:
    name: str
    images_per_s: float  # median over rounds
    images_per_s_best: float
    step_ms: list[float]
    precision: str
    channels_last: bool


def _make_step(mcfg: ModelConfig, size: tuple[int, int], batch: int, device: torch.device,
               tcfg: TrainConfig):
    torch.manual_seed(0)
    model = build_model(mcfg)
    amp, use_scaler = choose_amp(device, tcfg.amp)
    cl = choose_channels_last(tcfg.channels_last, model, device, (batch, *size), amp,
                              cache_file=cache_root() / "autotune.json")
    model = model.to(device).train()
    x = torch.rand(batch, 3, *size, device=device)
    y = (torch.rand(batch, 1, *size, device=device) > 0.5).float()
    if cl:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    net = torch.compile(model) if tcfg.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)

    def step() -> None:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = net(x)
        loss = bce_dice_loss(out, y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    prec = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]
    return step, prec, cl


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_training(models: dict[str, ModelConfig], size: tuple[int, int], batch: int = 8,
                     rounds: int = 5, steps_per_round: int = 2, warmup: int = 2,
                     device: str = "auto", tcfg: TrainConfig | None = None,
                     progress=None) -> dict[str, Throughput]:
    """images/s per model; rounds interleave the models (A B C A B C ...)."""
    dev = resolve_device(device)
    tcfg = tcfg or TrainConfig(batch_size=batch)
    steps = {k: _make_step(m, size, batch, dev, tcfg) for k, m in models.items()}
    for step, _, _ in steps.values():
        for _ in range(warmup):
            step()
        _sync(dev)
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in range(rounds):
        for name, (step, _, _) in steps.items():
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(steps_per_round):
                step()
            _sync(dev)
            times[name].append((time.perf_counter() - t0) / steps_per_round)
        if progress:
            progress(r + 1, rounds)
    return {k: Throughput(k, batch / statistics.median(v), batch / min(v),
                          [round(t * 1000, 2) for t in v], steps[k][1], steps[k][2])
            for k, v in times.items()}


def loader_throughput(images, masks, batch: int = 8, n_batches: int = 30,
                      device: str = "cpu") -> float:
    """images/s the training batch source sustains (gather + to-device + augmentation)."""
    from lkmseg.data.loader import BatchSource

    src = BatchSource(images, masks, batch, seed=0, augment=True, device=device)
    for s in range(n_batches):
        src.batch(s)
    return src.images_per_s()
