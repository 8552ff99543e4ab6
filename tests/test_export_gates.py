"""The parity gate, alone, catches a damaged export — even for a model that predicts nothing.

A broken exporter is simulated by damaging one weight of the file export writes; nothing else
in the pipeline can notice, so only the gate stands between it and a user.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.export import parity, pipeline
from lkmseg.files.run_folder import read_weights
from lkmseg.fsutil import write_bytes

runner = CliRunner()


def damage_first_conv(model: onnx.ModelProto) -> str:
    """Flip the sign of the first convolution's weights; returns the initializer's name."""
    inits = {t.name: t for t in model.graph.initializer}
    first = next(n for n in model.graph.node if n.op_type == "Conv")
    name = first.input[1]
    while name not in inits:  # fp16 graphs may feed the weight through a Cast/Identity
        name = next(n.input[0] for n in model.graph.node if name in n.output)
    init = inits[name]
    arr = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array((-arr).astype(arr.dtype), init.name))
    return init.name


def _damaging_save(which: str, monkeypatch) -> list[str]:
    """Make export write ``which`` (model.onnx / model.fp16.onnx) with one damaged weight."""
    damaged: list[str] = []
    real_save = pipeline.save_onnx

    def save(model, path):
        if path.name == which:
            model = onnx.ModelProto.FromString(model.SerializeToString())
            damaged.append(damage_first_conv(model))
        return real_save(model, path)

    monkeypatch.setattr(pipeline, "save_onnx", save)
    return damaged


def _predicts_nothing(run) -> None:
    """Set the head's bias so low that every pixel is background."""
    from safetensors.torch import save

    sd = read_weights(run / "model.safetensors")
    sd["head.bias"] = torch.full_like(sd["head.bias"], -60.0)
    write_bytes(run / "model.safetensors", save(sd))


@pytest.mark.parametrize("which, key", [("model.onnx", "onnx_fp32"),
                                        ("model.fp16.onnx", "onnx_fp16")])
def test_damaged_weight_fails_the_gate_exit_3(tiny_run, monkeypatch, which, key):
    run = tiny_run(block="1x5", width=4, depth=3, size=(64, 96))
    damaged = _damaging_save(which, monkeypatch)
    res = runner.invoke(app, ["export", str(run), "--parity-images", "4"])
    assert damaged, "the damaging save was not used"
    assert res.exit_code == 3, res.output
    assert res.output.strip().splitlines()[-1].startswith(f"error: parity failed for {which}")
    rep = json.loads((run / "export" / "report.json").read_text())
    assert rep["formats"][key]["passed"] is False
    other = "onnx_fp16" if key == "onnx_fp32" else "onnx_fp32"
    assert rep["formats"][other]["passed"] is True  # only the damaged file fails
    assert (run / "export" / which).is_file()  # kept for inspection


def test_model_that_predicts_nothing_cannot_pass_vacuously(tiny_run, monkeypatch):
    """Reference masks are all empty: the gate checks the logits relative to their spread, so a
    damaged fp16 export (which has no absolute logit bar) still fails; a correct one passes."""
    run = tiny_run(block="1x5", width=4, depth=3, size=(64, 96))
    _predicts_nothing(run)
    res = runner.invoke(app, ["export", str(run), "--parity-images", "4"])
    assert res.exit_code == 0, res.output
    rep = json.loads((run / "export" / "report.json").read_text())
    for key in ("onnx_fp32", "onnx_fp16"):
        f = rep["formats"][key]
        assert f["mask_basis"].startswith("median logit (reference masks empty")
        assert f["passed"] and f["rel_logit_diff"] < parity.REL_LOGIT
    assert rep["formats"]["onnx_fp32"]["mask_dice_vs_torch"] > 0.999
    damaged = _damaging_save("model.fp16.onnx", monkeypatch)
    res = runner.invoke(app, ["export", str(run), "--parity-images", "4"])
    assert damaged and res.exit_code == 3, res.output
    f16 = json.loads((run / "export" / "report.json").read_text())["formats"]["onnx_fp16"]
    assert f16["passed"] is False and f16["rel_logit_diff"] > parity.REL_LOGIT
    assert "reference logit spread (masks are empty or full)" in f16["failures"][0]


def test_mask_cut_uses_threshold_unless_degenerate():
    logits = np.linspace(-3, 3, 1000).reshape(1, 1, 10, 100)
    assert parity.mask_cut(logits, 0.5) == (0.0, "threshold")
    cut, basis = parity.mask_cut(logits - 100, 0.5)
    assert basis.startswith("median logit (reference masks empty") and cut == pytest.approx(-100)
    cut, basis = parity.mask_cut(logits + 100, 0.5)
    assert "full" in basis and cut == pytest.approx(100)
