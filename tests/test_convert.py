"""`lkmseg convert`: a trained square run -> a separable run folder (SVD, BN, fine-tune)."""

from __future__ import annotations

import copy
import csv
import json

import pytest
import torch
from conftest import SAMPLES, make_run
from safetensors.torch import load_file
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.config import load_config
from lkmseg.errors import UserError
from lkmseg.files.run_folder import load_run
from lkmseg.fsutil import write_json
from lkmseg.models import build_model, separable
from lkmseg.train.convert import ConvertOptions, target_config, transfer


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))


def _square_run(path, width=4, depth=3, separable_kernels=False):
    """A tiny 5x5 run (random, BN-calibrated) that trains fast: fp32, contiguous."""
    run = make_run(path, block="5x5", width=width, depth=depth, size=(32, 48))
    cfg = json.loads((run / "config.json").read_text())
    cfg["train"].update(amp="off", channels_last="off", batch_size=2)
    write_json(run / "config.json", cfg)
    if separable_kernels:  # W[o,i,y,x] = c[o,i] v[o,y] h[i,x]: exactly a 1x5 then 5x1 pair
        model, _ = load_run(run)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (5, 5):
                    o, i = m.weight.shape[:2]
                    c, v, h = (torch.randn(o, i, generator=g), torch.rand(o, 5, generator=g),
                               torch.rand(i, 5, generator=g))
                    m.weight.copy_(c[:, :, None, None] * v[:, None, :, None] * h[None, :, None])
        from lkmseg.files.run_folder import save_weights
        save_weights(run / "model.safetensors", model)
    return run


def test_conversion_is_exact_for_separable_kernels_in_lkmseg_block_layout(tmp_path):
    src, cfg = load_run(_square_run(tmp_path / "sq", separable_kernels=True))
    surgered, report = separable(copy.deepcopy(src), "1xK", init="svd", flops=False)
    new_cfg = target_config(cfg, ConvertOptions(block="1xK"), surgered)
    # the seed U-Net's own 1x5 block: config.json says block 1x5 and nothing more
    assert (new_cfg.model.block, new_cfg.model.base, new_cfg.model.rank) == ("1x5", None, None)
    model = transfer(surgered, build_model(new_cfg.model)).eval()
    x = torch.rand(2, 3, 32, 48)
    torch.testing.assert_close(model(x), src(x), atol=1e-5, rtol=1e-4)
    assert len(report.energies) == 7 and min(report.energies) > 1 - 1e-6


def test_cli_convert_writes_a_run_folder(tmp_path):
    run = _square_run(tmp_path / "sq")
    out = tmp_path / "conv"
    r = CliRunner().invoke(app, ["convert", str(run), "--out", str(out), "--bn-images", "2"])
    assert r.exit_code == 0, r.output
    assert "energy kept median" in r.output and "up.2.0" in r.output  # the per-layer table
    rep = json.loads((out / "convert.json").read_text())
    assert [row["layer"] for row in rep["layers"]] == \
        ["down.0.0", "down.1.0", "down.2.0", "center.0", "up.0.0", "up.1.0", "up.2.0"]
    assert all(0 < row["energy_kept"] < 1 for row in rep["layers"])
    assert set(rep["dice"]) == {"source", "converted_as_is", "converted"}
    assert {"dice", "dice_full_res"} <= set(rep["dice"]["converted"])
    assert rep["bn_images"] == 2 and rep["params"]["converted"] < rep["params"]["source"]
    cfg = load_config(out)
    assert (cfg.model.block, cfg.model.base) == ("1x5", None)
    model, _ = load_run(out)  # config.json rebuilds it; the weights are the converted ones
    saved = load_file(out / "converted.safetensors")
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "converted" and summary["block"] == "1x5"
    assert summary["best_val_dice"] == pytest.approx(rep["dice"]["converted"]["dice"])
    vals = list(csv.DictReader(open(out / "val_log.csv")))
    assert [int(v["step"]) for v in vals] == [0]
    img = next((SAMPLES / "images").iterdir())
    r = CliRunner().invoke(app, ["predict", str(out), str(img), "-o", str(tmp_path / "pred"),
                                 "--engine", "torch"])
    assert r.exit_code == 0, r.output
    assert list((tmp_path / "pred").rglob("*.png"))


