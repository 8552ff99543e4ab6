"""Gathers what benchmarks/gpu.sh's lkmseg commands wrote into one JSON (run by gpu.sh after
every step; reads files only, imports neither torch nor lkmseg).

    python benchmarks/gpu_collect.py WORK --out FILE|auto [--device D] [--blocks B,..]
        [--tiny 0|1] [--budget S] [--packages | --final]

--packages: say which packages lkmseg needs or may use are missing (exit 2 when the CLI itself
cannot start). --final: mark the document complete; exit 1 when a step failed (an export that
only lacked TensorRT is recorded as such, not as a failure).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
from importlib import metadata, util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# module -> (distribution, what needs it); "cli": lkmseg cannot start without it
PACKAGES = {
    "torch": ("torch", "cli"), "numpy": ("numpy", "cli"), "typer": ("typer", "cli"),
    "rich": ("rich", "cli"), "safetensors": ("safetensors", "cli"),
    "cv2": ("opencv-python-headless", "cli"), "PIL": ("pillow", "cli"),
    "psutil": ("psutil", "cli"), "matplotlib": ("matplotlib", "cli"),
    "onnx": ("onnx", "export"), "onnxscript": ("onnxscript", "export"),
    "onnxslim": ("onnxslim", "export"), "onnxruntime": ("onnxruntime", "export"),
    "google.protobuf": ("protobuf", "export"),
    "tensorrt": ("tensorrt", "optional"), "openvino": ("openvino", "optional"),
}


def packages() -> dict[str, dict]:
    out = {}
    for mod, (dist, need) in PACKAGES.items():
        found = util.find_spec(mod.split(".")[0]) is not None
        version = None
        for d in (dist, dist.replace("-headless", ""), "onnxruntime-gpu", "tensorrt-cu13"):
            try:
                version = metadata.version(d)
                break
            except metadata.PackageNotFoundError:
                continue
        out[mod] = {"found": found, "version": version if found else None, "needed_by": need}
    return out


def check_packages() -> int:
    pk = packages()
    missing = {need: [m for m, p in pk.items() if not p["found"] and p["needed_by"] == need]
               for need in ("cli", "export", "optional")}
    if missing["export"]:
        print(f"gpu.sh: missing {', '.join(missing['export'])}: `lkmseg export` (and so the "
              "ONNX/TensorRT rows) will fail; where pip cannot reach an index, download the "
              "wheels elsewhere into .whl/ (pip download --no-deps NAME -d .whl) and rerun")
    if missing["optional"]:
        print(f"gpu.sh: optional, not installed: {', '.join(missing['optional'])} "
              "(their rows are recorded as skipped)")
    if missing["cli"]:
        print(f"gpu.sh: lkmseg cannot start without {', '.join(missing['cli'])}", file=sys.stderr)
        return 2
    return 0


def _json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _last_line(log: Path) -> str:
    try:
        lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1][:400] if lines else ""


def steps(work: Path) -> list[dict]:
    out = []
    try:
        text = (work / "steps.tsv").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, rc, secs, rest = (line.split("\t") + ["", "", ""])[:4]
        if rc == "skipped":
            out.append({"name": name, "status": "skipped", "reason": rest})
            continue
        item = {"name": name, "rc": int(rc), "seconds": int(secs), "last_line": _last_line(
            Path(rest))}
        item["status"] = "ok" if item["rc"] == 0 else "failed"
        if name.startswith("export_") and item["rc"] == 2:
            report = _json(work / "runs" / name[len("export_"):] / "export" / "report.json")
            problems = (report or {}).get("problems") or ["?"]
            if all("--trt" in p for p in problems):  # the ONNX files were written
                item["status"] = "tensorrt unavailable"
        if item["rc"] in (124, 137):
            item["status"] = "stopped by the time guard"
        out.append(item)
    return out


def _steady_images_per_s(run: Path) -> float | None:
    """Median of train_log's per-step images/s over the run's second half (warm-up left out)."""
    try:
        with open(run / "train_log.csv", newline="") as f:
            vals = [float(r["images_per_s"]) for r in csv.DictReader(f)]
    except (OSError, KeyError, ValueError):
        return None
    half = vals[len(vals) // 2:]
    return round(statistics.median(half), 2) if half else None


def training(work: Path, blocks: list[str]) -> dict:
    out = {}
    for b in blocks:
        s, cfg = _json(work / "runs" / b / "summary.json"), _json(work / "runs" / b / "config.json")
        if not s:
            continue
        rt = (cfg or {}).get("runtime") or {}
        out[b] = {k: s.get(k) for k in ("params", "images_per_s", "precision", "channels_last",
                                         "steps", "train_seconds", "best_val_dice", "size",
                                         "batch_size", "device")}
        out[b]["images_per_s_steady"] = _steady_images_per_s(work / "runs" / b)
        out[b]["candidates_images_per_s"] = rt.get("measured_images_per_s")
    return out


def exports(work: Path, blocks: list[str]) -> dict:
    out = {}
    for b in blocks:
        r = _json(work / "runs" / b / "export" / "report.json")
        if not r:
            continue
        out[b] = {"passed": r.get("passed"), "problems": r.get("problems"),
                  "formats": {k: {x: f.get(x) for x in ("status", "reason", "passed", "mb",
                                                         "max_abs_logit_diff",
                                                         "mask_dice_vs_torch", "precision")
                                  if x in f}
                              for k, f in (r.get("formats") or {}).items()}}
    return out


def bench(work: Path) -> dict:
    rows, ctx = _json(work / "bench" / "bench.json"), _json(work / "bench" / "bench_context.json")
    if not rows:
        return {}
    keep = ("model", "engine", "precision", "batch", "status", "latency_ms_p50",
            "latency_ms_p99", "fps", "dice", "agreement", "mem_mb", "engine_detail")
    ctx = ctx or {}
    return {"rows": [{k: r.get(k) for k in keep} for r in rows],
            "context": {k: ctx.get(k) for k in ("device", "gpu", "date", "peaks", "inputs",
                                                 "threads", "torch")}}


def document(work: Path, a: argparse.Namespace) -> dict:
    blocks = a.blocks.split(",")
    info = _json(work / "info.json") or {}
    env = info.get("environment", {})
    gpus = env.get("gpus") or []
    smi = (work / "nvidia_smi.csv").read_text().strip() if (work / "nvidia_smi.csv").is_file() \
        else None
    train = training(work, blocks)
    ratios = {f"{s}/{q}": round(train[s]["images_per_s_steady"] / train[q]["images_per_s_steady"],
                                3)
              for s, q in (("1x5", "5x5"), ("1x5", "3x3"), ("5x5", "3x3"))
              if s in train and q in train and train[s]["images_per_s_steady"]
              and train[q]["images_per_s_steady"]}
    return {
        "meta": {"date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "device": a.device, "tiny": a.tiny == "1", "blocks": blocks,
                 "budget_s": int(a.budget) if a.budget else None,
                 "device_name": gpus[0]["name"] if a.device == "cuda" and gpus
                 else (env.get("cpu") or {}).get("name"),
                 "nvidia_smi": smi, "git_commit": _git_commit(),
                 "versions": {k: env.get(k) for k in ("lkmseg", "python", "platform", "torch",
                                                      "cuda", "cudnn", "onnx", "onnxslim",
                                                      "onnxruntime", "openvino", "tensorrt")},
                 "onnxruntime_providers": env.get("onnxruntime_providers"),
                 "packages": packages()},
        "machine": {"cpu": env.get("cpu"), "gpus": gpus},
        "steps": steps(work),
        "train": train, "train_ratios_steady": ratios,
        "export": exports(work, blocks),
        "bench": bench(work),
    }


def _git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                           capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None


def _out_path(a: argparse.Namespace, doc: dict) -> Path:
    if a.out != "auto":
        return Path(a.out)
    name = re.sub(r"[^a-z0-9]+", "-", str(doc["meta"]["device_name"] or a.device).lower())
    return ROOT / "benchmarks" / "results" / f"gpu_bench-{name.strip('-')}-{dt.date.today()}.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--out", default="auto")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--blocks", default="3x3,5x5,1x5")
    ap.add_argument("--tiny", default="0")
    ap.add_argument("--budget", default=None)
    ap.add_argument("--packages", action="store_true")
    ap.add_argument("--final", action="store_true")
    a = ap.parse_args(argv)
    if a.packages:
        return check_packages()
    doc = document(a.work, a)
    failed = [s["name"] for s in doc["steps"] if s["status"] not in ("ok", "tensorrt unavailable")]
    doc["meta"]["status"] = ("complete" if not failed else "incomplete") if a.final else "running"
    doc["meta"]["not_ok"] = failed
    out = _out_path(a, doc)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, out)
    if a.final:
        print(f"gpu.sh: wrote {out}" + (f"; not ok: {', '.join(failed)}" if failed else ""))
    return 1 if a.final and failed else 0


if __name__ == "__main__":
    sys.exit(main())
