"""Time to a validation Dice, defaults vs another setting: trains the same model twice for the
same wall-clock budget — `lkmseg train` defaults (--amp auto: precision and layout measured)
and e.g. --amp off — and reads when each run's val_log.csv first reaches the target Dice.

    LKMSEG_CARVANA=/work/shared/data/carvana-mini \\
    .venv/bin/python benchmarks/time_to_dice.py [--block 5x5] [--size 128] [--budget 300] \\
        [--target 0.975] [--out runs/time_to_dice] [--json result.json] [--logs DIR]

"first_val_s" is the elapsed time of the first validation at or above the target (the runs
validate every budget/10 s); "interpolated_s" puts the crossing on the straight line between
that validation and the one before it. ``--logs`` copies both val_log.csv files there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from rich.console import Console

from lkmseg import hw
from lkmseg.config import RunConfig, TrainConfig
from lkmseg.models import ModelConfig
from lkmseg.train.logs import read_csv
from lkmseg.train.loop import train_run


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("LKMSEG_CARVANA"))
    ap.add_argument("--block", default="5x5")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--budget", type=float, default=300.0)
    ap.add_argument("--target", type=float, default=0.975)
    ap.add_argument("--other", default="off", help="--amp of the run compared with defaults")
    ap.add_argument("--out", default="runs/time_to_dice")
    ap.add_argument("--json", default=None)
    ap.add_argument("--logs", default=None)
    return ap.parse_args()


def crossing(rows: list[dict], target: float) -> tuple[float | None, float | None]:
    """(elapsed_s of the first validation >= target, linearly interpolated crossing time)."""
    prev = {"elapsed_s": 0.0, "dice": 0.0}
    for r in rows:
        if r["dice"] >= target:
            d0, d1, t0, t1 = prev["dice"], r["dice"], prev["elapsed_s"], r["elapsed_s"]
            interp = t0 + (t1 - t0) * (target - d0) / (d1 - d0) if d1 > d0 else t1
            return r["elapsed_s"], interp
        prev = r
    return None, None


def _train(a: argparse.Namespace, name: str, amp: str, con: Console) -> dict:
    cfg = RunConfig(model=ModelConfig(block=a.block), size=(a.size, a.size),
                    train=TrainConfig(time_budget_s=a.budget, amp=amp))
    con.rule(f"{a.block} --amp {amp}: {a.budget:.0f} s at {a.size}x{a.size}")
    t0 = time.perf_counter()
    run, s = train_run(cfg, a.data, a.out, name, "cpu", None, con)
    rows = read_csv(run / "val_log.csv")
    first, interp = crossing(rows, a.target)
    return {"run": str(run), "amp": amp, "precision": s["precision"],
            "channels_last": s["channels_last"], "why": s["precision_why"],
            "images_per_s": s["images_per_s"], "steps": s["steps"],
            "final_val_dice": s["last_val_dice"], "best_val_dice": s["best_val_dice"],
            "first_val_s": first, "interpolated_s": interp,
            "wall_s_with_setup": time.perf_counter() - t0,
            "val_log": [{k: r[k] for k in ("step", "elapsed_s", "dice")} for r in rows]}


def main() -> None:
    a = _args()
    if not a.data:
        raise SystemExit("set LKMSEG_CARVANA or pass --data (the carvana-mini folder)")
    con = Console()
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": hw.machine_info("cpu"),
           "block": a.block, "size": a.size, "budget_s": a.budget, "target": a.target,
           "load_avg_before": [round(x, 2) for x in os.getloadavg()]}
    out["defaults"] = _train(a, f"{a.block}_defaults", "auto", con)
    out["other"] = _train(a, f"{a.block}_amp_{a.other}", a.other, con)
    out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    d, o = out["defaults"], out["other"]
    for k in ("first_val_s", "interpolated_s"):
        out[f"sooner_{k}"] = o[k] / d[k] if d[k] and o[k] else None
    out["final_dice_diff"] = d["final_val_dice"] - o["final_val_dice"]
    con.print(f"defaults ({d['precision']}, {d['images_per_s']:.1f} img/s): Dice {a.target} at "
              f"{d['first_val_s']} s (interpolated {d['interpolated_s']}), final "
              f"{d['final_val_dice']:.4f}")
    con.print(f"--amp {a.other} ({o['precision']}, {o['images_per_s']:.1f} img/s): at "
              f"{o['first_val_s']} s (interpolated {o['interpolated_s']}), final "
              f"{o['final_val_dice']:.4f}")
    con.print(f"defaults reach it {out['sooner_first_val_s']}x sooner (first validation), "
              f"{out['sooner_interpolated_s']}x (interpolated); final Dice "
              f"{out['final_dice_diff']:+.4f}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    if a.logs:
        Path(a.logs).mkdir(parents=True, exist_ok=True)
        for key in ("defaults", "other"):
            shutil.copy(Path(out[key]["run"]) / "val_log.csv",
                        Path(a.logs) / f"{Path(out[key]['run']).name}_val_log.csv")


if __name__ == "__main__":
    main()
