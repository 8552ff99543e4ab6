"""From a data folder (or the embedded default) to cached train/val arrays, split by car;
``prepare_run`` does it for a training run and records the source and split in its config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lkmseg.config import RunConfig
from lkmseg.data.cache import build_cache
from lkmseg.data.datasets import Item, find_items, split_by_group
from lkmseg.errors import UserError


@dataclass
class Prepared:
    layout: str
    source: Path
    train_images: np.ndarray  # (N, H, W, 3) uint8
    train_masks: np.ndarray  # (N, H, W) uint8 {0, 1}
    val_images: np.ndarray
    val_masks: np.ndarray
    train_items: list[Item]
    val_items: list[Item]
    skipped: list[str]
    cache_reused: bool

    def describe(self) -> str:
        tg = len({i.group for i in self.train_items})
        vg = len({i.group for i in self.val_items})
        return (f"{self.source} ({self.layout}): {len(self.train_items)} train images "
                f"({tg} groups), {len(self.val_items)} val images ({vg} groups)"
                + (", cache reused" if self.cache_reused else ", cache built"))


def default_data_dir() -> Path:
    from lkmseg.data.synth import default_dataset  # the embedded synthetic Carvana look-alike

    return default_dataset()


def prepare(data_dir: str | Path | None, size: tuple[int, int], val_frac: float = 0.25,
            seed: int = 0, group_pattern: str | None = None, skip_bad: bool = False,
            progress=None) -> Prepared:
    """Find pairs, split them by group, and load both sides through the uint8 cache."""
    layout_hint = None
    if data_dir is None:
        data_dir, layout_hint = default_data_dir(), "synthetic"
    layout, items = find_items(data_dir, group_pattern=group_pattern)
    cached = build_cache(items, size, skip_bad=skip_bad, progress=progress)
    index = {it.image: i for i, it in enumerate(cached.items)}
    try:
        train, val = split_by_group(cached.items, val_frac=val_frac, seed=seed)
    except UserError as e:
        raise UserError(f"{data_dir}: {e}") from e
    ti = np.array([index[it.image] for it in train], dtype=np.int64)
    vi = np.array([index[it.image] for it in val], dtype=np.int64)
    return Prepared(layout_hint or layout, Path(data_dir), cached.images[ti], cached.masks[ti],
                    cached.images[vi], cached.masks[vi], train, val, cached.skipped,
                    cached.reused)


def prepare_run(cfg: RunConfig, data_dir: Path | None, console=None) -> Prepared:
    """``prepare`` with the run's settings; records the data source and the split in
    ``cfg.data``. ``console``: a rich Console for progress notes and warnings, or None."""
    t = cfg.train
    if console is not None:
        console.print("preparing data (decoded once into the cache, then reused)…")
    prep = prepare(data_dir, cfg.size, val_frac=t.val_frac, seed=t.seed,
                   group_pattern=t.group_pattern, skip_bad=t.skip_bad)
    for s in prep.skipped:
        if console is not None:
            console.print(f"[yellow]warning: skipped {s}[/]")
    # absolute paths: export reads them from wherever it is started
    cfg.data = {"source": str(prep.source.resolve()), "layout": prep.layout,
                "train_groups": sorted({i.group for i in prep.train_items}),
                "val_groups": sorted({i.group for i in prep.val_items}),
                "val_items": [[str(i.image.resolve()), str(i.mask.resolve())]
                              for i in prep.val_items],
                "n_train": len(prep.train_items), "n_val": len(prep.val_items)}
    return prep
