"""Finding image/mask pairs and splitting them by group (car), never by image.

Layouts:
  carvana   DIR/train/<car>_<NN>.jpg + DIR/train_masks/<car>_<NN>_mask.gif (or .png)
  folders   DIR/images/<stem>.* + DIR/masks/<stem>[_mask].*  (PNG/JPG/GIF/TIFF/BMP masks)
Groups: Carvana's 12-hex-digit car id; for other data the first capture group (or whole
match) of ``group_pattern`` applied to the stem, else the stem itself.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

from lkmseg.data.imageio import is_image_file
from lkmseg.errors import UserError

CARVANA_ID = re.compile(r"^([0-9a-f]{12})_\d{2}$")


@dataclass(frozen=True)
class Item:
    image: Path
    mask: Path | None
    group: str


def _images_in(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() or p.is_symlink()
                      if is_image_file(p))
    except PermissionError as e:
        raise UserError(f"{folder}: permission denied; make the folder readable") from e


def detect_layout(root: Path) -> str:
    if (root / "train").is_dir() and (root / "train_masks").is_dir():
        return "carvana"
    if (root / "images").is_dir():
        return "folders"
    raise UserError(f"{root}: no dataset found; expected train/ + train_masks/ (Carvana) "
                    "or images/ + masks/ folders (run `lkmseg data check DIR`)")


def _mask_index(folder: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for p in _images_in(folder):
        stem = p.stem[:-5] if p.stem.endswith("_mask") else p.stem
        index.setdefault(stem, p)
    return index


def _group_of(stem: str, layout: str, group_pattern: str | None) -> str:
    if group_pattern:
        m = re.search(group_pattern, stem)
        return (m.group(1) if m.groups() else m.group(0)) if m else stem
    if layout == "carvana":
        m = CARVANA_ID.match(stem)
        return m.group(1) if m else stem.rsplit("_", 1)[0]
    return stem


def find_items(root: str | Path, group_pattern: str | None = None,
               require_masks: bool = True) -> tuple[str, list[Item]]:
    """Return (layout, items). Raises UserError for missing/empty folders or unpaired images."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: data folder not found; check --data")
    if not root.is_dir():
        raise UserError(f"{root}: not a folder; --data takes a dataset folder")
    layout = detect_layout(root)
    img_dir, mask_dir = ((root / "train", root / "train_masks") if layout == "carvana"
                         else (root / "images", root / "masks"))
    images = _images_in(img_dir)
    if not images:
        raise UserError(f"{img_dir}: no images found (.jpg/.png/...); add images or fix --data")
    masks = _mask_index(mask_dir) if mask_dir.is_dir() else {}
    items, missing = [], []
    for p in images:
        m = masks.get(p.stem)
        if m is None:
            missing.append(p)
        items.append(Item(p, m, _group_of(p.stem, layout, group_pattern)))
    if require_masks and missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        want = f"{missing[0].stem}{'_mask.gif' if layout == 'carvana' else '.png'}"
        raise UserError(f"{missing[0]}: image has no mask in {mask_dir}{more}; add "
                        f"{mask_dir.name}/{want} or remove the image")
    return layout, items


def split_by_group(items: list[Item], val_frac: float = 0.25,
                   seed: int = 0) -> tuple[list[Item], list[Item]]:
    """Deterministic train/val split by group: all views of a car fall on one side."""
    groups = sorted({it.group for it in items})
    if len(groups) < 2:
        raise UserError(f"only {len(groups)} group(s) in the data: a train/validation split by "
                        "car needs at least 2 (pass --group-pattern for non-Carvana names)")
    random.Random(seed).shuffle(groups)
    n_val = min(len(groups) - 1, max(1, math.ceil(len(groups) * val_frac)))
    val_groups = set(groups[:n_val])
    train = [it for it in items if it.group not in val_groups]
    val = [it for it in items if it.group in val_groups]
    return train, val
