"""The accuracy gate: Dice against ground truth on held-out images, every runtime x precision
against PyTorch fp32 on the same images.

Parity (``export.parity``) asks "does the file compute what PyTorch computes?" to 1e-3; reduced
precisions (bf16, int8) cannot, so they get this gate instead: mean per-image Dice vs ground
truth, at the images' full resolution, on the run's validation images (held-out cars), must
stay within ``tolerance`` (default 0.005) of fp32's. Figures go to report.json's
``accuracy_gate`` section, which ``auto`` and ``bench`` read through ``lkmseg.files``.

A run that recorded validation images is gated on them or not at all: when they are not where
training read them, export stops (exit 2) and asks for ``--gate-data DIR``. Only a run that
recorded none falls back to samples/ or synthetic images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lkmseg import metrics
from lkmseg.config import RunConfig
from lkmseg.data.imageio import read_image, read_mask
from lkmseg.data.transforms import postprocess, preprocess
from lkmseg.errors import UserError
from lkmseg.export import parity

DEFAULT_TOLERANCE = 0.005


@dataclass
class GateSet:
    """Model inputs and (bit-packed, full-resolution) ground truth of the gate images."""

    x: np.ndarray  # (N, 3, h, w) float32
    sizes: list[tuple[int, int]]
    gt: list[np.ndarray | None]  # np.packbits of each {0,1} mask
    origin: str
    threshold: float
    ref_masks: list[np.ndarray] = field(default_factory=list)  # packed torch fp32 masks
    ref_dice: float | None = None

    @property
    def has_gt(self) -> bool:
        return all(g is not None for g in self.gt)

    def unpack(self, packed: np.ndarray, i: int) -> np.ndarray:
        h, w = self.sizes[i]
        return np.unpackbits(packed, count=h * w).reshape(h, w)


def _pack(mask: np.ndarray) -> np.ndarray:
    return np.packbits(mask.astype(bool).ravel())


FIX = ("pass --gate-data DIR: the dataset the run was trained on, or held-out images with "
       "masks")


def _dataset_pairs(root: Path, cfg: RunConfig) -> list[list[str]]:
    """``--gate-data DIR``'s (image, mask) pairs: the run's validation groups where it has
    them, else all of them (a held-out set of its own)."""
    from lkmseg.data.datasets import find_items

    if not root.is_dir():
        raise UserError(f"--gate-data {root}: not a folder; {FIX}")
    try:
        _, items = find_items(root, group_pattern=cfg.train.group_pattern)
    except UserError as e:
        raise UserError(f"--gate-data {root}: {e}") from e
    groups = set((cfg.data or {}).get("val_groups") or [])
    held_out = [it for it in items if it.group in groups]
    return [[str(it.image.resolve()), str(it.mask.resolve())] for it in held_out or items]


def _synthetic_pairs(cfg: RunConfig) -> list[list[str]]:
    """A synthetic run's validation groups, from the embedded set (rebuilt if need be)."""
    from lkmseg.data.datasets import find_items
    from lkmseg.data.synth import default_dataset

    _, items = find_items(default_dataset(progress=False), group_pattern=cfg.train.group_pattern)
    groups = set(cfg.data.get("val_groups") or [])
    return [[str(it.image), str(it.mask)] for it in items if it.group in groups]


def held_out_items(cfg: RunConfig, gate_data: Path | None = None) -> list[list[str]] | None:
    """The (image, mask) pairs the gate and parity check use: ``gate_data``'s, else the run's
    recorded validation items; None when the run recorded none. UserError when recorded ones
    are missing (a synthetic run's are rebuilt instead)."""
    if gate_data is not None:
        return _dataset_pairs(Path(gate_data), cfg)
    data = cfg.data or {}
    pairs = [[str(a), str(b)] for a, b in (data.get("val_items") or []) if a and b]
    if not pairs:
        return None
    missing = [p for pair in pairs for p in pair if not Path(p).is_file()]
    if missing and data.get("layout") == "synthetic":
        pairs, missing = _synthetic_pairs(cfg), []
    if missing:
        raise UserError(f"{len(missing)} of the run's validation files are not where training "
                        f"read them (first: {missing[0]}); {FIX}")
    return pairs


