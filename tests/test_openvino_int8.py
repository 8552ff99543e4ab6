"""OpenVINO engine, gated INT8 export, bench rows for every runtime x precision (skipped vs
failed, exit codes) and auto's measured choice — on a tiny model trained for seconds on easy
data (a random model predicts nothing, which no accuracy gate can tell from a good one)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_pairs
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.config import RunConfig, TrainConfig
from lkmseg.data.transforms import postprocess, preprocess
from lkmseg.engines import auto as auto_mod
from lkmseg.engines import load_engine, resolve_model
from lkmseg.engines.openvino_engine import OpenVinoEngine, bf16_status
from lkmseg.errors import UserError
from lkmseg.export import quantize
from lkmseg.files.onnx_meta import read_metadata
from lkmseg.metrics import dice
from lkmseg.models import ModelConfig

runner = CliRunner()
pytest.importorskip("openvino")
BF16 = bf16_status()[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 1x5 U-Net trained for 80 steps on ellipses, exported with INT8 and the gates."""
    from lkmseg.train.loop import train_run

    root = tmp_path_factory.mktemp("ovint8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LKMSEG_CACHE", str(root / "cache"))
        data = write_pairs(root / "data", "carvana", groups=4, views=4, size=(48, 64))
        cfg = RunConfig(model=ModelConfig(block="1x5", width=4, depth=3), size=(32, 48),
                        train=TrainConfig(steps=80, batch_size=4, channels_last="off",
                                          lr=3e-3, val_every=40))
        run, summary = train_run(cfg, data, root / "runs", name="r")
        assert summary["best_val_dice"] > 0.8, summary
        res = runner.invoke(app, ["export", str(run), "--gate-images", "8"])
        assert res.exit_code == 0, res.output
    return run


def _report(run: Path) -> dict:
    return json.loads((run / "export" / "report.json").read_text())


def _copy(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst)
    return dst


def _ov_int8_varies(run: Path) -> bool:
    """Export found OpenVINO's INT8 answers changing from one load to the next (this 1x5 model
    on an AMX CPU: OpenVINO's int8 1xk kernels); asserted in both cases below."""
    return _report(run)["accuracy_gate"]["candidates"]["openvino/int8"]["reproducible"] is False


def test_export_writes_gated_int8(trained):
    ex = trained / "export"
    assert (ex / "model.int8.onnx").is_file() and not (ex / "model.int8.rejected.onnx").exists()
    assert read_metadata(ex / "model.int8.onnx")["precision"] == "int8"
    # int8 weights (a tiny model: the Q/DQ scales weigh relatively more than at full size)
    assert (ex / "model.int8.onnx").stat().st_size < 0.75 * (ex / "model.onnx").stat().st_size
    rep = _report(trained)
    int8 = rep["formats"]["onnx_int8"]
    assert int8["status"] == "shipped" and int8["passed"] and int8["recipe"]
    assert int8["calibration"]["origin"].startswith("training images of the run")
    varies = _ov_int8_varies(trained)
    deciding = ("onnxruntime",) if varies else ("onnxruntime", "openvino")
    assert set(int8["checked_on"]) == set(deciding)
    # parity figures on the parity images, beside the other formats' (not a verdict)
    assert int8["mask_dice_vs_torch"] > 0.9 and int8["max_abs_logit_diff"] > 0
    assert int8["gate_dice"] == min(int8["attempts"][-1]["runtimes"][k]["dice"]
                                    for k in deciding)
    gate = rep["accuracy_gate"]
    assert gate["tolerance"] == 0.005 and gate["reference"]["dice"] > 0.8
    cands = gate["candidates"]
    ov8 = cands["openvino/int8"]
    if varies:  # reported with its figures, never passed
        assert not ov8["passed"] and ov8["repro_min_mask_dice"] < 0.999
        assert "vary between loads" in ov8["reason"]
    keys = ("onnxruntime/int8", "openvino/fp32", "onnxruntime/fp32", "openvino/bf16",
            "torch/bf16")
    for key in keys if varies else (*keys, "openvino/int8"):
        c = cands.get(key)
        if c is None or "AVX512-BF16" in c.get("reason", ""):  # no native bf16 here
            assert not BF16, key
            continue
        assert c["reproducible"] and c["repro_mask_dice"] >= 0.999, (key, c)
        assert c["passed"] and c["delta"] >= -0.005, (key, c)
        assert c["dice"] == pytest.approx(gate["reference"]["dice"] + c["delta"], abs=1e-4)
    assert cands["openvino/fp32"]["mask_dice_vs_torch"] > 0.999
    if BF16:
        assert cands["openvino/bf16"]["passed"]
    else:
        assert "AVX512-BF16" in cands["openvino/bf16"]["reason"]


