"""The accuracy gate's reproducibility check: a runtime whose answers change from one load of
the same file to the next (seen: OpenVINO INT8 1x5/1x7 convolutions on an AMX CPU) is reported,
never used by auto, serve or bench, and does not decide whether the INT8 file ships."""

from __future__ import annotations

import numpy as np
import pytest

from lkmseg.engines import auto as auto_mod
from lkmseg.engines.source import ModelSource
from lkmseg.export import accuracy_gate as ag
from lkmseg.files.export_report import gate_verdict

H, W = 16, 20


class FakeEngine:
    """Logits: a disc (the "car"), plus a load-dependent blob when ``vary``."""

    name, precision, device = "fake", "int8", "cpu"

    def __init__(self, load: int = 0, vary: bool = False, batch_blob: bool = False) -> None:
        self.load, self.vary, self.batch_blob = load, vary, batch_blob

    def describe(self) -> str:
        return f"fake (load {self.load})"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        yy, xx = np.mgrid[:H, :W]
        disc = 4.0 - np.hypot(yy - H / 2, xx - W / 2)
        out = np.repeat(disc[None, None].astype(np.float32), len(x), axis=0)
        if (self.vary and self.load == 1) or (self.batch_blob and len(x) > 1):
            out[:, :, :5, :5] = 6.0  # a wrong corner: what a miscompiled kernel did
        return out


def _gate_set(n: int = 8) -> ag.GateSet:
    yy, xx = np.mgrid[:H, :W]
    gt = (np.hypot(yy - H / 2, xx - W / 2) < 4).astype(np.uint8)
    gs = ag.GateSet(np.zeros((n, 3, H, W), np.float32), [(H, W)] * n,
                    [ag._pack(gt)] * n, "test", 0.5)
    ag.set_reference(gs, FakeEngine())
    assert gs.ref_dice == pytest.approx(1.0)
    return gs


def test_same_answers_from_two_loads_pass():
    fig = ag.evaluate(FakeEngine(0), _gate_set(), 0.005, second=FakeEngine(1))
    assert fig["passed"] and fig["reproducible"] and fig["repro_min_mask_dice"] == 1.0
    assert fig["repro_mask_dice"] == 1.0
    assert fig["dice_by_batch"] == {"1": 1.0, str(ag.BATCHED): 1.0}
    assert "second load" in fig["repro_check"] and "reason" not in fig


@pytest.mark.parametrize("kind", ["second_load", "batch"])
def test_answers_that_depend_on_the_load_or_batch_fail(kind):
    first = FakeEngine(0, batch_blob=kind == "batch")
    second = FakeEngine(1, vary=kind == "second_load", batch_blob=kind == "batch")
    fig = ag.evaluate(first, _gate_set(), 0.5, second=second)  # accuracy alone would pass
    assert fig["delta"] > -0.5 and not fig["reproducible"] and not fig["passed"]
    assert fig["repro_mask_dice"] < ag.REPRODUCIBLE
    assert fig["repro_min_mask_dice"] <= fig["repro_mask_dice"]
    assert fig["dice_by_batch"]["1"] == 1.0 and fig["dice_by_batch"]["4"] < 1.0
    assert "vary between loads" in fig["reason"] and "auto" in fig["reason"]


def test_one_pixel_of_a_small_mask_does_not_fail_it():
    """Pooled over the images: a single flipped pixel of one image is not "varies"."""
    class OnePixel(FakeEngine):
        calls = 0

        def __call__(self, x):
            out = super().__call__(x)
            self.calls += 1
            if self.calls == 1:  # one pixel of the first image only
                out[0, 0, 0, 0] = 6.0
            return out

    gs = _gate_set(40)
    fig = ag.evaluate(FakeEngine(0), gs, 0.005, second=OnePixel(1))
    assert fig["reproducible"] and fig["repro_min_mask_dice"] < ag.REPRODUCIBLE


def _report(reproducible: bool) -> dict:
    entry = {"dice": 0.98, "delta": -0.0002, "passed": reproducible,
             "reproducible": reproducible, "repro_min_mask_dice": 1.0 if reproducible else 0.87}
    if not reproducible:
        entry["reason"] = ag.not_reproducible(0.87)
    return {"accuracy_gate": {"tolerance": 0.005, "candidates": {
        "openvino/int8": entry,
        "onnxruntime/int8": {"dice": 0.98, "delta": -0.0002, "passed": True,
                             "reproducible": True}}}}


def test_verdict_and_auto_skip_a_runtime_that_varies(tmp_path, monkeypatch):
    ok, why = gate_verdict(_report(False), "openvino", "int8")
    assert not ok and "vary between loads" in why and "0.8700" in why
    assert gate_verdict(_report(False), "onnxruntime", "int8")[0]
    assert gate_verdict(_report(True), "openvino", "int8")[0]
    # auto's candidate filter reads the same verdict
    ex = tmp_path / "export"
    ex.mkdir()
    for f in ("model.onnx", "model.int8.onnx"):
        (ex / f).write_bytes(b"x")
    src = ModelSource(path=tmp_path, kind="run", config=None, onnx={"fp32": ex / "model.onnx",
                                                       "int8": ex / "model.int8.onnx"})
    monkeypatch.setattr(auto_mod, "read_report", lambda folder: _report(False))
    cands = [("openvino", "int8", "cpu"), ("onnxruntime", "int8", "cpu"),
             ("openvino", "fp32", "cpu")]
    keep, notes = auto_mod.gated(src, cands)
    assert keep == [("onnxruntime", "int8", "cpu"), ("openvino", "fp32", "cpu")]
    assert len(notes) == 1 and notes[0].startswith("openvino int8: answers vary")
    # any precision: an fp32 runtime whose answers vary is dropped too (the reference
    # torch fp32 is never a gate candidate)
    rep = _report(True)
    rep["accuracy_gate"]["candidates"]["openvino/fp32"] = {
        "dice": 0.98, "delta": 0.0, "passed": False, "reproducible": False,
        "reason": ag.not_reproducible(0.9)}
    monkeypatch.setattr(auto_mod, "read_report", lambda folder: rep)
    assert not gate_verdict(rep, "openvino", "fp32")[0]
    keep, notes = auto_mod.gated(src, cands + [("torch", None, "cpu")])
    assert ("openvino", "fp32", "cpu") not in keep and ("torch", None, "cpu") in keep
    assert notes == [f"openvino fp32: {ag.not_reproducible(0.9)}"]
