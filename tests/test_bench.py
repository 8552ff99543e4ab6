import csv
import json
import math
import os

import pytest
from conftest import SAMPLES
from typer.testing import CliRunner

from lkmseg.bench.measure import gflops_per_image
from lkmseg.bench.report import COLUMNS, ratios
from lkmseg.cli.app import app
from lkmseg.models import ModelConfig, build_model
from lkmseg.timing import Probe, interleave, percentiles

CONTRACT = ["model", "block", "kernel", "engine", "status", "params", "gflops", "file_mb",
            "dice", "latency_ms_p50", "latency_ms_p99", "fps", "train_images_per_s"]
FILLED = CONTRACT + ["latency_ms_p90", "mem_mb", "gflops_per_s", "frac_of_peak", "precision",
                     "batch"]


def test_gflops_counts_convolutions():
    # one 5x5 conv 3->8 at 32x32 dominates nothing: check the ratio of two models instead
    sq = gflops_per_image(build_model(ModelConfig(block="5x5", width=4, depth=2)), (32, 32))
    sep = gflops_per_image(build_model(ModelConfig(block="1x5", width=4, depth=2)), (32, 32))
    assert 0 < sep < sq
    # 1x5 then 5x1 (in->out, out->out) vs 25*in*out: same accounting as parameters
    assert sep / sq == pytest.approx(0.4, abs=0.1)


def test_percentiles_and_interleave():
    st = percentiles([0.001 * i for i in range(1, 101)])
    assert st["p50"] == pytest.approx(50.5) and st["p99"] == pytest.approx(99.01)
    order = []
    probes = {k: Probe(lambda k=k: order.append(k)) for k in "ab"}
    interleave(probes, rounds=3, per_round=2)
    assert order == list("aabbaabbaabb") and len(probes["a"].times) == 6


@pytest.fixture
def two_runs(tiny_run):
    return [tiny_run("5x5", width=8, depth=2, size=(32, 48)),
            tiny_run("1x5", width=8, depth=2, size=(32, 48))]


