"""Names of the files in a run folder and in its export folder (the DESIGN.md contract)."""

from __future__ import annotations

from pathlib import Path

# run folder
CONFIG = "config.json"
BEST, LAST, STATE = "model.safetensors", "last.safetensors", "state.pt"
WEIGHT_FILES = (BEST, LAST)  # the torch engine's preference order
SUMMARY, TRAIN_LOG, VAL_LOG = "summary.json", "train_log.csv", "val_log.csv"

# RUN/export/
EXPORT_DIR = "export"
ONNX_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
ENGINE_FILE = "model.engine"
ENGINE_EXTS = (".engine", ".plan", ".trt")
REPORT = "report.json"
ORT_TRT_CACHE = "ort_trt_cache"  # ONNX Runtime's TensorRT provider engine cache


def sidecar_path(engine: Path) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    return engine.with_name(engine.name + ".json")
