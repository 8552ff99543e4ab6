"""Time to a validation Dice, `lkmseg train` defaults vs another --amp: the same model trained
twice for the same wall-clock budget, and when each run's val_log.csv first reaches the
target Dice.

    LKMSEG_CARVANA=/work/shared/data/carvana-mini \\
    .venv/bin/python benchmarks/time_to_dice.py [--block 5x5] [--size 128] [--budget 300] \\
        [--target 0.975] [--other off] [--chunk 60] [--out runs/time_to_dice] \\
        [--json result.json] [--logs DIR]

The two runs are interleaved: each trains for --chunk seconds of wall time, is stopped with
Ctrl-C (it checkpoints) and later resumed (exactly: batches are a function of the step, and
a resumed run keeps its precision and layout), so a machine whose load changes does not
favour one of them. --chunk 0 trains them one after the other. Elapsed times are the runs'
own training clocks (val_log.csv elapsed_s), which exclude start-up (data loading and the
defaults' one-off precision/layout measurement, reported separately).

"first_val_s": elapsed time of the first validation at or above the target (the runs validate
every budget/10 s); "interpolated_s": the crossing on the straight line between that
validation and the one before it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from chunked_run import ChunkedRun

from lkmseg import hw
from lkmseg.train.logs import read_csv


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("LKMSEG_CARVANA"))
    ap.add_argument("--block", default="5x5")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--budget", type=float, default=300.0)
    ap.add_argument("--target", type=float, default=0.975)
    ap.add_argument("--other", default="off", help="--amp of the run compared with defaults")
    ap.add_argument("--chunk", type=float, default=60.0)
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


def _result(arm: ChunkedRun, target: float) -> dict:
    s = arm.summary()
    rows = read_csv(arm.run / "val_log.csv")
    first, interp = crossing(rows, target)
    return {"run": str(arm.run), "precision": s["precision"],
            "channels_last": s["channels_last"], "why": s["precision_why"],
            "images_per_s": s["images_per_s"], "steps": s["steps"],
            "train_seconds": s["train_seconds"], "final_val_dice": s["last_val_dice"],
            "best_val_dice": s["best_val_dice"], "first_val_s": first,
            "interpolated_s": interp, "chunks": arm.chunks, "load_avg_per_chunk": arm.load_avg,
            "wall_s_with_startups": round(arm.wall_s, 1),
            "val_log": [{k: r[k] for k in ("step", "elapsed_s", "dice")} for r in rows]}


def _arm(a: argparse.Namespace, name: str, extra: list[str]) -> ChunkedRun:
    return ChunkedRun(Path(a.out) / name,
                      ["--block", a.block, "--size", str(a.size), "--time-budget",
                       f"{a.budget:g}s", "--data", str(a.data), "--out", a.out, "--name", name,
                       *extra], a.budget)


def main() -> None:
    a = _args()
    if not a.data:
        raise SystemExit("set LKMSEG_CARVANA or pass --data (the carvana-mini folder)")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    arms = {"defaults": _arm(a, f"{a.block}_defaults", []),
            "other": _arm(a, f"{a.block}_amp_{a.other}", ["--amp", a.other])}
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": hw.machine_info("cpu"),
           "block": a.block, "size": a.size, "budget_s": a.budget, "target": a.target,
           "other": f"--amp {a.other}", "chunk_s": a.chunk,
           "load_avg_before": [round(x, 2) for x in os.getloadavg()]}
    while not all(arm.done() for arm in arms.values()):
        for arm in arms.values():
            if not arm.done():
                arm.train(a.chunk)
                print(f"{arm.run.name}: chunk {arm.chunks} done", flush=True)
    out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    d, o = (_result(arms[k], a.target) for k in ("defaults", "other"))
    out.update(defaults=d, other=o, final_dice_diff=d["final_val_dice"] - o["final_val_dice"])
    for k in ("first_val_s", "interpolated_s"):
        out[f"sooner_{k}"] = o[k] / d[k] if d[k] and o[k] else None
    for name, r in (("defaults", d), (f"--amp {a.other}", o)):
        print(f"{name}: {r['precision']} {'channels_last' if r['channels_last'] else 'NCHW'}, "
              f"{r['images_per_s']:.1f} img/s, Dice {a.target} at {r['first_val_s']} s "
              f"(interpolated {r['interpolated_s']}), final {r['final_val_dice']:.4f}")
    print(f"defaults reach it {out['sooner_first_val_s']}x sooner (first validation), "
          f"{out['sooner_interpolated_s']}x (interpolated); final Dice "
          f"{out['final_dice_diff']:+.4f}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    if a.logs:
        Path(a.logs).mkdir(parents=True, exist_ok=True)
        for arm in arms.values():
            shutil.copy(arm.run / "val_log.csv", Path(a.logs) / f"{arm.run.name}_val_log.csv")


if __name__ == "__main__":
    main()
