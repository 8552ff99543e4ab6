"""Why does `lkmseg train` step slower than the harness? Variants of a short 5x5 run."""
import csv, subprocess, sys, statistics, time, os
import torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from lkmseg.models import ModelConfig, build_model
from lkmseg.train.runtime import random_batch, train_step_fn

data = os.environ["LKMSEG_CARVANA"]
def run(name, extra):
    out = f"/tmp/m/exp/{name}"
    subprocess.run(["rm", "-rf", out])
    cmd = [str(__import__("pathlib").Path(sys.executable).parent / "lkmseg"), "train", "--block", "5x5", "--data", data, "--size", "256",
           "--steps", "40", "--val-every", "1000", "--amp", "bf16", "--channels-last", "off",
           "--out", "/tmp/m/exp", "--name", name, *extra]
    subprocess.run(cmd, check=True, capture_output=True)
    rows = list(csv.DictReader(open(f"{out}/train_log.csv")))
    el = [float(r["elapsed_s"]) for r in rows]
    d = [el[i] - el[i - 1] for i in range(5, len(el))]
    return statistics.median(d)

torch.manual_seed(0)
m = build_model(ModelConfig(block="5x5"))
x, y = random_batch(8, 256, 256, torch.device("cpu"))
fn = train_step_fn(m, x, y, "bf16", False)
def harness():
    fn(); ts = []
    for _ in range(8):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
res = {}
for rnd in range(2):
    for name, extra in (("default", []), ("workers0", ["--workers", "0"]), ("noaug", ["--no-augment"])):
        res.setdefault(name, []).append(run(name, extra))
    res.setdefault("harness", []).append(harness())
    print(rnd, {k: [round(v, 3) for v in vs] for k, vs in res.items()}, flush=True)
