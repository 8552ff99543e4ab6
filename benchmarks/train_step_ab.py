"""`lkmseg train`'s step vs the fastest precision x layout, interleaved step by step.

On a shared VM the speed of the same training step moves by 30% within a minute (measured:
3x3 bf16 0.30-0.49 s per step), so a run and a harness timed minutes apart cannot show a 10%
difference. Here both run in one process, alternating every few steps:

- the run: a `Trainer` built exactly as `lkmseg train` builds it with default options (its own
  precision/layout choice, measured or cached; real carvana-mini batches with augmentation;
  the train_log.csv row written) and timed by its own clock: ``Trainer.step`` (next batch +
  forward + loss + backward + AdamW), the time `lkmseg train` reports as training time;
- the harness: `benchmarks/train_speed.py`'s step (the same forward/loss/backward/AdamW on a
  fixed batch, on a copy of the model) for every precision x layout native here.

Reported per block: median step time of each, the run's images/s over the harness' fastest
(the issue's "within 10%"), and whether the run's choice is the harness' fastest.

    LKMSEG_CARVANA=/work/shared/data/carvana-mini \\
    .venv/bin/python benchmarks/train_step_ab.py [--blocks 3x3,5x5,1x5] [--size 256] \\
        [--batch 8] [--seconds 120] [--run-steps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lkmseg import hw
from lkmseg.config import RunConfig, TrainConfig
from lkmseg.models import ModelConfig, build_model
from lkmseg.train.loop import Trainer, _prepare_data
from lkmseg.train.runtime import label, random_batch, train_step_fn


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("LKMSEG_CARVANA"))
    ap.add_argument("--blocks", default="3x3,5x5,1x5")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=120.0, help="per block")
    ap.add_argument("--run-steps", type=int, default=3,
                    help="run steps between two passes over the harness combinations")
    ap.add_argument("--json", default=None)
    return ap.parse_args()


def _block(a: argparse.Namespace, block: str, work: Path) -> dict:
    cfg = RunConfig(model=ModelConfig(block=block), size=(a.size, a.size),
                    train=TrainConfig(batch_size=a.batch, time_budget_s=a.seconds))
    prep = _prepare_data(cfg, Path(a.data), None, True)
    run_dir = work / block
    run_dir.mkdir()
    tr = Trainer(cfg, run_dir, prep, "cpu", False, None)  # default options: its own choice
    tr.model.train()
    chosen = label(tr.rt.choice.precision, tr.rt.channels_last)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    x, y = random_batch(a.batch, a.size, a.size, torch.device("cpu"))
    fns = {label(p, cl): train_step_fn(model, x, y, p, cl)
           for p in hw.native_precisions("cpu") for cl in (True, False)}
    for fn in fns.values():
        fn()  # warm-up
    tr.step()
    run_s: list[float] = []
    harness: dict[str, list[float]] = {k: [] for k in fns}
    deadline = time.monotonic() + a.seconds
    while time.monotonic() < deadline:
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            harness[k].append(time.perf_counter() - t0)
        for _ in range(a.run_steps):
            loss, dt = tr.step()
            tr.log_step(loss, a.batch / dt, 0.0)
            run_s.append(dt)
    tr.close()
    med = {k: statistics.median(v) for k, v in harness.items()}
    fastest = min(med, key=med.get)
    run_med = statistics.median(run_s)
    return {"chosen": chosen, "why": tr.rt.choice.why, "run_steps": len(run_s),
            "run_step_ms_median": round(run_med * 1000, 1),
            "run_images_per_s": a.batch / run_med,
            "harness_step_ms_median": {k: round(v * 1000, 1) for k, v in med.items()},
            "harness_images_per_s": {k: a.batch / v for k, v in med.items()},
            "harness_rounds": len(harness[fastest]), "fastest": fastest,
            "run_vs_fastest": med[fastest] / run_med,
            "chosen_vs_fastest_in_harness": med[fastest] / med[chosen],
            "data_images_per_s": tr.source.images_per_s(),
            "run_step_ms": [round(t * 1000) for t in run_s],
            "harness_step_ms": {k: [round(t * 1000) for t in v] for k, v in harness.items()}}


def main() -> None:
    a = _args()
    if not a.data:
        raise SystemExit("set LKMSEG_CARVANA or pass --data (the carvana-mini folder)")
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": hw.machine_info("cpu"),
           "size": a.size, "batch": a.batch, "seconds_per_block": a.seconds,
           "run_steps_per_round": a.run_steps,
           "load_avg_before": [round(x, 2) for x in os.getloadavg()], "blocks": {}}
    with tempfile.TemporaryDirectory(prefix="lkmseg_ab_") as tmp:
        for b in a.blocks.split(","):
            r = out["blocks"][b] = _block(a, b, Path(tmp))
            print(f"{b}: run (defaults: {r['chosen']}) {r['run_step_ms_median']:.0f} ms/step = "
                  f"{r['run_images_per_s']:.1f} img/s; harness fastest {r['fastest']} "
                  f"{r['harness_step_ms_median'][r['fastest']]:.0f} ms -> run/fastest "
                  f"{r['run_vs_fastest']:.3f}; chosen/fastest in the harness "
                  f"{r['chosen_vs_fastest_in_harness']:.3f} ({r['run_steps']} run steps, "
                  f"{r['harness_rounds']} harness rounds)", flush=True)
    out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    if a.json:
        from lkmseg.fsutil import write_json

        write_json(Path(a.json), out)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