def test_every_engine_and_precision_agrees_with_torch(trained):
    from lkmseg.config import load_config
    from lkmseg.data.imageio import read_image

    imgs = [read_image(p) for p, _ in load_config(trained).data["val_items"][:3]]
    x = preprocess(imgs, (32, 48)).numpy()
    ref = load_engine("torch", trained)(x)
    ref_masks = postprocess(ref, [i.shape[:2] for i in imgs])
    combos = [("openvino", "fp32"), ("openvino", "int8"), ("onnxruntime", "int8")]
    combos += [("openvino", "bf16")] if BF16 else []
    for name, prec in combos:
        if (name, prec) == ("openvino", "int8") and _ov_int8_varies(trained):
            continue  # its masks change with each load here (asserted in the export test)
        eng = load_engine(name, trained, precision=prec)
        assert eng.name == name and eng.precision == prec and eng.device == "cpu"
        out = eng(x)  # batch 3: OpenVINO's throughput path (parallel single-image requests)
        assert out.shape == ref.shape and out.dtype == np.float32
        one = np.concatenate([eng(x[i : i + 1]) for i in range(3)])  # latency path
        masks = postprocess(out, [i.shape[:2] for i in imgs])
        assert min(dice(a, b) for a, b in zip(masks, ref_masks)) > 0.95, (name, prec)
        if prec == "int8":  # int8 kernels differ between the two modes: compare masks
            singles = postprocess(one, [i.shape[:2] for i in imgs])
            assert min(dice(a, b) for a, b in zip(masks, singles)) > 0.95, (name, prec)
        else:
            assert np.allclose(out, one, atol=1e-4), (name, prec)
        if prec == "fp32":
            assert np.abs(out - ref).max() < 1e-3
        eng.close()
    odd = preprocess(imgs[:1], (37, 53)).numpy()  # another shape: compiled on demand
    assert load_engine("openvino", trained)(odd).shape == (1, 1, 37, 53)


def test_openvino_refuses_what_it_cannot_run(trained, monkeypatch, tmp_path):
    import lkmseg.engines.openvino_engine as ove

    monkeypatch.setattr(ove, "capabilities", lambda: frozenset({"FP32", "INT8"}))
    ok, why = OpenVinoEngine.available("bf16", "cpu")
    assert not ok and "no AVX512-BF16/AMX on this CPU" in why
    with pytest.raises(UserError, match="AVX512-BF16"):
        load_engine("openvino", trained, precision="bf16")
    assert not OpenVinoEngine.available("fp16", "cpu")[0]
    assert "CPU only" in OpenVinoEngine.available("fp32", "cuda")[1]
    with pytest.raises(UserError, match="reads the int8 export"):
        OpenVinoEngine(trained / "export" / "model.onnx", precision="int8")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(UserError, match="bad.onnx"):
        OpenVinoEngine(bad)


def _black_dir(root: Path, n: int = 8) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(root / f"black_{i}.png"), np.zeros((48, 64, 3), np.uint8))
    return root


