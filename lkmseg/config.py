"""The run configuration saved as ``config.json`` beside the weights.

Everything needed to rebuild the model and its preprocessing lives here, so a run folder
(or an exported model's metadata) is self-describing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lkmseg import __version__
from lkmseg.errors import UserError
from lkmseg.files.layout import CONFIG
from lkmseg.models.unet import ModelConfig

# Preprocessing contract shared by every engine: RGB, resized to ``size`` (H, W) with
# INTER_AREA, float32 in [0, 1] (x / 255), layout (B, 3, H, W). Output: logits (B, 1, H, W);
# mask = sigmoid(logit) > threshold, i.e. logit > log(t / (1 - t)).
NORMALIZATION = {"scale": 1 / 255.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                 "color": "RGB", "resize": "area"}


@dataclass
class TrainConfig:
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    epochs: int | None = None
    steps: int | None = None
    time_budget_s: float | None = None
    val_every: int | None = None
    warmup_frac: float = 0.03
    amp: str = "auto"  # auto | off | bf16 | fp16
    channels_last: str = "auto"  # auto (measured on CPU) | on | off
    compile: bool = False
    # batches a background thread prepares ahead; 0 = in the training thread; None = auto
    # (see lkmseg.data.loader.prefetch_depth: ahead on GPU or where a core is spare)
    workers: int | None = None
    seed: int = 0
    val_frac: float = 0.25
    augment: bool = True
    ckpt_every: int | None = None  # steps between checkpoints (default: at each validation)
    sync_bn: bool = False
    skip_bad: bool = False
    group_pattern: str | None = None
    full_res_eval: bool = True
    tensorboard: bool = True  # event files in the run folder when tensorboard is installed
    init: str | None = None  # start from these weights (a run folder or .safetensors file)


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    size: tuple[int, int] = (256, 256)  # (H, W) the model is trained at
    threshold: float = 0.5
    normalization: dict = field(default_factory=lambda: dict(NORMALIZATION))
    data: dict = field(default_factory=dict)  # source, layout, split (train/val groups)
    train: TrainConfig = field(default_factory=TrainConfig)
    lkmseg_version: str = __version__

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        try:
            return cls(model=ModelConfig(**d["model"]), size=tuple(int(s) for s in d["size"]),
                       threshold=float(d.get("threshold", 0.5)),
                       normalization=dict(d.get("normalization", NORMALIZATION)),
                       data=dict(d.get("data", {})), train=TrainConfig(**d.get("train", {})),
                       lkmseg_version=str(d.get("lkmseg_version", "?")))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"config is invalid ({type(e).__name__}: {e}): "
                            "re-create the run with `lkmseg train`") from e


class _Invalid(ValueError):
    """A config value that fails an explicit check (the only error load_config turns into a
    one-line UserError)."""


def _positive_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _validate(cfg: RunConfig) -> None:
    """Catch hand-edited values before they fail deep inside model building (an _Invalid
    naming the field). Building the model is not guarded: once the values are valid, a failure
    there is a bug and shows its traceback."""
    import torch

    from lkmseg.models import build_model

    for key in ("width", "depth", "in_channels"):
        v = getattr(cfg.model, key)
        if not _positive_int(v):
            raise _Invalid(f"model.{key} must be a positive integer, not {v!r}")
    if cfg.model.depth > 12:
        raise _Invalid(f"model.depth must be at most 12, not {cfg.model.depth}")
    if cfg.model.center is not None and not _positive_int(cfg.model.center):
        raise _Invalid(f"model.center must be null or a positive integer, not "
                       f"{cfg.model.center!r}")
    if len(cfg.size) != 2 or not all(16 <= s <= 8192 for s in cfg.size):
        raise _Invalid(f"size must be [height, width] within 16..8192, not {list(cfg.size)}")
    if not 0 < cfg.threshold < 1:
        raise _Invalid(f"threshold must be between 0 and 1, not {cfg.threshold}")
    with torch.device("meta"):  # builds the model without allocating its weights
        build_model(cfg.model)


def load_config(path: str | Path) -> RunConfig:
    """Read and check ``config.json`` (a run folder or the file itself); every problem is a
    UserError naming the file."""
    p = Path(path)
    p = p / CONFIG if p.is_dir() else p
    if not p.is_file():
        raise UserError(f"{p}: no config.json here; pass a run folder made by `lkmseg train`")
    try:
        d = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{p}: unreadable config ({e}); "
                        "re-create the run with `lkmseg train`") from e
    if not isinstance(d, dict):
        raise UserError(f"{p}: config must be a JSON object; re-create the run with `lkmseg train`")
    try:
        cfg = RunConfig.from_dict(d)
    except UserError as e:
        raise UserError(str(e) if str(p) in str(e) else f"{p}: {e}") from e
    try:
        _validate(cfg)
    except _Invalid as e:  # the explicit checks only: a failure building the model is a bug
        raise UserError(f"{p}: invalid config ({e}); restore it or start a new run") from e
    return cfg
