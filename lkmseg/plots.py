"""Figures, written atomically (matplotlib, Agg backend): training curves from run folders' CSV
logs (compare's Dice figure, each run's results.png) and the study's kernel-size sweep."""

from __future__ import annotations

import math
import re
from pathlib import Path

from lkmseg.files.layout import TRAIN_LOG, VAL_LOG
from lkmseg.fsutil import atomic_path
from lkmseg.train.logs import read_csv


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def savefig(fig, path: Path) -> Path:  # noqa: ANN001 — a matplotlib Figure
    plt = _pyplot()
    if fig.get_layout_engine() is None:  # a constrained-layout figure lays itself out
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _rows(path: Path) -> list[dict[str, float]]:
    return read_csv(path) if path.is_file() else []


def plot_dice(ax_seen, ax_time, rows: list[dict[str, float]], label: str) -> None:  # noqa: ANN001
    """Validation Dice vs images seen (``ax_seen``) and vs wall time in minutes."""
    dice = [x["dice"] for x in rows]
    if ax_seen is not None:
        ax_seen.plot([x["images_seen"] for x in rows], dice, marker="o", ms=3, label=label)
    if ax_time is not None:
        ax_time.plot([x["elapsed_s"] / 60 for x in rows], dice, marker="o", ms=3, label=label)


def curves_figure(runs: list[Path], path: Path) -> Path:
    """The study's Fig. 2: validation Dice vs images seen and vs wall time, every block."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    logs = {r: _rows(r / VAL_LOG) for r in runs}
    for r, rows in logs.items():
        if rows:
            plot_dice(a, b, rows, r.name)
    a.set(xlabel="images seen", ylabel="validation Dice", title="Dice vs images seen")
    b.set(xlabel="wall time (min)", title="Dice vs wall time (same budget)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    lo = min((x["dice"] for rows in logs.values() for x in rows[len(rows) // 3:]), default=0.0)
    a.set_ylim(max(0.0, lo - 0.02), 1.0)
    return savefig(fig, path)


def _ema(values: list[float], alpha: float = 0.1) -> list[float]:
    """Exponential moving average; non-finite values (skipped steps) leave it unchanged."""
    out: list[float] = []
    m = float("nan")
    for v in values:
        if math.isfinite(v):
            m = v if math.isnan(m) else (1 - alpha) * m + alpha * v
        out.append(m)
    return out


def results_figure(run: Path, path: Path) -> Path | None:
    """A run's results.png: training loss (raw and smoothed) and learning rate vs step,
    validation Dice vs step and vs wall time. None when the run has logged nothing yet."""
    train, val = _rows(run / TRAIN_LOG), _rows(run / VAL_LOG)
    if not train and not val:
        return None
    plt = _pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2))
    steps = [x["step"] for x in train]
    loss = [x["loss"] for x in train]
    a.plot(steps, loss, color="tab:blue", alpha=0.3, lw=0.8, label="loss")
    a.plot(steps, _ema(loss), color="tab:blue", label="loss (smoothed)")
    a.set(xlabel="step", ylabel="training loss (BCE + Dice)", title="Training loss")
    if train:
        lr = a.twinx()
        lr.plot(steps, [x["lr"] for x in train], color="tab:orange", lw=0.8)
        lr.set_ylabel("learning rate", color="tab:orange")
    b.plot([x["step"] for x in val], [x["dice"] for x in val], marker="o", ms=3,
           color="tab:green")
    b.set(xlabel="step", ylabel="validation Dice", title="Validation Dice")
    plot_dice(None, c, val, run.name)
    c.set(xlabel="wall time (min)", ylabel="validation Dice", title="Dice vs wall time")
    for ax in (a, b, c):
        ax.grid(alpha=0.3)
    a.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{run.name}")
    return savefig(fig, path)


def kernel_sweep_figure(rs: list[dict], path: Path) -> Path | None:
    """Separable/GCN speed-up over the square block of the same K, as K grows."""
    plt = _pyplot()
    pts: dict[str, list[tuple[int, float]]] = {}
    for r in rs:
        m = re.match(r"(1x|gcn)(\d+) vs", r["pair"])
        if not m:
            continue
        k, fam = int(m.group(2)), "1xK" if m.group(1) == "1x" else "gcnK"
        if "train_speedup" in r:
            pts.setdefault(f"{fam} training", []).append((k, r["train_speedup"]))
        for key, v in r.items():
            if key.startswith("speedup ") and key.endswith("bs1"):
                pts.setdefault(f"{fam} {key[8:]}", []).append((k, v))
    if not any(len(v) > 1 for v in pts.values()):
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, v in sorted(pts.items()):
        v.sort()
        ax.plot([k for k, _ in v], [s for _, s in v], marker="o", label=name)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="kernel size K", ylabel="speed-up vs KxK (×)",
           title="Separable kernels pay off more as K grows")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return savefig(fig, path)
