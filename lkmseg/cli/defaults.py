"""``lkmseg train --config FILE``: option defaults from a run's config.json or a TOML file.

The file fills Click's ``default_map``, so options given on the command line override it.
A run's config.json is read by its structure (model.block, size, train.lr, data.source...);
a TOML file names options as on the command line, either flat or under ``[train]``::

    block = "1x5"
    size = "256"          # or [256, 384]
    time-budget = "10m"
    lr = 3e-3
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from lkmseg.errors import UserError

# config.json's train.* keys that are train options of the same name
TRAIN_KEYS = ("epochs", "steps", "batch_size", "lr", "val_every", "amp", "channels_last",
              "compile", "workers", "seed", "val_frac", "augment", "ckpt_every", "sync_bn",
              "skip_bad", "group_pattern", "tensorboard")


def _from_run_config(d: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    model, train, data = d.get("model") or {}, d.get("train") or {}, d.get("data") or {}
    for key in ("block", "width", "depth"):
        if key in model:
            out[key] = model[key]
    if "size" in d:
        out["size"] = d["size"]
    out.update({k: train[k] for k in TRAIN_KEYS if train.get(k) is not None})
    if train.get("time_budget_s"):
        out["time_budget"] = f"{float(train['time_budget_s']):g}s"
    if data.get("source") and data.get("layout") != "synthetic":
        out["data"] = data["source"]
    return out


def _read(path: Path) -> dict:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--config {path}: cannot read it ({e}); check the path") from e
    if path.suffix.lower() == ".json":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"--config {path}: not valid JSON ({e}); fix the file") from e
    else:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover — Python 3.10
            import tomli as tomllib
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"--config {path}: not valid TOML ({e}); fix the file") from e
    if not isinstance(d, dict):
        raise UserError(f"--config {path}: expected a table of options, not {type(d).__name__}")
    return d


def defaults_from_file(path: str | Path, valid: set[str]) -> dict[str, Any]:
    """Option name -> value from ``path``; a key that names no option is a UserError."""
    p = Path(path)
    d = _read(p)
    if isinstance(d.get("model"), dict):  # a run's config.json (or the same in TOML)
        values = _from_run_config(d)
    else:
        values = {**{k: v for k, v in d.items() if k != "train"}, **(d.get("train") or {})}
        values = {k.replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise UserError(f"--config {p}: unknown option {unknown[0]!r}; use the names of "
                        f"`lkmseg train --help` (e.g. {', '.join(sorted(valid)[:6])}, ...)")
    if isinstance(values.get("size"), list):
        values["size"] = "x".join(str(v) for v in values["size"])
    return values


def config_callback(ctx: typer.Context, param: typer.CallbackParam,
                    value: Path | None) -> Path | None:
    """Eager ``--config``: load the file into the command's default_map."""
    if value is None:
        return None
    valid = {p.name for p in ctx.command.params if p.name and p.name not in ("config",)}
    ctx.default_map = {**(ctx.default_map or {}), **defaults_from_file(value, valid)}
    return value
