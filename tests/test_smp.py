"""segmentation_models_pytorch architectures through surgery, train, export, bench, predict.

Needs the ``smp`` extra and a torchvision built for this torch; skipped (with the reason)
where they do not import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import SAMPLES, write_pairs
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.models.arch import smp_available

WHY = smp_available()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"smp unavailable: {WHY}")


def _smp(arch="Unet", encoder="resnet18"):
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    return smp.create_model(arch, encoder_name=encoder, encoder_weights=None, classes=1).eval()


@pytest.mark.parametrize("where", ["decoder", "encoder", "all"])
def test_separable_on_an_smp_unet(where):
    from lkmseg.models import separable
    from lkmseg.models.surgery import SeparableConv2d, square_convs

    m = _smp()
    x = torch.rand(1, 3, 64, 96)
    want = m(x).shape
    before = {n for n, _ in square_convs(m)}
    m, rep = separable(m, "1x5", where=where, example=x)
    changed = {c.layer for c in rep.changes if c.replaced}
    part = {n for n in before if where == "all" or n.startswith(where + ".")}
    assert changed == part and rep.replaced == len(part)
    if where == "decoder":
        assert len(part) == 10  # two 3x3 per decoder block
    assert {n for n, _ in square_convs(m)} == before - part
    assert all(isinstance(m.get_submodule(n), SeparableConv2d) for n in changed)
    assert m(x).shape == want
    assert rep.flops_before and rep.flops_after


def test_depthwise_mobilenet_keeps_depthwise_pairs():
    from lkmseg.models import separable

    m = _smp("FPN", "mobilenet_v2")
    dw = [n for n, c in m.named_modules() if isinstance(c, torch.nn.Conv2d) and c.groups > 1]
    x = torch.rand(1, 3, 64, 64)
    want = m(x)
    m, rep = separable(m, "1xK", where="encoder", init="svd", example=x)
    assert len(dw) == 17
    for n in dw:  # each depthwise 3x3 became a depthwise 1x3 then 3x1
        pair = m.get_submodule(n)
        assert [(c.kernel_size, c.groups) for c in pair] == \
            [((1, 3), pair[0].in_channels), ((3, 1), pair[0].in_channels)]
    assert m(x).shape == want.shape
    assert all(0 < e <= 1 + 1e-9 for e in rep.energies)


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))
    return write_pairs(tmp_path / "data", "carvana", groups=3, views=4, size=(48, 64))


TINY = ["--size", "64", "--batch-size", "2", "--amp", "off", "--channels-last", "off",
        "--val-frac", "0.34"]


def test_smp_unet_1x5_trains_exports_benches_predicts(data, tmp_path):
    from lkmseg.config import load_config
    from lkmseg.files.run_folder import load_run

    runner = CliRunner()
    r = runner.invoke(app, ["train", "--arch", "smp:Unet:resnet18", "--block", "1x5",
                            "--where", "decoder", "--data", str(data), *TINY, "--steps", "2",
                            "--out", str(tmp_path / "runs"), "--name", "s"])
    assert r.exit_code == 0, r.output
    run = tmp_path / "runs" / "s"
    m = load_config(run).model
    assert (m.arch, m.block, m.where) == ("smp:Unet:resnet18", "1x5", "decoder")
    model, _ = load_run(run)  # config.json rebuilds it exactly (load_weights is strict)
    assert model(torch.rand(1, 3, 50, 70)).shape == (1, 1, 50, 70)  # any size: padded
    r = runner.invoke(app, ["export", str(run), "--parity-images", "2", "--calib-images", "2",
                            "--gate-images", "4"])
    assert r.exit_code == 0, r.output
    rep = json.loads((run / "export" / "report.json").read_text())
    assert rep["passed"] and (run / "export" / "model.int8.onnx").is_file()
    r = runner.invoke(app, ["bench", str(run), "--engines", "torch,onnxruntime",
                            "--batch-sizes", "1", "--reps", "3", "--no-train", "--limit", "2",
                            "--out", str(tmp_path / "bench")])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "bench" / "bench.json").read_text())
    ok = [row for row in rows if row["status"] == "ok"]
    assert {row["engine"] for row in ok} >= {"torch", "onnxruntime"}
    img = next((SAMPLES / "images").iterdir())
    for engine, model_path in [("torch", run), ("onnxruntime", run / "export")]:
        out = tmp_path / f"pred-{engine}"
        r = runner.invoke(app, ["predict", str(model_path), str(img), "-o", str(out),
                                "--engine", engine])
        assert r.exit_code == 0, (engine, r.output)
        assert list(out.rglob("*.png")), engine


def test_encoder_weights_offline_is_one_clear_line(data, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    r = subprocess.run([sys.executable, "-m", "lkmseg", "train", "--arch", "smp:Unet:resnet18",
                        "--encoder-weights", "imagenet", "--data", str(data), *TINY,
                        "--steps", "1", "--out", str(tmp_path / "runs")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in r.stderr
    assert "smp-hub/resnet18.imagenet" in err[0] and str(tmp_path / "hf" / "hub") in err[0]
    assert "--encoder-weights none" in err[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("arch,needle", [("smp:Unett:resnet18", "unknown smp architecture"),
                                         ("smp:Unet:resnet19", "unknown smp encoder"),
                                         ("smp-Unet", "unknown arch")])
def test_bad_arch_lists_choices(data, tmp_path, arch, needle):
    r = CliRunner().invoke(app, ["train", "--arch", arch, "--data", str(data), *TINY,
                                 "--steps", "1", "--out", str(tmp_path / "runs")])
    assert r.exit_code == 2 and needle in r.output and "choose" in r.output, r.output


def test_convert_an_smp_run_by_svd(data, tmp_path):
    from lkmseg.config import load_config
    from lkmseg.files.run_folder import load_run

    runner = CliRunner()
    r = runner.invoke(app, ["train", "--arch", "smp:Unet:resnet18", "--data", str(data), *TINY,
                            "--steps", "1", "--out", str(tmp_path / "runs"), "--name", "sq"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "conv"
    r = runner.invoke(app, ["convert", str(tmp_path / "runs" / "sq"), "--where", "decoder",
                            "--out", str(out), "--bn-images", "4", "--no-full-res"])
    assert r.exit_code == 0, r.output
    m = load_config(out).model
    assert (m.arch, m.block, m.where, m.base) == ("smp:Unet:resnet18", "1xK", "decoder", None)
    rep = json.loads((out / "convert.json").read_text())
    assert len(rep["layers"]) == 10 and all(0 < row["energy_kept"] <= 1 for row in rep["layers"])
    model, _ = load_run(out)
    assert model(torch.rand(1, 3, 40, 40)).shape == (1, 1, 40, 40)