def _val_pairs(cfg: RunConfig, limit: int) -> list[tuple[Path, Path]]:
    pairs = [(Path(a), Path(b)) for a, b in (cfg.data.get("val_items") or []) if a and b]
    step = max(1, len(pairs) // limit)  # spread over every held-out car and view
    return pairs[::step][:limit]


def gate_set(cfg: RunConfig, size: tuple[int, int], limit: int = 96) -> GateSet:
    """Up to ``limit`` validation pairs (read one at a time: full-resolution Carvana images
    would take GBs); else, for a run that recorded none, the parity set (samples/ or synthetic
    shapes). An unreadable validation file is a UserError naming it."""
    pairs = _val_pairs(cfg, limit)
    xs, sizes, gt = [], [], []
    for img_path, mask_path in pairs:
        try:
            img = read_image(img_path)
            mask = read_mask(mask_path)
        except UserError as e:
            raise UserError(f"accuracy gate: {e}; or {FIX}") from e
        xs.append(preprocess([img], size).numpy())
        sizes.append(img.shape[:2])
        gt.append(_pack(mask))
    if pairs:
        return GateSet(np.concatenate(xs), sizes, gt, f"val_items ({len(pairs)} images, "
                       "held-out groups)", cfg.threshold)
    ps = parity.parity_set(cfg, limit)
    return GateSet(preprocess(ps.images, size).numpy(), ps.sizes,
                   [None if m is None else _pack(m) for m in ps.masks],
                   f"{ps.origin} ({len(ps.images)} images)", cfg.threshold)


BATCHED = 4  # the second pass: how a batch runs (servers batch requests, predict batches)
REPRODUCIBLE = 0.999  # mask Dice two loads of one file must reach (what serve promises)


def masks_of(engine, gs: GateSet, batch: int = 1) -> list[np.ndarray]:
    """Packed full-resolution masks of ``engine`` on the gate images, ``batch`` per call."""
    out = []
    for i in range(0, len(gs.x), batch):
        logits = engine(gs.x[i : i + batch])
        sizes = gs.sizes[i : i + batch]
        out += [_pack(m) for m in postprocess(logits, sizes, gs.threshold)]
    return out


def _dices(gs: GateSet, a: list[np.ndarray], b: list[np.ndarray | None]) -> list[float]:
    return [metrics.dice(gs.unpack(x, i), gs.unpack(y, i)) for i, (x, y) in enumerate(zip(a, b))]


def _agreement(gs: GateSet, a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    """(pooled Dice, worst image's Dice) of two lists of packed masks."""
    return metrics.agreement([gs.unpack(x, i) for i, x in enumerate(a)],
                             [gs.unpack(y, i) for i, y in enumerate(b)])


def _mean_dice(gs: GateSet, a: list[np.ndarray], b: list[np.ndarray | None]) -> float:
    return float(np.mean(_dices(gs, a, b)))


def set_reference(gs: GateSet, torch_engine) -> None:
    """PyTorch fp32 masks and Dice: what every other row is measured against."""
    gs.ref_masks = masks_of(torch_engine, gs)
    gs.ref_dice = _mean_dice(gs, gs.ref_masks, gs.gt) if gs.has_gt else 1.0


def evaluate(engine, gs: GateSet, tolerance: float, second=None) -> dict:
    """Dice (vs ground truth, else vs PyTorch fp32 masks), its change against fp32, mask
    agreement with PyTorch fp32, and the verdict — for one image per call and for batches of
    ``BATCHED``; the worse of the two counts.

    ``second``: another load of the same file (a fresh compile), which runs the batches. Its
    masks must equal the first load's one-image masks (Dice over all the images' pixels >=
    ``REPRODUCIBLE``; the worst image's Dice is recorded too), or the runtime's answers depend
    on the load or the batch, and a server would not answer what ``predict`` does: measured
    with OpenVINO's INT8 (k,1) convolutions on an AMX CPU, whose output changed with every
    compile (logits off by up to 17)."""
    one = masks_of(engine, gs, 1)
    batched = masks_of(second or engine, gs, BATCHED)
    figs = {}
    for batch, masks in ((1, one), (BATCHED, batched)):
        agree = _mean_dice(gs, masks, gs.ref_masks)
        figs[batch] = (_mean_dice(gs, masks, gs.gt) if gs.has_gt else agree, agree)
    dice, agree = min(figs.values())
    delta = dice - float(gs.ref_dice)
    repro, worst = _agreement(gs, one, batched)
    fig = {"engine": engine.describe(), "dice": round(dice, 5), "delta": round(delta, 5),
           "mask_dice_vs_torch": round(agree, 5),
           "dice_by_batch": {str(b): round(d, 5) for b, (d, _) in figs.items()},
           "reproducible": bool(repro >= REPRODUCIBLE),
           "repro_mask_dice": round(repro, 5), "repro_min_mask_dice": round(worst, 5),
           "repro_check": (f"batch 1 vs batch {BATCHED} "
                           + ("of a second load" if second is not None else "(one load)"))}
    fig["passed"] = bool(delta >= -tolerance) and fig["reproducible"]
    if not fig["reproducible"]:
        fig["reason"] = not_reproducible(repro)
    return fig


def not_reproducible(repro: float) -> str:
    return (f"answers vary between loads of the same file on this machine (mask Dice "
            f"{repro:.4f} between one image at a time and batches of {BATCHED} from a fresh "
            f"load, need {REPRODUCIBLE}): not used by auto, serve or bench")


def section(gs: GateSet, tolerance: float) -> dict:
    """The report's ``accuracy_gate`` head (candidates are added as they are checked)."""
    return {"tolerance": tolerance, "images": len(gs.x), "origin": gs.origin,
            "metric": ("mean per-image Dice vs ground truth at full resolution" if gs.has_gt
                       else "mean per-image mask Dice vs PyTorch fp32 (no ground truth)"),
            "rule": f"passed when Dice >= fp32 Dice - {tolerance}",
            "reference": {"engine": "torch", "precision": "fp32",
                          "dice": None if gs.ref_dice is None else round(gs.ref_dice, 5)},
            "candidates": {}}
