"""benchmarks/gpu.sh drives the product (lkmseg info/train/export/bench) and gathers one JSON;
on CPU with --tiny it runs the same commands on a tiny model."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lkmseg.models import ModelConfig, build_model, count_params

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"


def _gpu_sh(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu_bench.json"
    env = {**os.environ, "PYTHON": sys.executable, "LKMSEG_CACHE": str(tmp_path / "cache"),
           "LKMSEG_WHEELS": str(tmp_path / "no-wheels")}
    env.pop("OUT", None)
    r = subprocess.run(["bash", str(SCRIPT), "--device", "cpu", "--tiny", "--out", str(out),
                        *args], env=env, capture_output=True, text=True, timeout=600,
                       cwd=tmp_path, check=False)
    assert out.is_file(), r.stdout[-3000:] + r.stderr[-3000:]
    return r, json.loads(out.read_text())


def test_tiny_cpu_run_drives_train_export_bench(tmp_path):
    r, doc = _gpu_sh(tmp_path, "--blocks", "1x5")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    meta = doc["meta"]
    assert meta["status"] == "complete" and meta["not_ok"] == [] and meta["device"] == "cpu"
    assert meta["date_utc"] and meta["device_name"] and meta["versions"]["torch"]
    assert meta["packages"]["torch"]["found"] and meta["packages"]["typer"]["needed_by"] == "cli"
    trt_here = meta["packages"]["tensorrt"]["found"] and doc["machine"]["gpus"]
    steps = {s["name"]: s for s in doc["steps"]}
    assert list(steps) == ["info", "train_1x5", "export_1x5", "bench"]
    assert all(s["status"] == "ok" for n, s in steps.items() if n != "export_1x5")
    # no TensorRT or no GPU: export writes the ONNX files, says so, exits 2: recorded, not failed
    assert steps["export_1x5"]["status"] == ("ok" if trt_here else "tensorrt unavailable")
    assert "--trt needs TensorRT" in steps["export_1x5"]["last_line"] or trt_here

    t = doc["train"]["1x5"]
    assert t["params"] == count_params(build_model(ModelConfig(block="1x5", width=4, depth=3)))
    assert t["steps"] == 3 and t["images_per_s"] > 0 and t["images_per_s_steady"] > 0
    assert t["precision"] == "fp32" and t["size"] == [64, 64] and t["batch_size"] == 2

    formats = doc["export"]["1x5"]["formats"]
    assert formats["onnx_fp32"]["passed"] and formats["onnx_fp16"]["passed"]
    assert formats["tensorrt"].get("status") == "unavailable" or trt_here

    rows = {(x["engine"], x["precision"]): x for x in doc["bench"]["rows"]}
    for key in (("torch", "fp32"), ("onnxruntime", "fp32")):
        assert rows[key]["status"] == "ok" and rows[key]["latency_ms_p50"] > 0, rows[key]
        assert rows[key]["batch"] == 1 and 0 <= rows[key]["dice"] <= 1
    assert rows["torch", "tf32"]["status"].startswith("skipped: tf32 is a CUDA mode")
    assert rows["tensorrt", "fp32"]["status"].startswith("skipped: ")
    assert doc["bench"]["context"]["device"] == "cpu"


def test_time_budget_skips_every_step_with_the_reason(tmp_path):
    r, doc = _gpu_sh(tmp_path, "--budget", "0", "--blocks", "5x5,1x5")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert doc["meta"]["status"] == "incomplete"
    assert [s["name"] for s in doc["steps"]] == ["info", "train_5x5", "train_1x5"]
    assert all(s["status"] == "skipped" and "time budget: 0s left" in s["reason"]
               for s in doc["steps"])
    assert doc["meta"]["not_ok"] == ["info", "train_5x5", "train_1x5"]
    assert doc["train"] == {} and doc["bench"] == {}


def test_bad_option_is_one_line_and_exit_2(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT), "--frobnicate"], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "unknown option --frobnicate" in r.stderr


@pytest.fixture
def collect():
    spec = importlib.util.spec_from_file_location("gpu_collect",
                                                  ROOT / "benchmarks" / "gpu_collect.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_missing_packages_are_named(collect, monkeypatch, capsys):
    monkeypatch.setattr(collect, "PACKAGES", {
        "json": ("json", "cli"), "lkmseg_absent_exporter": ("absent-exporter", "export"),
        "lkmseg_absent_runtime": ("absent-runtime", "optional")})
    assert collect.check_packages() == 0
    out = capsys.readouterr().out
    assert "missing lkmseg_absent_exporter: `lkmseg export`" in out and ".whl/" in out
    assert "optional, not installed: lkmseg_absent_runtime" in out
    monkeypatch.setitem(collect.PACKAGES, "lkmseg_absent_core", ("absent-core", "cli"))
    assert collect.check_packages() == 2
    assert "cannot start without lkmseg_absent_core" in capsys.readouterr().err
