"""Dice vs latency per block, every engine x precision, with the Pareto front drawn.

One panel per block (batch 1 where measured): a point per runtime x precision, the front
(no other row both faster and more accurate) joined by a line and labelled; the other points
are identified by the legend (colour = engine, marker = precision), so labels never pile up.
"""

from __future__ import annotations

from pathlib import Path

COLORS = {"torch": "tab:red", "onnxruntime": "tab:blue", "openvino": "tab:purple",
          "tensorrt": "tab:green"}
MARKERS = {"fp32": "o", "fp16": "s", "bf16": "D", "int8": "^"}


def front(points: list[dict], eps: float = 1e-4) -> list[dict]:
    """Rows not dominated by another (faster at a Dice no more than ``eps`` lower: Dice
    differences below 1e-4 are a pixel or two, not accuracy), sorted by latency."""
    best: list[dict] = []
    for r in sorted(points, key=lambda r: (r["latency_ms_p50"], -r["dice"])):
        if not best or r["dice"] > best[-1]["dice"] + eps:
            best.append(r)
    return best


def _panel(ax, block: str, pts: list[dict], batch: int) -> None:
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    for r in pts:
        ax.scatter(r["latency_ms_p50"], r["dice"], s=60, alpha=0.85,
                   color=COLORS.get(r["engine"], "grey"),
                   marker=MARKERS.get(r["precision"], "x"), edgecolors="black", linewidths=0.4)
    fr = front(pts)
    ax.plot([r["latency_ms_p50"] for r in fr], [r["dice"] for r in fr], color="black",
            lw=1, ls="--", drawstyle="steps-post", zorder=0)
    for k, r in enumerate(fr, 1):  # numbers at the points, names in a box: never overlap
        ax.annotate(str(k), (r["latency_ms_p50"], r["dice"]), fontsize=8, weight="bold",
                    xytext=(0, 7), textcoords="offset points", ha="center")
    ax.text(0.98, 0.03, "Pareto front:\n" + "\n".join(
        f"{k}. {r['engine']} {r['precision']}: {r['latency_ms_p50']:.1f} ms, "
        f"Dice {r['dice']:.4f}" for k, r in enumerate(fr, 1)),
        transform=ax.transAxes, ha="right", va="bottom", fontsize=7.5,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})
    ax.set(xscale="log", title=f"{block} (batch {batch})", xlabel="latency p50, ms (log)")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3, which="both")
    lo = min(r["dice"] for r in pts)
    hi = max(r["dice"] for r in pts)
    pad = max(0.002, (hi - lo) * 0.25)
    ax.set_ylim(lo - 3 * pad, hi + pad)  # room at the bottom for the front's box


def pareto_figure(rows: list[dict], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    ok = [r for r in rows if r["status"] == "ok" and r.get("latency_ms_p50")
          and r.get("dice") is not None]
    if not ok:
        return None
    batch = min(r["batch"] for r in ok)
    blocks = list(dict.fromkeys(r["block"] for r in ok))
    fig, axes = plt.subplots(1, len(blocks), figsize=(5.2 * len(blocks), 4.9), squeeze=False,
                             layout="constrained")
    for ax, b in zip(axes[0], blocks):
        _panel(ax, b, [r for r in ok if r["block"] == b and r["batch"] == batch], batch)
    axes[0][0].set_ylabel("Dice" if ok[0].get("dice_kind") == "gt" else
                          "mask agreement with torch fp32")
    engines = list(dict.fromkeys(r["engine"] for r in ok))
    precs = list(dict.fromkeys(r["precision"] for r in ok))
    handles = [Line2D([], [], color=COLORS.get(e, "grey"), marker="o", ls="", label=e)
               for e in engines]
    handles += [Line2D([], [], color="grey", marker=MARKERS.get(p, "x"), ls="", label=p)
                for p in precs]
    handles.append(Line2D([], [], color="black", ls="--", label="Pareto front"))
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, frameon=False,
               ncol=len(handles) if len(blocks) > 1 else 4)
    fig.suptitle("Dice vs latency per block (up and left is better)")
    from lkmseg.plots import savefig

    return savefig(fig, path)
