"""Training throughput (forward + backward + AdamW step) measured the way `train` runs,
for several models interleaved round-robin so a noisy machine cannot favour one of them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lkmseg import timing
from lkmseg.config import TrainConfig
from lkmseg.files.cache import cache_root
from lkmseg.files.layout import AUTOTUNE
from lkmseg.models import ModelConfig, build_model
from lkmseg.train.runtime import Choice, choose_precision_layout, random_batch, resolve_device
from lkmseg.train.step import timed_step


@dataclass
class Throughput:
    name: str
    images_per_s: float  # median over rounds
    images_per_s_best: float
    step_ms: list[float]
    precision: str
    channels_last: bool
    why: str = ""  # how precision and layout were chosen


@dataclass
class Variant:
    """One model trained one way: ``amp`` / ``channels_last`` as ``lkmseg train`` takes them
    (auto = the measured, cached choice that training would make)."""

    model: ModelConfig
    amp: str = "auto"
    channels_last: str = "auto"


def _make_step(v: Variant, size: tuple[int, int], batch: int, device: torch.device,
               compile_: bool):
    torch.manual_seed(0)
    model = build_model(v.model)
    choice: Choice = choose_precision_layout(v.amp, v.channels_last, model, device,
                                             (batch, *size),
                                             cache_file=cache_root() / AUTOTUNE)
    x, y = random_batch(batch, *size, device)
    return timed_step(model, x, y, choice.precision, choice.channels_last, compile_), choice


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_training(models: dict[str, ModelConfig | Variant], size: tuple[int, int],
                     batch: int = 8, rounds: int = 5, steps_per_round: int = 2,
                     warmup: int = 2, device: str = "auto", tcfg: TrainConfig | None = None,
                     progress=None) -> dict[str, Throughput]:
    """images/s per model (a ModelConfig trains as ``tcfg`` says, a Variant as it says);
    rounds interleave the models (A B C A B C ...)."""
    dev = resolve_device(device)
    tcfg = tcfg or TrainConfig(batch_size=batch)
    variants = {k: m if isinstance(m, Variant) else Variant(m, tcfg.amp, str(tcfg.channels_last))
                for k, m in models.items()}
    steps = {k: _make_step(v, size, batch, dev, tcfg.compile) for k, v in variants.items()}
    probes = {k: timing.Probe(step, group=steps_per_round, sync=lambda: _sync(dev))
              for k, (step, _) in steps.items()}
    for p in probes.values():
        p.warm(warmup)
    timing.interleave(probes, rounds=rounds, progress=progress)
    return {k: Throughput(k, batch / p.median(), batch / p.best(),
                          [round(t * 1000, 2) for t in p.times], steps[k][1].precision,
                          steps[k][1].channels_last, steps[k][1].why)
            for k, p in probes.items()}


def loader_throughput(images, masks, batch: int = 8, n_batches: int = 30,
                      device: str = "cpu") -> float:
    """images/s the training batch source sustains (gather + to-device + augmentation)."""
    from lkmseg.data.loader import BatchSource

    src = BatchSource(images, masks, batch, seed=0, augment=True, device=device)
    for s in range(n_batches):
        src.batch(s)
    return src.images_per_s()
