"""Run folders: weights (safetensors), resumable training state, and rebuilding a model.

Layout of a run folder (contract in DESIGN.md):
  config.json          RunConfig: rebuilds the model and its preprocessing
  model.safetensors    best weights (by validation Dice)
  last.safetensors     latest weights
  state.pt             full training state for --resume (tensors only, weights_only=True)
  train_log.csv, val_log.csv, summary.json
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from lkmseg.config import RunConfig, load_config
from lkmseg.errors import UserError
from lkmseg.fsutil import write_bytes
from lkmseg.models import build_model

BEST, LAST, STATE = "model.safetensors", "last.safetensors", "state.pt"


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A contiguous CPU copy of the model's parameters and buffers."""
    return {k: v.detach().to("cpu").contiguous().clone()
            for k, v in _unwrap(model).state_dict().items()}


def save_weights(path: str | Path, model: nn.Module, metadata: dict | None = None) -> None:
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    write_bytes(path, st_save(model_state(model), metadata=meta))


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: weights file not found; train a model with `lkmseg train`")
    try:
        return st_load(p.read_bytes())
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{p}: corrupt or truncated weights ({e}); "
                        "retrain or restore the file") from e


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    sd = read_weights(path)
    try:
        _unwrap(model).load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"{path}: weights do not match config.json ({first}); "
                        "the run folder was edited — retrain") from e
    return model


def save_state(run_dir: str | Path, state: dict) -> None:
    """Atomically write the full training state (model, optimizer, step, RNG...)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(Path(run_dir) / STATE, buf.getvalue())


def load_state(run_dir: str | Path) -> dict:
    p = Path(run_dir) / STATE
    if not p.is_file():
        raise UserError(f"{p}: no training state to resume from; start a new run instead")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — torch raises many types for a corrupt file
        raise UserError(f"{p}: corrupt training state ({type(e).__name__}); "
                        "start a new run or restore the file") from e


def load_run(run_dir: str | Path, which: str = "best",
             device: str | torch.device = "cpu") -> tuple[nn.Module, RunConfig]:
    """Rebuild a trained model (eval mode) and its RunConfig from a run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: run folder not found; train one with `lkmseg train`")
    cfg = load_config(run_dir)
    model = build_model(cfg.model)
    name = {"best": BEST, "last": LAST}[which]
    path = run_dir / name
    if which == "best" and not path.is_file() and (run_dir / LAST).is_file():
        path = run_dir / LAST
    load_weights(model, path)
    return model.to(device).eval(), cfg
