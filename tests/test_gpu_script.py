"""benchmarks/gpu_bench.py on CPU: the code path of every part in seconds (--tiny), failing
soft when optional packages are missing, an unknown block, or the time budget runs out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_bench.py"


def _bench(tmp_path: Path, *args: str, pythonpath: list[Path] = ()) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, pythonpath), str(ROOT)])}
    env.pop("OUT", None)
    r = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--out",
                        str(tmp_path), *args], env=env, capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stdout
    return json.loads((tmp_path / "gpu_bench.json").read_text())


def test_tiny_cpu_run_measures_every_part(tmp_path):
    doc = _bench(tmp_path, "--blocks", "5x5,1x5,x9")
    meta = doc["meta"]
    for k in ("date_utc", "device_name", "torch", "torch_cuda", "packages", "total_seconds"):
        assert k in meta, k
    parts = doc["parts"]
    assert list(parts) == ["train", "infer_torch", "onnxruntime", "train_compile", "tensorrt"]
    for name, precs in (("train", ["fp32", "bf16"]), ("train_compile", ["bf16"])):
        rows = {(r["block"], r["precision"]): r for r in parts[name]["rows"]}
        assert parts[name]["status"] == "ok" and parts[name]["precisions"] == precs
        for b in ("5x5", "1x5"):
            for p in precs:
                r = rows[b, p]
                assert r["images_per_s"] > 0 and len(r["step_ms"]) == 2, r
        for p in precs:  # recorded, the others measured
            assert "unknown block 'x9'" in rows["x9", p]["error"]
        assert set(parts[name]["ratios"]) == {f"1x5/5x5 {p}" for p in precs}
    assert parts["train_compile"]["compile"] == "eager"
    infer = [r for r in parts["infer_torch"]["rows"] if "error" not in r]
    assert {(r["block"], r["precision"]) for r in infer} == {
        (b, p) for b in ("5x5", "1x5") for p in ("fp32", "bf16")}
    assert all(0 < r["latency_ms_p50"] <= r["latency_ms_p99"] for r in infer)
    ort = [r for r in parts["onnxruntime"]["rows"] if "error" not in r]
    assert {r["block"] for r in ort} == {"5x5", "1x5"}
    assert all(r["provider"] == "CPU" and r["session_providers"] == ["CPUExecutionProvider"]
               and r["fps"] > 0 for r in ort)
    assert parts["tensorrt"]["status"] == "skipped"
    assert "CUDA" in parts["tensorrt"]["reason"]


def test_missing_optional_packages_fail_soft(tmp_path):
    """No onnx / onnxruntime / tensorrt / safetensors / rich / onnxscript: still runs."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for mod in ("onnx", "onnxruntime", "tensorrt", "safetensors", "rich", "onnxscript",
                "onnxslim"):
        (stubs / f"{mod}.py").write_text(f"raise ImportError('{mod}: simulated missing')\n")
    doc = _bench(tmp_path, "--parts", "infer_torch,onnxruntime", "--blocks", "1x5",
                 pythonpath=[stubs])
    parts = doc["parts"]
    assert parts["infer_torch"]["status"] == "ok"
    assert parts["onnxruntime"]["status"] == "skipped"
    assert "onnx is not installed" in parts["onnxruntime"]["reason"]
    # the stubs raise on import: reaching here means nothing imported safetensors or rich


def test_time_budget_skips_with_the_reason(tmp_path):
    doc = _bench(tmp_path, "--budget", "0")
    assert {p["status"] for p in doc["parts"].values()} == {"skipped"}
    assert all("time budget" in p["reason"] or "CUDA" in p["reason"]
               for p in doc["parts"].values())
