"""Where and how to compute: device, precision, memory format, distributed setup.

Precision x memory layout is one measured choice (``choose_precision_layout``): with
``--amp auto`` / ``--channels-last auto``, a few training steps of every candidate worth
trying here are timed at the run's size and batch and the fastest is kept, cached per machine
(CPU model and flags or GPU, torch version, threads), model, size and batch. bf16 is a
candidate only where it is native (``lkmseg.hw.native_bf16``): emulated bf16 was 10-20x
slower than fp32 on a CPU without AVX512-BF16/AMX, and on a GPU before compute capability
8.0 fp16 with a gradient scaler is the fast mixed precision. ``build_runtime`` puts it
together for a run: the process group, the device (with cuDNN autotuning and TF32 on a GPU)
and rank 0's choice for every rank.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass

import torch
import torch.distributed as dist
from torch import nn

from lkmseg import devices, hw, tune
from lkmseg.config import RunConfig
from lkmseg.errors import UserError
from lkmseg.files.cache import cache_root
from lkmseg.files.layout import AUTOTUNE
from lkmseg.train import step
from lkmseg.train.distributed import decide_on_rank0

AMP_CHOICES = ("auto", "off", "bf16", "fp16")
LAYOUT_CHOICES = ("auto", "on", "off")
DTYPES = step.DTYPES
TRAIN_BUDGET_S = 20.0  # the start-up measurement of all candidates takes about this long
TRAIN_ROUNDS = 8  # timed steps per candidate at most (the best counts), within the budget


@dataclass(frozen=True)
class Choice:
    """How to train: precision and layout, and why (printed at start, saved in the run)."""

    precision: str  # fp32 | bf16 | fp16
    channels_last: bool
    why: str
    measured: dict[str, float] = field(default_factory=dict)  # label -> images/s
    cached: bool = False
    machine: str = ""  # hw.machine_key() where it was chosen

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return DTYPES[self.precision]

    @property
    def use_scaler(self) -> bool:
        return self.precision == "fp16"

    @property
    def label(self) -> str:
        return label(self.precision, self.channels_last)

    def to_dict(self) -> dict:
        return {"precision": self.precision, "channels_last": self.channels_last,
                "why": self.why, "measured_images_per_s": dict(self.measured),
                "cached": self.cached, "machine": self.machine}


def label(precision: str, channels_last: bool) -> str:
    return f"{precision} {'channels_last' if channels_last else 'NCHW'}"


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None = fp32
    use_scaler: bool
    channels_last: bool
    rank: int = 0
    world: int = 1
    choice: Choice | None = None  # how precision and layout were chosen

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_choice(cls, device: torch.device, choice: Choice, rank: int = 0,
                    world: int = 1) -> Runtime:
        return cls(device, choice.amp_dtype, choice.use_scaler, choice.channels_last, rank,
                   world, choice)

    def autocast(self):
        return step.autocast(self.device, self.amp_dtype)

    def describe(self) -> str:
        name = (torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                else f"cpu ({torch.get_num_threads()} threads)")
        amp = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        fmt = "channels_last" if self.channels_last else "contiguous"
        ddp = f", {self.world} processes" if self.world > 1 else ""
        return f"{name}, {amp}, {fmt}{ddp}"


resolve_device = devices.torch_device  # the name training code knows it by


def candidate_precisions(amp: str, device: torch.device) -> tuple[list[str], str]:
    """(precisions worth measuring for ``--amp amp`` on ``device``, why)."""
    amp = str(amp).lower()
    if amp not in AMP_CHOICES:
        raise UserError(f"--amp {amp}: choose {', '.join(AMP_CHOICES)}")
    native = hw.native_bf16(device)
    if amp == "off":
        return ["fp32"], "--amp off"
    if amp == "fp16":
        if device.type != "cuda":
            raise UserError("--amp fp16 is not supported on CPU; use --amp bf16 or off")
        return ["fp16"], "--amp fp16 (with a gradient scaler)"
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError(f"--amp bf16: {hw.device_name(device)} has no bf16 support; "
                            "use --amp fp16 or off")
        return ["bf16"], "--amp bf16" + ("" if native else f" (slow: {hw.why_not_bf16(device)})")
    if device.type == "cuda":
        if native:
            return ["bf16"], f"auto: bf16 is native on {hw.device_name(device)}"
        return ["fp16"], f"auto: fp16 + gradient scaler, because {hw.why_not_bf16(device)}"
    if native:
        return ["fp32", "bf16"], "auto: bf16 is native on this CPU"
    return ["fp32"], f"auto: fp32, because {hw.why_not_bf16(device)}"


def candidate_layouts(setting: str) -> list[bool]:
    """channels_last values worth measuring for ``--channels-last setting``."""
    setting = str(setting).lower()
    if setting not in LAYOUT_CHOICES:
        raise UserError(f"--channels-last {setting}: choose {', '.join(LAYOUT_CHOICES)}")
    return {"on": [True], "off": [False], "auto": [True, False]}[setting]


def _model_key(model: nn.Module) -> object:
    cfg = getattr(model, "cfg", None)
    return asdict(cfg) if is_dataclass(cfg) else type(model).__name__


def cache_key(model: nn.Module, device: torch.device, shape: tuple[int, int, int],
              labels: list[str]) -> dict:
    """What a measured choice depends on: machine (CPU model + flags or GPU, torch version,
    threads), model configuration, batch and size, and the candidates compared."""
    bs, h, w = shape
    return {"what": "train", "machine": hw.machine_key(device), "device": device.type,
            "model": _model_key(model), "batch": bs, "size": [h, w], "candidates": labels}


def train_step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str,
                  cl: bool) -> Callable[[], None]:
    """One training step as ``train`` runs it, on a copy of ``model`` (for timing)."""
    return step.timed_step(model, x, y, precision, cl)


def random_batch(bs: int, h: int, w: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random (images, masks) batch for timing steps (speed does not depend on it)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(bs, 3, h, w, generator=g).to(device)
    y = (torch.rand(bs, 1, h, w, generator=g) > 0.5).float().to(device)
    return x, y


def measure_candidates(model: nn.Module, device: torch.device, shape: tuple[int, int, int],
                       cands: list[tuple[str, bool]],
                       budget_s: float = TRAIN_BUDGET_S) -> tuple[dict[str, float], int]:
    """Training images/s of each (precision, channels_last) candidate, interleaved, on copies
    of ``model``; returns (label -> images/s, batch measured at). Where one step is so slow that
    two per candidate would not fit ``budget_s``, a smaller batch is measured instead."""
    bs, h, w = shape
    x, y = random_batch(bs, h, w, device)
    first = train_step_fn(model, x, y, *cands[0])
    t0 = time.perf_counter()
    first()  # a first step (the slowest: it sets kernels up) sizes the measurement
    t = time.perf_counter() - t0
    del first  # its model copy and optimizer state
    if bs > 1 and t * 2 * len(cands) > budget_s:
        bs = max(1, int(bs * budget_s / (t * 2 * len(cands))))
        x, y = random_batch(bs, h, w, device)
    fns = {label(p, cl): train_step_fn(model, x, y, p, cl) for p, cl in cands}
    secs = tune.time_candidates(fns, budget_s=budget_s, rounds=TRAIN_ROUNDS)
    return {k: round(bs / s, 3) for k, s in secs.items()}, bs


def _kept(previous: dict | None, cands: list[tuple[str, bool]],
          device: torch.device) -> Choice | None:
    """A resumed run keeps the choice its start made on this same machine."""
    if not isinstance(previous, dict) or previous.get("machine") != hw.machine_key(device):
        return None
    pc = (previous.get("precision"), previous.get("channels_last"))
    if pc not in cands:
        return None
    return Choice(pc[0], pc[1], "kept from this run's start on this machine (resumed)",
                  dict(previous.get("measured_images_per_s") or {}), True,
                  previous["machine"])


def choose_precision_layout(amp: str, channels_last: str, model: nn.Module,
                            device: torch.device, shape: tuple[int, int, int],
                            cache_file: os.PathLike | None = None,
                            notify: Callable[[str], None] | None = None,
                            budget_s: float = TRAIN_BUDGET_S,
                            previous: dict | None = None) -> Choice:
    """The precision and memory layout to train with (see the module docstring).
    ``shape`` = (batch, height, width); ``notify`` hears about a measurement before it runs;
    ``previous``: the choice a resumed run recorded (``Choice.to_dict``), kept on the same
    machine."""
    precs, why = candidate_precisions(amp, device)
    layouts = candidate_layouts(channels_last)
    cands = [(p, cl) for p in precs for cl in layouts]
    machine = hw.machine_key(device)
    if len(cands) == 1:
        p, cl = cands[0]
        return Choice(p, cl, f"{why}; --channels-last {'on' if cl else 'off'}", machine=machine)
    kept = _kept(previous, cands, device)
    if kept is not None:
        return kept
    labels = [label(p, cl) for p, cl in cands]
    key = cache_key(model, device, shape, labels)
    rec = tune.cached(key, cache_file)
    if rec is not None and rec.get("best") in labels:
        p, cl = cands[labels.index(rec["best"])]
        return Choice(p, cl, f"{why}; fastest measured here on {rec.get('date', '?')} (cached "
                             f"in {cache_file or tune.cache_file()})",
                      dict(rec.get("images_per_s", {})), cached=True, machine=machine)
    if notify:
        notify(f"measuring precision x layout (once per machine/config): {', '.join(labels)}…")
    ips, mbs = measure_candidates(model, device, shape, cands, budget_s)
    best = max(labels, key=lambda k: ips[k])
    at = f" at batch {mbs}" if mbs != shape[0] else ""
    is_busy, load = hw.busy()
    if is_busy:  # keep it for this run only: a quieter machine may rank them differently
        at += f" on a busy machine ({load}; not cached, measured again next run)"
    else:
        tune.remember(key, {"best": best, "images_per_s": ips, "batch_measured": mbs},
                      cache_file)
    p, cl = cands[labels.index(best)]
    return Choice(p, cl, f"{why}; fastest of {len(cands)} measured{at}", ips, machine=machine)


def describe_choice(c: Choice) -> str:
    """The start-of-training line: what was chosen and why."""
    parts = [f"precision/layout: {c.label} ({c.why})"]
    if c.measured:
        parts.append("measured img/s: " + ", ".join(f"{k} {v:.1f}"
                                                     for k, v in c.measured.items()))
    return "; ".join(parts)


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
        _import_before_process_group()
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, local


def build_runtime(cfg: RunConfig, device_name: str, model: nn.Module,
                  notify: Callable[[str], None] | None = None,
                  previous: dict | None = None) -> Runtime:
    """The run's Runtime: joins the process group under torchrun, takes this rank's device
    and the precision/layout ``choose_precision_layout`` picks on rank 0."""
    rank, world, local = init_distributed(device_name)
    device = resolve_device(device_name)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    t = cfg.train
    # DDP needs the same precision and parameter layout on every rank: rank 0's choice (its
    # measurement, or the cached one) decides for all.
    choice = decide_on_rank0(lambda: choose_precision_layout(
        t.amp, str(t.channels_last), model, device, (t.batch_size, *cfg.size),
        cache_file=cache_root() / AUTOTUNE, notify=notify, previous=previous))
    return Runtime.from_choice(device, choice, rank, world)


def _import_before_process_group() -> None:
    """Import what DDP imports (torch._dynamo, and through it torch.distributed.nn.functional)
    before the process group exists. That module keeps ``group.WORLD`` in its functions'
    default arguments: imported after ``init_process_group`` it holds the group for good, so
    ``destroy_process_group`` cannot free it and its gloo threads still run while the
    interpreter exits, where they can abort the process ("terminate called without an active
    exception") after the run has finished."""
    import torch._dynamo  # noqa: F401
    import torch.distributed.nn.functional  # noqa: F401
