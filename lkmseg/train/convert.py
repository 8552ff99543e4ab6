"""`lkmseg convert`: a trained square run becomes a separable run without retraining.

Reads top to bottom: load the source run, fit each k x k kernel with the chosen form by SVD
(``lkmseg.models.surgery``), re-estimate BatchNorm statistics on training images, optionally
fine-tune with the training loop (``TrainConfig.init``), and write a normal run folder plus
``convert.json`` (energy kept per layer, validation Dice of source, converted, fine-tuned).
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lkmseg.config import RunConfig
from lkmseg.errors import UserError
from lkmseg.files import run_folder as ckpt
from lkmseg.files.layout import CONFIG, CONVERT_REPORT, CONVERTED, SUMMARY, TRAIN_LOG, VAL_LOG
from lkmseg.fsutil import write_json
from lkmseg.models import NATIVE, build_model, count_params, parse_arch, recalibrate_bn, separable
from lkmseg.models.surgery import parse_form
from lkmseg.train.evaluate import evaluate, evaluate_full_res
from lkmseg.train.logs import TRAIN_FIELDS, VAL_FIELDS, CsvLog
from lkmseg.train.loop import train_run
from lkmseg.train.runtime import Runtime, resolve_device


@dataclass
class ConvertOptions:
    block: str = "1xK"  # a literal K keeps the source's kernel
    where: str = "all"
    rank: int | float | None = None
    fine_tune_s: float | None = None
    lr: float = 3e-4
    bn_images: int = 256
    out: Path | None = None  # default: beside the source, <name>-<block>
    data: Path | None = None  # default: where the source was trained
    device: str = "auto"
    full_res: bool = True


def _check_source(cfg: RunConfig, run: Path) -> None:
    m = cfg.model
    if m.base is not None or (parse_arch(m.arch) is not None and m.block != NATIVE):
        raise UserError(f"{run}: this run is itself made by surgery (block {m.block}, where "
                        f"{m.where}); convert the square run it came from")


def target_config(cfg: RunConfig, o: ConvertOptions, surgered: nn.Module) -> RunConfig:
    """The run config that rebuilds the converted model: the seed U-Net with the new block
    when the layers line up one to one (lkmseg's own 1xK / gcnK / KxK blocks), else the
    source architecture plus the surgery (block, where, rank)."""
    m = cfg.model
    form = parse_form(o.block)
    unet = parse_arch(m.arch) is None
    block = replace(form, kernel=form.kernel or m.spec.kernel).name if unet else form.name
    if unet and o.where == "all" and o.rank is None:
        native = replace(m, block=block)
        if _same_layout(surgered, build_model(native)):
            return replace(cfg, model=native)
    model = replace(m, block=block, where=o.where, rank=o.rank,
                    base=m.block if unet else None)
    return replace(cfg, model=model)


def _shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(v.shape) for v in model.state_dict().values()]


def _same_layout(a: nn.Module, b: nn.Module) -> bool:
    return _shapes(a) == _shapes(b)


def transfer(surgered: nn.Module, target: nn.Module) -> nn.Module:
    """Copy the surgered model's tensors into the model the target config builds (same names,
    or the same tensors in the same order under lkmseg's block names)."""
    src, dst = surgered.state_dict(), target.state_dict()
    if src.keys() != dst.keys():
        if not _same_layout(surgered, target):  # target_config guarantees one or the other
            raise RuntimeError("converted model and its config differ in layout")
        src = dict(zip(dst.keys(), src.values()))
    target.load_state_dict(src, strict=True)
    return target


def _batches(images: np.ndarray, idx: np.ndarray, batch: int, device: torch.device):
    for s in range(0, len(idx), batch):
        x = torch.from_numpy(images[idx[s:s + batch]]).to(device)
        yield x.permute(0, 3, 1, 2).float().div_(255)  # (B, 3, H, W) in [0, 1]


class _Scorer:
    """Validation Dice at the training size (and at full resolution) of one data split."""

    def __init__(self, prep, cfg: RunConfig, device: torch.device, full_res: bool) -> None:
        self.prep, self.cfg, self.device, self.full_res = prep, cfg, device, full_res
        self.rt = Runtime(device, None, False, False)

    def __call__(self, model: nn.Module) -> dict:
        model = model.to(self.device).eval()
        p, c = self.prep, self.cfg
        out = {"dice": evaluate(model, p.val_images, p.val_masks, self.rt,
                                threshold=c.threshold)}
        if self.full_res and p.val_items:
            out["dice_full_res"] = evaluate_full_res(model, p.val_items, c.size, c.threshold,
                                                     self.device)
        return out


def _prepare(cfg: RunConfig, o: ConvertOptions, run: Path):
    """The source run's own train/val split (checked: same validation groups)."""
    from lkmseg.data.prepare import prepare

    t = cfg.train
    data = o.data
    if data is None and cfg.data.get("layout") != "synthetic":
        data = Path(cfg.data.get("source", ""))
        if not data.exists():
            raise UserError(f"{run} was trained on {data}, which is not here; pass --data")
    prep = prepare(data, cfg.size, val_frac=t.val_frac, seed=t.seed,
                   group_pattern=t.group_pattern, skip_bad=t.skip_bad)
    want = cfg.data.get("val_groups")
    have = sorted({i.group for i in prep.val_items})
    if want is not None and sorted(want) != have:
        raise UserError(f"{prep.source}: splits into other validation groups than {run} was "
                        "trained with; pass the --data it was trained on")
    return data, prep


def _bn_batches(prep, cfg: RunConfig, o: ConvertOptions, device: torch.device):
    rng = np.random.default_rng(cfg.train.seed)
    idx = rng.permutation(len(prep.train_images))[:o.bn_images]
    return _batches(prep.train_images, idx, cfg.train.batch_size, device)


def convert_run(run: str | Path, o: ConvertOptions, console=None) -> tuple[Path, dict]:
    """Convert ``run``; returns (new run folder, the report written as convert.json)."""
    t0, run = time.perf_counter(), Path(run)
    src, cfg = ckpt.load_run(run)
    _check_source(cfg, run)
    device = resolve_device(o.device)
    out = o.out or run.parent / f"{run.name}-{parse_form(o.block).name}"
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: exists and is not empty; choose another --out")
    data, prep = _prepare(cfg, o, run)
    score = _Scorer(prep, cfg, device, o.full_res)
    say = console.print if console is not None else (lambda *a, **k: None)
    say(f"source {run}: {cfg.model.block}, {count_params(src) / 1e6:.2f} M params")
    dice = {"source": score(src)}
    surgered, report = separable(copy.deepcopy(src), o.block, o.where, init="svd",
                                 rank=o.rank, example=(1, cfg.model.in_channels, *cfg.size))
    new_cfg = target_config(cfg, o, surgered)
    model = transfer(surgered, build_model(new_cfg.model)).to(device)
    say(report.table(), highlight=False)
    dice["converted_as_is"] = score(model)
    n_bn = recalibrate_bn(model, _bn_batches(prep, cfg, o, device))
    dice["converted"] = score(model)
    say(f"BatchNorm re-estimated on {n_bn} training images")
    if o.fine_tune_s:
        summary = _fine_tune(model, new_cfg, o, data, out, device, console)
        dice["fine_tuned"] = score(ckpt.load_run(out, device=device)[0])
    else:
        summary = _write_run(model, new_cfg, out, dice["converted"])
    result = {"source": str(run), "out": str(out), "block": new_cfg.model.block,
              "where": o.where, "rank": o.rank, "model": new_cfg.model.to_dict(),
              "bn_images": n_bn, "fine_tune_s": o.fine_tune_s, "lr": o.lr, "dice": dice,
              "surgery": report.summary(), "layers": report.rows(),
              "params": {"source": count_params(src), "converted": count_params(model)},
              "seconds": round(time.perf_counter() - t0, 1)}
    write_json(out / CONVERT_REPORT, result)
    write_json(out / SUMMARY, {**summary, "converted_from": str(run), "convert": {
        k: v for k, v in result.items() if k in ("dice", "surgery", "bn_images")}})
    return out, result


def _fine_tune(model: nn.Module, cfg: RunConfig, o: ConvertOptions, data, out: Path,
               device: torch.device, console) -> dict:
    """Train the converted model for --fine-tune seconds at --lr, cosine decay, no warm-up;
    the converted weights are kept beside it as converted.safetensors."""
    with tempfile.TemporaryDirectory(prefix="lkmseg-convert-") as tmp:
        init = Path(tmp) / CONVERTED
        ckpt.save_weights(init, model)
        ft = replace(cfg, train=replace(cfg.train, lr=o.lr, time_budget_s=o.fine_tune_s,
                                        steps=None, epochs=None, warmup_frac=0.0,
                                        init=str(init)))
        run_dir, summary = train_run(ft, data, out.parent, out.name, str(device), None, console)
        ckpt.save_weights(run_dir / CONVERTED, model)
    saved = json.loads((run_dir / CONFIG).read_text())
    saved["train"]["init"] = str((run_dir / CONVERTED).resolve())
    write_json(run_dir / CONFIG, saved)
    return summary


def _write_run(model: nn.Module, cfg: RunConfig, out: Path, scores: dict) -> dict:
    """A run folder without training: config, the converted weights as the best, empty
    train log, and the converted model's validation Dice as step 0."""
    dice = scores["dice"]
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG, cfg.to_dict())
    ckpt.save_weights(out / ckpt.BEST, model, {"step": 0, "dice": dice,
                                               "block": cfg.model.block})
    ckpt.save_weights(out / CONVERTED, model)
    CsvLog(out / TRAIN_LOG, TRAIN_FIELDS).close()
    vlog = CsvLog(out / VAL_LOG, VAL_FIELDS)
    vlog.write(step=0, elapsed_s=0.0, dice=dice, images_seen=0, epoch=0.0)
    vlog.close()
    spec = cfg.model.spec
    return {"block": spec.name, "kernel": spec.kernel, "family": spec.family,
            "params": count_params(model), "best_val_dice": dice, "best_step": 0,
            "last_val_dice": dice, "val_dice_full_res": scores.get("dice_full_res"),
            "images_per_s": None, "train_seconds": 0.0, "steps": 0, "size": list(cfg.size),
            "batch_size": cfg.train.batch_size, "status": "converted"}