def test_cli_convert_with_rank_where_and_fine_tuning_then_export(tmp_path):
    from lkmseg.export.pipeline import ExportOptions, export_run

    run = _square_run(tmp_path / "sq", width=2, depth=2)
    out = tmp_path / "ft"
    r = CliRunner().invoke(app, ["convert", str(run), "--block", "1x5", "--rank", "0.5",
                                 "--where", "decoder", "--fine-tune", "2s", "--out", str(out),
                                 "--bn-images", "2", "--no-full-res"])
    assert r.exit_code == 0, r.output
    cfg = load_config(out)
    m = cfg.model
    assert (m.block, m.base, m.where, m.rank) == ("1x5", "5x5", "decoder", 0.5)
    assert cfg.train.lr == 3e-4 and cfg.train.time_budget_s == 2.0
    assert cfg.train.init == str((out / "converted.safetensors").resolve())
    rep = json.loads((out / "convert.json").read_text())
    assert [row["layer"] for row in rep["layers"]] == ["up.0.0", "up.1.0"]  # the decoder
    assert set(rep["dice"]) == {"source", "converted_as_is", "converted", "fine_tuned"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] >= 1 and summary["converted_from"] == str(run)
    model, _ = load_run(out)
    halves = [c.out_channels for n, c in model.named_modules()
              if n.startswith("up.") and isinstance(c, torch.nn.Conv2d) and c.kernel_size == (1, 5)]
    assert halves == [2, 1]  # rank 0.5 of 4 and 2 out channels
    res = export_run(out, ExportOptions(fp16=False, trt=False), strict=False)
    assert not res.problems, res.problems


def test_train_init_starts_from_given_weights(tmp_path):
    from lkmseg.config import RunConfig, TrainConfig
    from lkmseg.models import ModelConfig
    from lkmseg.train.loop import train_run

    run = _square_run(tmp_path / "sq")
    base = load_config(run)
    cfg = RunConfig(model=base.model, size=base.size,
                    train=TrainConfig(steps=1, lr=0.0, batch_size=2, amp="off",
                                      channels_last="off", init=str(run), full_res_eval=False))
    out, _ = train_run(cfg, SAMPLES, tmp_path / "runs", name="init")
    a, b = load_file(run / "model.safetensors"), load_file(out / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a if k.endswith("weight"))
    cfg.model = ModelConfig(block="1x5", width=4, depth=3)
    with pytest.raises(UserError, match="--init .* another model"):
        train_run(cfg, SAMPLES, tmp_path / "runs", name="bad")


def test_cli_convert_bad_inputs(tmp_path, tiny_run):
    runner = CliRunner()
    square = _square_run(tmp_path / "sq", width=2, depth=2)
    cases = [([str(tiny_run(block="1x5"))], "selects no square"),
             ([str(square), "--rank", "half"], "--rank 'half'"),
             ([str(square), "--block", "x5"], "unknown block 'x5'"),
             ([str(square), "--where", "decoder", "--block", "1x5", "--out", str(square)],
              "not empty"),
             ([str(tmp_path / "nowhere")], "nowhere")]
    for args, needle in cases:
        r = runner.invoke(app, ["convert", *args, "--bn-images", "2", "--no-full-res"])
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output and "Traceback" not in r.output, (args, r.output)
    conv = tmp_path / "conv"
    r = runner.invoke(app, ["convert", str(square), "--where", "decoder", "--out", str(conv),
                            "--bn-images", "2", "--no-full-res"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["convert", str(conv), "--bn-images", "2"])
    assert r.exit_code == 2 and "itself made by surgery" in r.output, r.output
