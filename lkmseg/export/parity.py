"""Parity: run an exported model and PyTorch on the same real inputs and compare.

Inputs are the run's validation pairs (``config.json["data"]["val_items"]``), else the
package's sample images and masks (``lkmseg/samples/``), else deterministic synthetic images
(no ground truth). Figures per format: max/mean |Δ logit| against PyTorch fp32 on CPU, mask
agreement (Dice between the two full-resolution masks, pooled over all images, and the worst
image), Dice against ground truth (mean per image), and a dynamic-shape check (batch 3, odd size).

The mask comparison cannot pass vacuously: where the reference masks are (almost) empty or
full — an untrained model, a model that predicts nothing — two such masks would agree
"perfectly" whatever the export computes. There the gate checks the logits instead: the
largest |Δ logit| relative to the reference's spread (1st to 99th percentile, counted as at
least ``MIN_SPREAD``: a nearly constant output is not held to a bar finer than 0.01 logit)
must stay within ``REL_LOGIT`` (the masks are still reported, cut at the median logit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lkmseg.config import RunConfig
from lkmseg.data.imageio import list_images, read_image, read_mask
from lkmseg.data.transforms import logit_threshold, postprocess, preprocess
from lkmseg.errors import UserError
from lkmseg.files.layout import SAMPLES_DIR
from lkmseg.metrics import dice, mean_dice, pooled_dice

# (max |Δ logit|, pooled mask Dice vs torch) each format must meet; None = not gated.
THRESHOLDS = {"fp32": {"max_abs_logit": 1e-3, "mask_dice": 0.999},
              "fp16": {"max_abs_logit": None, "mask_dice": 0.995}}


@dataclass
class ParitySet:
    images: list[np.ndarray]
    masks: list[np.ndarray | None]
    names: list[str]
    origin: str  # val_items | samples | synthetic
    notes: list[str] = field(default_factory=list)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [im.shape[:2] for im in self.images]


def _pairs_from_config(cfg: RunConfig) -> list[tuple[Path, Path | None]]:
    items = cfg.data.get("val_items") or []
    out = []
    for it in items:
        if isinstance(it, (list, tuple)) and it:
            out.append((Path(it[0]), Path(it[1]) if len(it) > 1 and it[1] else None))
    return out


def _pairs_from_samples(folder: Path) -> list[tuple[Path, Path | None]]:
    if not (folder / "images").is_dir():
        return []
    out = []
    masks = folder / "masks"
    for img in list_images(folder / "images"):
        found = [m for pat in (img.stem + ".*", img.stem + "_mask.*")
                 for m in sorted(masks.glob(pat))] if masks.is_dir() else []
        out.append((img, found[0] if found else None))
    return out


def _synthetic(size: tuple[int, int], n: int) -> ParitySet:
    """Smooth random blobs (not white noise: masks with real structure and edges)."""
    import cv2

    rng = np.random.default_rng(0)
    h, w = size
    images, masks = [], []
    for _ in range(n):
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, rng.uniform(0.2, 0.35)
        m = (((yy - cy) / h) ** 2 + ((xx - cx) / w) ** 2) < r**2
        base = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
        img = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
        img[m] = (0.5 * img[m] + 100).astype(np.uint8)
        images.append(np.ascontiguousarray(img))
        masks.append(m.astype(np.uint8))
    return ParitySet(images, masks, [f"synthetic_{i}" for i in range(n)], "synthetic")


def parity_set(cfg: RunConfig, limit: int = 16, samples: Path = SAMPLES_DIR) -> ParitySet:
    """Up to ``limit`` (image, mask) pairs: validation split > samples/ > synthetic."""
    notes = []
    for origin, pairs in (("val_items", _pairs_from_config(cfg)),
                          ("samples", _pairs_from_samples(samples))):
        if not pairs:
            continue
        step = max(1, len(pairs) // limit)  # spread over the split (all views, all cars)
        chosen = pairs[::step][:limit]
        try:
            images = [read_image(p) for p, _ in chosen]
            masks = [read_mask(m) if m is not None else None for _, m in chosen]
        except UserError as e:
            notes.append(f"{origin} unreadable ({e}); fell back")
            continue
        return ParitySet(images, masks, [p.name for p, _ in chosen], origin, notes)
    ps = _synthetic(tuple(cfg.size), min(limit, 4))
    ps.notes = [*notes, ("no validation split or samples/ found: synthetic images, "
                         "Dice vs ground truth is against the synthetic shapes")]
    return ps


def run_batched(engine, x: np.ndarray, batch: int = 4) -> np.ndarray:
    """Logits for a (N, 3, H, W) array in batches of ``batch``."""
    return np.concatenate([engine(x[i : i + batch]) for i in range(0, len(x), batch)])


DEGENERATE = 0.005  # reference foreground fraction below this (or above 1 - this)
REL_LOGIT = 0.02  # degenerate masks: max |Δ logit| / reference logit spread must stay below
MIN_SPREAD = 0.5  # ... with the spread counted as at least this (an absolute floor of 0.01)


def mask_cut(ref_logits: np.ndarray, threshold: float) -> tuple[float, str]:
    """(logit cut, basis) for comparing masks: the model's threshold, or the reference's
    median logit where masks at the threshold would be empty or full."""
    cut = logit_threshold(threshold)
    fg = float((ref_logits > cut).mean())
    if DEGENERATE <= fg <= 1 - DEGENERATE:
        return cut, "threshold"
    what = "empty" if fg < DEGENERATE else "full"
    return float(np.median(ref_logits)), f"median logit (reference masks {what} at the threshold)"


def odd_size(size: tuple[int, int]) -> tuple[int, int]:
    """An odd (H, W) near ``size`` that is no multiple of any power of two."""
    return (size[0] // 2 * 2 + 3, size[1] // 2 * 2 + 5)


@dataclass
class Reference:
    """PyTorch fp32 CPU logits and masks, computed once and compared against every format."""

    pset: ParitySet
    size: tuple[int, int]
    threshold: float
    x: np.ndarray  # (N, 3, H, W) model inputs
    logits: np.ndarray
    masks: list[np.ndarray]
    dice_gt: float | None
    x_odd: np.ndarray
    logits_odd: np.ndarray


def make_reference(torch_engine, pset: ParitySet, size: tuple[int, int],
                   threshold: float) -> Reference:
    x = preprocess(pset.images, size).numpy()
    logits = run_batched(torch_engine, x)
    masks = postprocess(logits, pset.sizes, threshold)
    reps = (pset.images * 3)[:3]
    x_odd = preprocess(reps, odd_size(size)).numpy()  # batch 3 at an odd size
    return Reference(pset, size, threshold, x, logits, masks, mean_dice(masks, pset.masks),
                     x_odd, torch_engine(x_odd))


def _finite(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def compare(engine, ref: Reference, precision: str) -> dict:
    """Parity figures of ``engine`` against ``ref`` and the pass/fail verdict."""
    logits = run_batched(engine, ref.x)
    diff = np.abs(logits.astype(np.float64) - ref.logits)
    if getattr(engine, "fixed_hw", None) is not None:
        odd = None  # a static export takes one size only
    else:
        odd = engine(ref.x_odd)
    cut, basis = mask_cut(ref.logits, ref.threshold)
    if basis == "threshold":  # full-resolution masks, as predict writes them
        masks = postprocess(logits, ref.pset.sizes, ref.threshold)
        per_image = [dice(a, b) for a, b in zip(masks, ref.masks)]
        mask_dice = pooled_dice(masks, ref.masks)
    else:  # at model size, cut where half the reference's pixels are foreground
        a, b = list(logits[:, 0] > cut), list(ref.logits[:, 0] > cut)
        per_image = [dice(x, y) for x, y in zip(a, b)]
        mask_dice = pooled_dice(a, b)
        masks = postprocess(logits, ref.pset.sizes, ref.threshold)
    same = odd is not None and odd.shape == ref.logits_odd.shape
    lo, hi = np.percentile(ref.logits, [1, 99])
    rep = {
        "max_abs_logit_diff": _finite(float(diff.max())),
        "rel_logit_diff": _finite(float(diff.max() / max(hi - lo, MIN_SPREAD))),
        "mean_abs_logit_diff": _finite(float(diff.mean())),
        "mask_dice_vs_torch": mask_dice,
        "min_image_mask_dice_vs_torch": float(min(per_image)),
        "mask_basis": basis,
        "dice_vs_gt": mean_dice(masks, ref.pset.masks),
        "odd_shape_check": {"skipped": "static export: one input shape only"}
        if odd is None else {
            "shape": list(ref.x_odd.shape),
            "output_shape": list(odd.shape),
            "max_abs_logit_diff": _finite(float(np.abs(odd - ref.logits_odd).max()))
            if same else None,
            "mask_dice_vs_torch": pooled_dice(list(odd[:, 0] > cut),
                                              list(ref.logits_odd[:, 0] > cut)) if same else None,
        },
    }
    rep["failures"] = verdict(rep, precision)
    rep["passed"] = not rep["failures"]
    return rep


def verdict(rep: dict, precision: str) -> list[str]:
    """Which thresholds the figures miss (empty = pass). NaN/inf logits always fail. Where the
    reference masks are degenerate (``mask_basis`` is not "threshold"), masks prove nothing and
    the relative logit error is gated instead."""
    bar = THRESHOLDS["fp32" if precision == "fp32" else "fp16"]
    fails = []
    odd = rep["odd_shape_check"]
    by_masks = rep.get("mask_basis", "threshold") == "threshold"
    checks = [("max |Δ logit|", rep["max_abs_logit_diff"], bar["max_abs_logit"], "le")]
    if by_masks:
        checks.append(("mask Dice vs torch", rep["mask_dice_vs_torch"], bar["mask_dice"], "ge"))
    else:
        checks.append(("max |Δ logit| / reference logit spread (masks are empty or full)",
                       rep["rel_logit_diff"], REL_LOGIT, "le"))
    if "skipped" not in odd:
        checks.append(("odd-shape max |Δ logit|", odd["max_abs_logit_diff"],
                       bar["max_abs_logit"], "le"))
        if by_masks:
            checks.append(("odd-shape mask Dice", odd["mask_dice_vs_torch"], bar["mask_dice"],
                           "ge"))
    for label, value, limit, how in checks:
        if value is None:
            fails.append(f"{label} is not finite or the output shape is wrong")
        elif limit is not None and (value > limit if how == "le" else value < limit):
            fails.append(f"{label} {value:.4g} {'>' if how == 'le' else '<'} {limit:g}")
    return fails