def test_damaged_calibration_fails_the_gate_and_exits_3(trained, tmp_path):
    run = _copy(trained, tmp_path / "run")
    res = runner.invoke(app, ["export", str(run), "--no-fp16", "--gate-images", "8",
                              "--calib", str(_black_dir(tmp_path / "black"))])
    assert res.exit_code == 3, res.output
    assert "model.int8.rejected.onnx" in res.output and "--no-int8" in res.output
    ex = run / "export"
    assert (ex / "model.int8.rejected.onnx").is_file() and not (ex / "model.int8.onnx").exists()
    int8 = _report(run)["formats"]["onnx_int8"]
    assert int8["status"] == "rejected" and not int8["passed"]
    # every recipe of the fixed ladder was tried, in order, with its figures
    assert [a["recipe"] for a in int8["attempts"]] == [r.name for r in quantize.RECIPES]
    assert all(not a["passed"] and a["worst_delta"] < -0.005 for a in int8["attempts"])
    assert int8["attempts"][1]["float_nodes"] and not int8["attempts"][0]["float_nodes"]
    assert int8["attempts"][3]["calibrate_method"] == "Percentile"
    # auto never picks the rejected model; bench marks its rows failed and exits 3
    src = resolve_model(run)
    assert "int8" not in src.onnx
    out = tmp_path / "bench"
    res = runner.invoke(app, ["bench", str(run), "--engines", "onnxruntime,openvino",
                              "--batch-sizes", "1", "--reps", "3", "--limit", "4",
                              "--no-train", "--out", str(out)])
    assert res.exit_code == 3, res.output
    rows = json.loads((out / "bench.json").read_text())  # written before the exit
    int8_rows = [r for r in rows if r["precision"] == "int8"]
    assert len(int8_rows) == 2
    assert all(r["status"].startswith("failed: export rejected INT8") for r in int8_rows)
    # --no-int8 is the way out: the rejected file goes, the rows become "skipped"
    res = runner.invoke(app, ["export", str(run), "--no-fp16", "--no-int8"])
    assert res.exit_code == 0, res.output
    assert not (ex / "model.int8.rejected.onnx").exists()
    res = runner.invoke(app, ["bench", str(run), "--engines", "onnxruntime", "--batch-sizes",
                              "1", "--reps", "3", "--limit", "4", "--no-train", "--out",
                              str(out)])
    assert res.exit_code == 0, res.output
    row = next(r for r in json.loads((out / "bench.json").read_text())
               if r["precision"] == "int8")
    assert row["status"].startswith("skipped: no model.int8.onnx") and "--no-int8" in row["status"]