def test_bench_every_column_or_skip_reason(two_runs, tmp_path):
    out = tmp_path / "bench"
    for run in two_runs:  # untrained: INT8 may miss a 0.005 gate; this test is about columns
        res = CliRunner().invoke(app, ["export", str(run), "--parity-images", "4",
                                       "--int8-tolerance", "0.9"])
        assert res.exit_code == 0, res.output
    r = CliRunner().invoke(app, ["bench", *map(str, two_runs), "--source",
                                 str(SAMPLES), "--batch-sizes", "1,2", "--reps", "3",
                                 "--limit", "4", "--out", str(out),
                                 # untrained models: an INT8 row's Dice on 4 images may move by
                                 # more than 0.005 (the gate itself is tested in
                                 # test_bench_verdict / test_openvino_int8)
                                 "--dice-tolerance", "1"])
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "bench.json").read_text())
    assert all(list(row) == COLUMNS for row in rows)
    ok = [x for x in rows if x["status"] == "ok"]
    skipped = [x for x in rows if x["status"] != "ok"]
    # 2 models x every runtime x precision that runs here x 2 batch sizes
    combos = {(x["engine"], x["precision"]) for x in ok}
    assert {("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "fp16"),
            ("onnxruntime", "int8")} <= combos, [(x["engine"], x["status"]) for x in rows]
    per_model: dict[str, set] = {}
    for x in ok:
        per_model.setdefault(x["model"], set()).add((x["engine"], x["precision"]))
    # every combo that runs for a model runs at both batch sizes (OpenVINO int8 may be
    # skipped for one model only: its answers varied between loads at export)
    assert len(per_model) == 2 and len(ok) == 2 * sum(map(len, per_model.values()))
    for x in skipped:
        if (x["engine"], x["precision"]) == ("openvino", "int8") and "openvino" in {
                e for e, _ in per_model[x["model"]]}:
            assert "answers vary between loads" in x["status"], x["status"]
    assert all(x["status"].startswith("skipped: ") for x in skipped)
    from lkmseg import hw

    torch_bf16 = [x for x in rows if x["engine"] == "torch" and x["precision"] == "bf16"]
    if hw.native_bf16("cpu"):
        assert all(x["status"] == "ok" for x in torch_bf16)
    else:
        assert all("bf16" in x["status"] and x["status"].startswith("skipped: ")
                   for x in torch_bf16)
    for x in ok:
        for k in FILLED:
            assert x[k] is not None and x[k] == x[k], (k, x)
        assert x["latency_ms_p50"] <= x["latency_ms_p99"]
        assert x["fps"] == pytest.approx(x["batch"] * 1000 / x["latency_ms_p50"], rel=1e-2)
        assert 0 <= x["dice"] <= 1 and x["dice_kind"] == "gt"
    trt = [x for x in skipped if x["engine"] == "tensorrt"]
    assert len(trt) == 6 and all(x["status"].startswith("skipped: ") for x in trt)
    assert all(len(x["status"]) > 20 for x in trt)  # says why
    by = {(x["model"].split("_")[-1], x["engine"], x["precision"], x["batch"]): x for x in ok}
    # the same weights give the same masks in every fp32 engine
    assert by[("5x5", "torch", "fp32", 1)]["dice"] == pytest.approx(
        by[("5x5", "onnxruntime", "fp32", 1)]["dice"], abs=1e-3)
    # file sizes: fp16 ONNX about half of fp32
    f32, f16 = by[("1x5", "onnxruntime", "fp32", 1)], by[("1x5", "onnxruntime", "fp16", 1)]
    assert f16["file_mb"] < 0.75 * f32["file_mb"]
    with open(out / "bench.csv") as f:
        assert list(csv.DictReader(f).fieldnames) == COLUMNS
    md = (out / "bench.md").read_text()
    assert "| model |" in md and "Separable vs square" in md and "1x5" in md
    for png in ["dice_vs_latency.png", "train_throughput.png", "latency_per_engine.png"]:
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
    rs = ratios(rows)
    assert len(rs) == 1 and rs[0]["size_ratio"] == pytest.approx(
        f32["params"] / by[("5x5", "torch", "fp32", 1)]["params"])
    assert "speedup onnxruntime fp32 bs1" in rs[0] and math.isfinite(rs[0]["train_speedup"])
    assert "1x5" in r.output and "vs" in r.output  # ratios printed under the table


def test_bench_video_uses_agreement(two_runs, tmp_path):
    out = tmp_path / "b"
    r = CliRunner().invoke(app, ["bench", str(two_runs[1]), "--source",
                                 str(SAMPLES / "video.mp4"), "--engines", "torch,onnxruntime",
                                 "--batch-sizes", "1", "--reps", "3", "--limit", "3",
                                 "--no-train", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "bench.json").read_text())
    assert {x["dice_kind"] for x in rows} == {"agreement"}
    torch_row = next(x for x in rows if x["engine"] == "torch")
    ort = next(x for x in rows if x["engine"] == "onnxruntime" and x["precision"] == "fp32")
    assert torch_row["dice"] == 1.0 and ort["dice"] > 0.999
    assert all(x["train_images_per_s"] is None for x in rows)  # --no-train


def test_bench_without_runs_says_how(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["bench"])
    assert r.exit_code == 2 and "lkmseg train" in r.output
    for args, needle in [(["--engines", "torch,cuda"], "unknown engine"),
                         (["--batch-sizes", "1,x"], "--batch-sizes"),
                         (["--batch-sizes", "0"], "--batch-sizes")]:
        r = CliRunner().invoke(app, ["bench", str(tmp_path), *args])
        assert r.exit_code == 2 and needle in r.output, (args, r.output)
    os.makedirs(tmp_path / "notarun")
    r = CliRunner().invoke(app, ["bench", str(tmp_path / "notarun")])
    assert r.exit_code == 2 and "notarun" in r.output


def test_compare_tiny_budget(tmp_path, monkeypatch):
    from conftest import write_pairs

    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))
    data = write_pairs(tmp_path / "data", "carvana", groups=4, views=3, size=(48, 64))
    out = tmp_path / "cmp"
    args = ["compare", "--blocks", "5x5,1x5", "--data", str(data), "--size", "32x48",
            "--width", "2", "--depth", "2", "--budget", "3s", "--batch-size", "4",
            "--engines", "torch,onnxruntime", "--batch-sizes", "1", "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    report = (out / "report.md").read_text()
    for needle in ["## Training", "## Headline ratios", "## Benchmark", "1x5 vs 5x5",
                   "curves.png", "Export parity", "same wall-clock budget",
                   "## Training speed per precision", "The Dice curves were trained in",
                   "1x5/5x5 training speed-up: fp32"]:
        assert needle in report, needle
    for b in ["5x5", "1x5"]:
        s = json.loads((out / "runs" / b / "summary.json").read_text())
        assert s["status"] == "complete" and 3 <= s["train_seconds"] < 30 and s["steps"] > 0
    assert (out / "curves.png").stat().st_size > 5000
    mtime = (out / "runs" / "1x5" / "model.safetensors").stat().st_mtime_ns
    r = CliRunner().invoke(app, args)  # a second run reuses the trained runs
    assert r.exit_code == 0 and "already trained" in r.output
    assert (out / "runs" / "1x5" / "model.safetensors").stat().st_mtime_ns == mtime
