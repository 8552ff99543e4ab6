"""Run folders: weights (safetensors), resumable training state (written, read and checked
against the model and optimizer it resumes), and rebuilding a model.

Layout of a run folder (README, "Run folder"; names in ``lkmseg.files.layout``):
  config.json          RunConfig: rebuilds the model and its preprocessing
  model.safetensors    best weights (by validation Dice)
  last.safetensors     latest weights
  state.pt             full training state for --resume (tensors only, weights_only=True)
  train_log.csv, val_log.csv, summary.json
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from lkmseg.config import RunConfig, load_config
from lkmseg.errors import UserError
from lkmseg.files.layout import BEST, CONFIG, LAST, STATE, SUMMARY
from lkmseg.fsutil import write_bytes
from lkmseg.models import build_model

__all__ = ["BEST", "LAST", "PROGRESS_KEYS", "STATE", "check_optimizer_state", "check_progress",
           "check_state_dict", "has_checkpoint", "load_run", "load_state", "load_weights",
           "model_state", "read_summary", "read_weights", "recorded_choice", "resume_state",
           "save_state", "save_weights"]


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
    except (SafetensorError, OSError) as e:
        raise UserError(f"{p}: corrupt or truncated weights ({e}); "
                        "retrain or restore the file") from e


def check_state_dict(model: nn.Module, sd: dict, where: str | Path) -> None:
    """UserError unless ``sd`` has exactly the model's tensor names and shapes."""
    want = {k: tuple(v.shape) for k, v in _unwrap(model).state_dict().items()}
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"{where}: not a weights dictionary; retrain or restore the file")
    have = {k: tuple(v.shape) for k, v in sd.items()}
    missing, extra = sorted(want.keys() - have.keys()), sorted(have.keys() - want.keys())
    wrong = sorted(k for k in want.keys() & have.keys() if want[k] != have[k])
    if missing or extra or wrong:
        first = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}" if extra
                 else f"{wrong[0]} is {have[wrong[0]]}, the model wants {want[wrong[0]]}")
        n = len(missing) + len(extra) + len(wrong)
        raise UserError(f"{where}: weights do not match config.json ({first}"
                        f"{f' and {n - 1} more' if n > 1 else ''}); "
                        "the run folder was edited — retrain")


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    sd = read_weights(path)
    check_state_dict(model, sd, path)
    _unwrap(model).load_state_dict(sd, strict=True)
    return model


def save_state(run_dir: str | Path, state: dict) -> None:
    """Atomically write the full training state (model, optimizer, step, RNG...)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(Path(run_dir) / STATE, buf.getvalue())


# What torch.load raises for a truncated, corrupt or foreign file (weights_only=True refuses
# pickled code with UnpicklingError; a damaged zip container is a RuntimeError from the reader).
_TORCH_LOAD_ERRORS = (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile,
                      OSError)


def load_state(run_dir: str | Path) -> dict:
    p = Path(run_dir) / STATE
    if not p.is_file():
        raise UserError(f"{p}: no training state to resume from; start a new run instead")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except _TORCH_LOAD_ERRORS as e:
        raise UserError(f"{p}: corrupt training state ({type(e).__name__}); "
                        "start a new run or restore the file") from e
    if not isinstance(state, dict) or not {"model", "optimizer", "progress"} <= state.keys():
        raise UserError(f"{p}: not an lkmseg training state (model/optimizer/progress "
                        "missing); start a new run or restore the file")
    return state


PROGRESS_KEYS = ("step", "elapsed_s", "best_dice", "best_step", "last_dice")


def check_optimizer_state(opt: torch.optim.Optimizer, sd: object, where: Path) -> None:
    """UserError unless ``sd`` is an optimizer state for exactly these parameter groups."""
    fix = "does not match config.json; start a new run or restore the file"
    groups = sd.get("param_groups") if isinstance(sd, dict) else None
    if not isinstance(groups, list) or not isinstance(sd.get("state"), dict):
        raise UserError(f"{where}: optimizer state is malformed; {fix}")
    want = [len(g["params"]) for g in opt.param_groups]
    have = [len(g.get("params", ())) if isinstance(g, dict) else -1 for g in groups]
    if want != have:
        raise UserError(f"{where}: optimizer state has parameter groups {have}, this model "
                        f"needs {want}; {fix}")


def check_progress(p: object, where: Path) -> dict:
    """The training progress of a state (step, elapsed_s, best and last Dice), numeric."""
    if not isinstance(p, dict) or not all(isinstance(p.get(k), (int, float))
                                          for k in PROGRESS_KEYS):
        raise UserError(f"{where}: training progress ({', '.join(PROGRESS_KEYS)}) is missing or "
                        "not numeric; start a new run or restore the file")
    return p


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether the run wrote any checkpoint (one killed before its first has none)."""
    return any((Path(run_dir) / f).is_file() for f in (STATE, LAST, BEST))


def resume_state(run_dir: str | Path, model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    """``state.pt``, checked against the model and optimizer it resumes: UserError naming the
    file unless its weights, optimizer state and progress fit them."""
    st = load_state(run_dir)
    where = Path(run_dir) / STATE
    check_state_dict(model, st["model"], where)
    check_optimizer_state(opt, st["optimizer"], where)
    check_progress(st["progress"], where)
    return st


def recorded_choice(run_dir: str | Path) -> dict | None:
    """The precision/layout a run recorded at its start (config.json "runtime"), if any."""
    try:
        rec = json.loads((Path(run_dir) / CONFIG).read_text()).get("runtime")
    except (OSError, ValueError, AttributeError):
        return None  # load_config already vetted the file; no record only costs a measurement
    return rec if isinstance(rec, dict) else None


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


def read_summary(run_dir: str | Path) -> dict:
    """The run's ``summary.json``; UserError naming the file when it is missing or damaged."""
    p = Path(run_dir) / SUMMARY
    if not p.is_file():
        raise UserError(f"{p}: not found (the run has not finished); resume it with "
                        f"`lkmseg train --resume {run_dir}`")
    try:
        d = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{p}: unreadable summary ({type(e).__name__}); restore the file or "
                        "delete the run folder to train it again") from e
    if not isinstance(d, dict):
        raise UserError(f"{p}: not a run summary (a JSON object); restore the file or delete "
                        "the run folder to train it again")
    return d
