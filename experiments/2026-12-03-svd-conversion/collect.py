"""Gather one conversion study into results.json: every model scored the same way (fp32, the
source's validation cars, at 128^2 and at full resolution)."""

import json
import sys
from pathlib import Path

import torch

from lkmseg.files.run_folder import load_run
from lkmseg.train.convert import ConvertOptions, _prepare, _Scorer

out, src_s, ft_s = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
runs = out / "runs"
conv = json.loads((runs / f"5x5-{src_s}s-to-1x5-ft{ft_s}s" / "convert.json").read_text())
scratch = runs / f"1x5-{src_s + ft_s}s"
_, cfg = load_run(runs / f"5x5-{src_s}s")
_, prep = _prepare(cfg, ConvertOptions(), runs / f"5x5-{src_s}s")
score = _Scorer(prep, cfg, torch.device("cpu"), full_res=True)
model, _ = load_run(scratch)
rows = {k: v for k, v in conv["dice"].items()}
rows["scratch_1x5"] = score(model)
summ = {n: json.loads((runs / n / "summary.json").read_text())
        for n in (f"5x5-{src_s}s", f"5x5-{src_s}s-to-1x5-ft{ft_s}s", scratch.name)}
res = {"source_s": src_s, "fine_tune_s": ft_s, "dice": rows,
       "steps": {n: s["steps"] for n, s in summ.items()},
       "train_seconds": {n: s["train_seconds"] for n, s in summ.items()},
       "precision": {n: s.get("precision") for n, s in summ.items()},
       "energy_kept": {r["layer"]: r["energy_kept"] for r in conv["layers"]},
       "energy_kept_median": conv["surgery"]["energy_kept_median"],
       "params": conv["params"], "bn_images": conv["bn_images"],
       "load": (out / "load.txt").read_text().splitlines()}
(out / "results.json").write_text(json.dumps(res, indent=1))
print(json.dumps({k: {m: round(v, 4) for m, v in d.items()} for k, d in rows.items()}, indent=1))