def test_bench_every_runtime_and_precision(trained, tmp_path):
    out = tmp_path / "bench"
    res = runner.invoke(app, ["bench", str(trained), "--batch-sizes", "1,2", "--reps", "3",
                              "--limit", "4", "--no-train", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "bench.json").read_text())
    by = {(r["engine"], r["precision"], r["batch"]): r for r in rows}
    want_ok = [("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "fp16"),
               ("onnxruntime", "int8"), ("openvino", "fp32")]
    if _ov_int8_varies(trained):  # not timed, and bench does not fail for it
        st = next(r["status"] for r in rows if r["engine"] == "openvino"
                  and r["precision"] == "int8")
        assert st.startswith("skipped: openvino int8: answers vary between loads"), st
    else:
        want_ok.append(("openvino", "int8"))
    want_ok += [("openvino", "bf16"), ("torch", "bf16")] if BF16 else []
    ctx = json.loads((out / "bench_context.json").read_text())
    for eng, prec in want_ok:
        for bs in (1, 2):
            r = by[(eng, prec, bs)]
            assert r["status"] == "ok", r
            assert r["dice"] > 0.7 and r["agreement"] > 0.9, r
            assert r["latency_ms_p50"] <= r["latency_ms_p99"] and r["fps"] > 0
            assert r["file_mb"] > 0
            peak = ctx["peaks"]["fp32" if prec == "fp16" else prec]
            assert r["peak_gflops"] == peak and r["frac_of_peak"] > 0, r
    assert by[("torch", "fp32", 1)]["agreement"] == 1.0
    assert by[("onnxruntime", "int8", 1)]["file_mb"] < by[("onnxruntime", "fp32", 1)]["file_mb"]
    trt = [r for r in rows if r["engine"] == "tensorrt"]
    assert {r["precision"] for r in trt} == {"fp32", "fp16", "int8"}
    assert all(r["status"].startswith("skipped: ") and len(r["status"]) > 20 for r in trt)
    assert not any(r["status"].startswith("failed") for r in rows)
    assert ctx["peaks"]["fp32"] > 0 and ctx["peaks"]["int8"] > 0 and ctx["cpu"]
    png = (out / "dice_vs_latency.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000


def test_bench_broken_file_is_failed_and_exits_2(trained, tmp_path):
    run = _copy(trained, tmp_path / "run")
    (run / "export" / "model.int8.onnx").write_bytes(b"\x08\x07garbage")
    out = tmp_path / "bench"
    eng8 = "onnxruntime" if _ov_int8_varies(trained) else "openvino"  # (varies: not loaded)
    res = runner.invoke(app, ["bench", str(run), "--engines", f"torch,{eng8}", "--batch-sizes",
                              "1", "--reps", "3", "--limit", "4", "--no-train", "--out",
                              str(out)])
    assert res.exit_code == 2, res.output
    rows = json.loads((out / "bench.json").read_text())
    row = next(r for r in rows if r["engine"] == eng8 and r["precision"] == "int8")
    assert row["status"].startswith("failed: ") and "model.int8.onnx" in row["status"]
    assert next(r for r in rows if r["engine"] == eng8 and r["precision"] == "fp32"
                )["status"] == "ok"


def _fake_timer(ms: dict[str, float], calls: list[str]):
    """Stands in for auto.measure: the given milliseconds per engine, each call recorded."""
    def fake(engines, x, **_):
        calls.extend(f"{e.name} {e.precision}" for e in engines.values())
        return {k: ms[f"{e.name} {e.precision}"] for k, e in engines.items()}
    return fake


def test_auto_picks_the_fastest_measured_and_caches_it(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))
    ms = {"torch fp32": 20.0, "onnxruntime fp32": 15.0, "onnxruntime fp16": 30.0,
          "onnxruntime int8": 9.0, "openvino fp32": 12.0, "openvino bf16": 6.0,
          "openvino int8": 4.0, "torch bf16": 18.0}
    calls: list[str] = []
    monkeypatch.setattr(auto_mod, "measure", _fake_timer(ms, calls))
    if _ov_int8_varies(trained):
        eng = load_engine("auto", trained, precision="int8")  # never the one that varies
        assert (eng.name, eng.precision) == ("onnxruntime", "int8")
        assert any(s.startswith("openvino int8: answers vary") for s in eng.skipped)
        # auto's ranking is the subject below: a copy whose report says it is reproducible
        trained = _copy(trained, tmp_path / "same")
        rep = _report(trained)
        rep["accuracy_gate"]["candidates"]["openvino/int8"].update(reproducible=True,
                                                                    passed=True)
        (trained / "export" / "report.json").write_text(json.dumps(rep))
        calls.clear()
    eng = load_engine("auto", trained)
    assert (eng.name, eng.precision) == ("openvino", "int8")
    assert "auto chose openvino int8" in eng.auto_choice and "4.00 ms" in eng.auto_choice
    assert "measured now" in eng.auto_choice and "torch fp32 20.00 ms" in eng.auto_choice
    assert "several times" not in " ".join(eng.skipped)
    measured = set(calls)
    assert {"torch fp32", "onnxruntime int8", "openvino fp32", "openvino int8"} <= measured
    calls.clear()
    eng = load_engine("auto", trained)  # cached: nothing is timed again
    assert (eng.name, eng.precision) == ("openvino", "int8") and not calls
    assert "cached from" in eng.auto_choice
    # a faster candidate that missed its accuracy gate is never chosen
    run = _copy(trained, tmp_path / "run")
    rep = _report(run)
    rep["accuracy_gate"]["candidates"]["openvino/int8"]["passed"] = False
    (run / "export" / "report.json").write_text(json.dumps(rep))
    eng = load_engine("auto", run)
    assert (eng.name, eng.precision) != ("openvino", "int8")
    assert any(s.startswith("openvino int8:") for s in eng.skipped)
    assert (eng.name, eng.precision) == (("openvino", "bf16") if BF16 else ("onnxruntime", "int8"))
    # precision filter, and a model file that changed invalidates the cache
    assert load_engine("auto", run, precision="fp32").name == "openvino"
    calls.clear()
    ms["openvino fp32"] = 50.0
    (run / "export" / "model.onnx").touch()
    assert load_engine("auto", run, precision="fp32").name == "onnxruntime" and calls


def test_auto_without_export_measures_nothing_it_cannot_run(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))
    calls: list[str] = []
    monkeypatch.setattr(auto_mod, "measure", _fake_timer({}, calls))
    eng = load_engine("auto", tiny_run(width=2, depth=2))  # never exported: torch only
    assert eng.name == "torch" and not calls and "only candidate" in eng.auto_choice
    assert any("lkmseg export RUN" in s for s in eng.skipped)
