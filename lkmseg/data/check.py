"""`lkmseg data check`: everything about a dataset folder, and every problem in it."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lkmseg.data.datasets import find_items
from lkmseg.data.imageio import read_image, read_mask
from lkmseg.errors import UserError


@dataclass
class Report:
    root: Path
    layout: str = "?"
    n_images: int = 0
    n_pairs_ok: int = 0
    groups: int = 0
    sizes: Counter = field(default_factory=Counter)
    fg_fraction: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _check_pair(item) -> tuple[tuple[int, int] | None, float | None, list[str]]:
    problems, size, fg = [], None, None
    try:
        img = read_image(item.image)
        size = img.shape[:2]
    except UserError as e:
        problems.append(str(e))
    if item.mask is None:
        problems.append(f"{item.image}: no mask; add one or remove the image")
        return size, fg, problems
    try:
        m = read_mask(item.mask)
        fg = float(m.mean())
        if size is not None and m.shape != size:
            problems.append(f"{item.mask}: mask is {m.shape[1]}x{m.shape[0]} but the image is "
                            f"{size[1]}x{size[0]}; fix or remove the pair")
    except UserError as e:
        problems.append(str(e))
    return size, fg, problems


def check_dataset(root: str | Path, group_pattern: str | None = None, progress=None) -> Report:
    rep = Report(Path(root))
    try:
        rep.layout, items = find_items(root, group_pattern, require_masks=False)
    except UserError as e:
        rep.problems.append(str(e))
        return rep
    rep.n_images = len(items)
    rep.groups = len({it.group for it in items})
    with ThreadPoolExecutor(2) as pool:
        for i, (size, fg, probs) in enumerate(pool.map(_check_pair, items)):
            if size:
                rep.sizes[f"{size[1]}x{size[0]}"] += 1
            if fg is not None:
                rep.fg_fraction.append(fg)
            rep.problems.extend(probs)
            rep.n_pairs_ok += not probs
            if progress:
                progress(i + 1, len(items))
    if rep.groups < 2 and rep.n_images:
        rep.problems.append(f"{root}: only {rep.groups} group(s); a split by object needs 2+ "
                            "(use --group-pattern)")
    return rep


def summary_lines(rep: Report) -> list[str]:
    fg = np.array(rep.fg_fraction)
    fg_line = (f"mean {fg.mean():.3f}, min {fg.min():.3f}, max {fg.max():.3f}" if fg.size
               else "-")
    sizes = ", ".join(f"{s} ×{n}" for s, n in rep.sizes.most_common(4)) or "-"
    return [f"folder      {rep.root}", f"layout      {rep.layout}",
            f"images      {rep.n_images} ({rep.n_pairs_ok} valid pairs)",
            f"groups      {rep.groups} (train/val split is by group)",
            f"sizes       {sizes}",
            f"foreground  {fg_line}",
            f"problems    {len(rep.problems)}"]
