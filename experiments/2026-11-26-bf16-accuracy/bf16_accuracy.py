"""Does bf16 training lose accuracy? Trains each block twice on real data — fp32 (--amp off)
and bf16 autocast (--amp bf16) — with the same seed, data order, steps and layout, and
compares validation Dice (the issue's bar: within 0.003 of fp32).

    LKMSEG_CARVANA=/work/shared/data/carvana-mini \\
    .venv/bin/python benchmarks/bf16_accuracy.py [--size 128] [--steps 800] \\
        [--blocks 3x3,5x5,1x5] [--out runs/bf16_accuracy] [--json result.json]

Runs go block by block, fp32 then bf16, so both of a pair see the same machine load.
Only the precision differs between the two runs of a block (and, with --channels-last auto,
the memory layout, which changes the speed, not the arithmetic).
Dice is the mean per-image validation Dice at the training size; "final" is the last
validation, "best" the best of the run's validations.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from rich.console import Console

from lkmseg import hw
from lkmseg.config import RunConfig, TrainConfig
from lkmseg.models import ModelConfig
from lkmseg.train.loop import train_run

AMP = {"fp32": "off", "bf16": "bf16"}


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("LKMSEG_CARVANA"))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--blocks", default="3x3,5x5,1x5")
    ap.add_argument("--channels-last", default="auto",
                    help="on/off: the same layout for both precisions; auto: each precision "
                         "in its measured-fastest layout (layout does not change the maths)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tolerance", type=float, default=0.003)
    ap.add_argument("--out", default="runs/bf16_accuracy")
    ap.add_argument("--json", default=None)
    return ap.parse_args()


def _train(a: argparse.Namespace, block: str, prec: str, con: Console) -> dict:
    cfg = RunConfig(model=ModelConfig(block=block), size=(a.size, a.size),
                    train=TrainConfig(steps=a.steps, val_every=a.val_every, amp=AMP[prec],
                                      channels_last=a.channels_last, seed=a.seed,
                                      full_res_eval=False))
    name = f"{block}_{prec}"
    con.rule(f"{block} {prec}: {a.steps} steps at {a.size}x{a.size}")
    run, s = train_run(cfg, a.data, a.out, name, "cpu", None, con)
    return {"run": str(run), "precision": s["precision"], "channels_last": s["channels_last"],
            "best_val_dice": s["best_val_dice"], "final_val_dice": s["last_val_dice"],
            "images_per_s": s["images_per_s"], "steps": s["steps"],
            "train_seconds": s["train_seconds"]}


def main() -> None:
    a = _args()
    if not a.data:
        raise SystemExit("set LKMSEG_CARVANA or pass --data (the carvana-mini folder)")
    con = Console()
    info = hw.machine_info("cpu")
    if "bf16" not in info["native_precisions"]:
        con.print(f"[yellow]bf16 is emulated here ({hw.why_not_bf16('cpu')}); "
                  "the check still runs, slowly[/]")
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": info, "data": a.data,
           "size": a.size, "steps": a.steps, "seed": a.seed, "tolerance": a.tolerance,
           "load_avg_before": [round(x, 2) for x in os.getloadavg()], "blocks": {}}
    for b in a.blocks.split(","):
        r = {p: _train(a, b, p, con) for p in ("fp32", "bf16")}
        r["best_diff"] = r["bf16"]["best_val_dice"] - r["fp32"]["best_val_dice"]
        r["final_diff"] = r["bf16"]["final_val_dice"] - r["fp32"]["final_val_dice"]
        r["within_tolerance"] = abs(r["best_diff"]) <= a.tolerance
        r["speedup"] = r["bf16"]["images_per_s"] / r["fp32"]["images_per_s"]
        out["blocks"][b] = r
        con.print(f"{b}: best val Dice fp32 {r['fp32']['best_val_dice']:.4f}, bf16 "
                  f"{r['bf16']['best_val_dice']:.4f} (diff {r['best_diff']:+.4f}); final "
                  f"{r['fp32']['final_val_dice']:.4f} vs {r['bf16']['final_val_dice']:.4f}; "
                  f"bf16 {r['speedup']:.2f}x faster")
    out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    out["all_within_tolerance"] = all(r["within_tolerance"] for r in out["blocks"].values())
    con.print(f"all blocks within {a.tolerance}: {out['all_within_tolerance']}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
