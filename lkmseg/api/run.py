"""``lkmseg.train`` and ``Run``: train a U-Net (or resume one) from Python, as the CLI does."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lkmseg.api.parse import duration
from lkmseg.api.parse import size as size_of
from lkmseg.config import RunConfig, TrainConfig, load_config
from lkmseg.errors import UserError
from lkmseg.files.layout import SUMMARY
from lkmseg.models import ModelConfig

if TYPE_CHECKING:
    from lkmseg.api.model import Model

MODEL_OPTIONS = ("kernel", "width", "depth", "arch", "where", "encoder_weights")
TRAIN_OPTIONS = tuple(f.name for f in fields(TrainConfig)
                      if f.name not in ("steps", "time_budget_s"))


@dataclass
class Run:
    """A run folder: its path, config and summary (``summary.json``: Dice, speed, machine).

    Usable wherever a path is (``os.fspath(run)``), e.g. ``lkmseg.load(run)``.

    >>> run = lkmseg.train("1x5", steps=200)
    >>> run.path, run.summary["best_val_dice"]
    """

    path: Path
    config: RunConfig
    summary: dict = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | os.PathLike) -> Run:
        """The run in folder ``path`` (config.json checked; summary.json if written).

        >>> Run.open("runs/1x5_128x128").best_dice
        """
        p = Path(path)
        cfg = load_config(p)
        try:
            summary = json.loads((p / SUMMARY).read_text())
        except (OSError, ValueError):
            summary = {}
        return cls(p, cfg, summary if isinstance(summary, dict) else {})

    @property
    def best_dice(self) -> float | None:
        return self.summary.get("best_val_dice")

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    def load(self, **kw: Any) -> Model:
        """``lkmseg.load(run, **kw)``."""
        from lkmseg.api.model import load

        return load(self, **kw)

    def __fspath__(self) -> str:
        return str(self.path)




def build_config(block: str | None = "1x5", size: Any = 128, steps: int | None = None,
                 time_budget: float | str | None = None, **options: Any) -> RunConfig:
    """The RunConfig ``train`` would use: ``options`` are ModelConfig (kernel, width, depth,
    arch, where, encoder_weights) and TrainConfig fields (batch_size, lr, epochs, amp, ...).
    ``block`` None: the architecture's default (3x3 for unet; others as built)."""
    from lkmseg.models import parse_arch, parse_block

    unknown = sorted(set(options) - set(MODEL_OPTIONS) - set(TRAIN_OPTIONS))
    if unknown:
        raise UserError(f"unknown training option {unknown[0]!r}: choose from "
                        f"{', '.join(MODEL_OPTIONS + TRAIN_OPTIONS)}")
    kernel = options.pop("kernel", None)
    # unet needs a number in KxK/1xK/gcnK; other archs may keep a literal K (each conv's own)
    if block is not None and (parse_arch(options.get("arch", "unet")) is None
                              or kernel is not None):
        block = parse_block(block, kernel).name
    model = ModelConfig(block=block, **{k: options.pop(k) for k in MODEL_OPTIONS[1:]
                                        if k in options})
    train = TrainConfig(steps=steps, time_budget_s=duration(time_budget), **options)
    return RunConfig(model=model, size=size_of(size), train=train)


def train(block: str = "1x5", data: str | os.PathLike | None = None,
          size: int | str | tuple[int, int] = 128, time_budget: float | str | None = None,
          steps: int | None = None, out: str | os.PathLike = "runs", name: str | None = None,
          device: str = "auto", *, resume: str | os.PathLike | None = None,
          verbose: bool = True, console: Any = None, **options: Any) -> Run:
    """Train a U-Net with ``block`` (3x3, 5x5, 1x5, KxK, 1xK, gcnK) and return its ``Run``;
    ``arch="smp:Unet:resnet34"`` trains an smp model whose square convs become ``block``.

    ``data``: a dataset folder (Carvana train/+train_masks/, or images/+masks/; default: the
    embedded synthetic set); ``size``: N, "HxW" or (H, W); stop after ``steps``, after
    ``time_budget`` (seconds or "10m"), or after ``epochs=`` (default: 10 epochs);
    ``resume``: continue that run folder (steps/time_budget/epochs extend it). ``options``:
    width, depth, kernel, arch, where, encoder_weights, init, batch_size, lr, epochs, amp,
    channels_last, seed, val_every, tensorboard, ... (``lkmseg train --help`` explains each).

    >>> run = lkmseg.train("1x5", data="data/carvana", size=256, time_budget="10m")
    >>> run.summary["best_val_dice"], run.path
    """
    from lkmseg.train.loop import train_run

    if resume is not None:
        cfg = load_config(resume)
        epochs = options.pop("epochs", None)
        if options:
            raise UserError(f"resume: {sorted(options)[0]} cannot change when resuming; "
                            "only steps, time_budget and epochs can")
        if steps or epochs or time_budget:  # extend or change the stopping rule
            cfg.train.steps, cfg.train.epochs = steps, epochs
            cfg.train.time_budget_s = duration(time_budget)
    else:
        cfg = build_config(block, size, steps, time_budget, **options)
    if console is None and verbose:
        from rich.console import Console

        console = Console(soft_wrap=True)
    run_dir, summary = train_run(cfg, data, out, name, device, resume, console)
    return Run(Path(run_dir), cfg, summary)


def convert(run: str | os.PathLike, block: str = "1xK", *, rank: int | float | None = None,
            where: str = "all", fine_tune: float | str | None = None,
            out: str | os.PathLike | None = None, verbose: bool = True, console: Any = None,
            **options: Any) -> Run:
    """Convert a trained square run to ``block`` by truncated SVD (no retraining): BatchNorm
    re-estimated, then fine-tuned for ``fine_tune`` (seconds or "60s") if given. Returns the
    new run; its ``convert.json`` holds the energy kept per layer and the Dice of the source,
    the converted and the fine-tuned model. ``options``: lr, bn_images, data, device, full_res.

    >>> new = lkmseg.convert("runs/5x5_128x128", "1xK", fine_tune="60s")
    >>> new.summary["convert"]["dice"]
    """
    from lkmseg.train.convert import ConvertOptions, convert_run

    valid = {f.name for f in fields(ConvertOptions)} - {"block", "where", "rank",
                                                         "fine_tune_s", "out"}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise UserError(f"unknown convert option {unknown[0]!r}: choose from "
                        f"{', '.join(sorted(valid))}")
    if options.get("data") is not None:
        options["data"] = Path(options["data"])
    o = ConvertOptions(block=block, where=where, rank=rank,
                       fine_tune_s=duration(fine_tune, "fine_tune"),
                       out=Path(out) if out is not None else None, **options)
    if console is None and verbose:
        from rich.console import Console

        console = Console(soft_wrap=True)
    run_dir, _ = convert_run(Path(os.fspath(run)), o, console)
    return Run.open(run_dir)
