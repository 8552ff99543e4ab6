"""Names of the files lkmseg writes — a run folder, its export folder, the cache, bench's
output — and where the sample inputs shipped with the package live. The one place they are
spelled (tests/test_structure.py checks)."""

from __future__ import annotations

from pathlib import Path

# run folder
CONFIG = "config.json"
BEST, LAST, STATE = "model.safetensors", "last.safetensors", "state.pt"
WEIGHT_FILES = (BEST, LAST)  # the torch engine's preference order
SUMMARY, TRAIN_LOG, VAL_LOG = "summary.json", "train_log.csv", "val_log.csv"
RESULTS_PNG = "results.png"  # loss and Dice curves (lkmseg.plots)
# a run folder made by lkmseg convert also holds
CONVERT_REPORT = "convert.json"  # energy kept per layer, Dice before and after
CONVERTED = "converted.safetensors"  # the converted weights, before fine-tuning

# $LKMSEG_CACHE
AUTOTUNE = "autotune.json"  # measured precision x layout choices (lkmseg.tune)

# lkmseg bench --out
BENCH_JSON, BENCH_CSV, BENCH_MD = "bench.json", "bench.csv", "bench.md"

# RUN/export/
EXPORT_DIR = "export"
ONNX_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
ENGINE_FILE = "model.engine"
ENGINE_EXTS = (".engine", ".plan", ".trt")
REPORT = "report.json"
EXPORT_FILES = {"onnx_fp32": ONNX_FILES["fp32"], "onnx_fp16": ONNX_FILES["fp16"],
                "onnx_int8": ONNX_FILES["int8"], "tensorrt": ENGINE_FILE}  # report.json's keys
ORT_TRT_CACHE = "ort_trt_cache"  # ONNX Runtime's TensorRT provider engine cache

# small self-made images, masks and a video, shipped as package data (scripts/make_samples.py)
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"


def sidecar_path(engine: Path) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    return engine.with_name(engine.name + ".json")
