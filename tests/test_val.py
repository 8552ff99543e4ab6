"""`lkmseg val` / `lkmseg.val`: Dice and IoU per image and overall against hand-computed
figures; CSV + JSON; --split val; bad input exits 2."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import make_run, write_pairs
from typer.testing import CliRunner

import lkmseg
from lkmseg.cli.app import app
from lkmseg.data.datasets import find_items
from lkmseg.data.imageio import read_image, read_mask
from lkmseg.metrics import iou

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("val")
    data = write_pairs(root / "data", "folders", groups=3, views=2, size=(40, 60))
    run = make_run(root / "run", size=(32, 48))
    return run, data


def _expected(run, data):
    model = lkmseg.load(run, engine="torch")
    _, items = find_items(data)
    out = []
    for it in items:
        pred = model.predict(read_image(it.image))[0].mask.astype(bool)
        gt = read_mask(it.mask).astype(bool)
        inter, s = int((pred & gt).sum()), int(pred.sum() + gt.sum())
        out.append((it.image.name, 2 * inter / s if s else 1.0,
                    inter / int((pred | gt).sum()) if s else 1.0, inter, s))
    return out


def test_val_api_figures(setup, tmp_path):
    run, data = setup
    want = _expected(run, data)
    rep = lkmseg.val(run, data, engine="torch", out=tmp_path)
    assert [r["image"].split("/")[-1] for r in rep.rows] == [w[0] for w in want]
    for r, (_, d, j, _, _) in zip(rep.rows, want):
        assert r["dice"] == pytest.approx(d) and r["iou"] == pytest.approx(j)
        assert (r["height"], r["width"]) == (40, 60)
    assert rep.dice == pytest.approx(np.mean([w[1] for w in want]))
    assert rep.iou == pytest.approx(np.mean([w[2] for w in want]))
    inter, tot = sum(w[3] for w in want), sum(w[4] for w in want)
    s = rep.summary()
    assert s["dice_pooled"] == pytest.approx(2 * inter / tot)
    assert s["iou_pooled"] == pytest.approx(inter / (tot - inter))
    assert 0 < rep.dice < 1  # the random model is neither right nor empty: a real check
    doc = json.loads((tmp_path / "val_torch_fp32.json").read_text())
    assert doc["images"] == 6 and doc["dice"] == pytest.approx(rep.dice)
    rows = list(csv.DictReader(open(tmp_path / "val_torch_fp32.csv")))
    assert len(rows) == 6 + 2 and rows[-2]["image"] == "overall (mean)"
    assert float(rows[0]["dice"]) == pytest.approx(want[0][1])


def test_iou_convention():
    a = np.zeros((4, 4), np.uint8)
    assert iou(a, a) == 1.0
    b = a.copy()
    b[0, :2] = 1
    c = a.copy()
    c[0, 1:3] = 1
    assert iou(b, c) == pytest.approx(1 / 3)


def test_val_cli_table_and_split(setup, tmp_path):
    run, data = setup
    res = runner.invoke(app, ["val", str(run), "--data", str(data), "--engine", "torch",
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "Dice" in res.output and "mean of 6 images" in res.output
    assert (tmp_path / "val_torch_fp32.csv").is_file()
    res = runner.invoke(app, ["val", str(run), "--data", str(data), "--split", "val",
                              "--engine", "torch", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no validation groups" in res.output  # made without a split


@pytest.mark.parametrize("args, why", [
    (["--data", "nowhere"], "not found"),
    (["--data", "{run}"], "no dataset found"),
    (["--data", "{data}", "--split", "train"], "--split train"),
])
def test_val_bad_input_exit_2(setup, args, why):
    run, data = setup
    args = [a.format(run=run, data=data) for a in args]
    res = runner.invoke(app, ["val", str(run), *args, "--engine", "torch"])
    assert res.exit_code == 2, res.output
    assert why in res.output


def test_split_val_keeps_the_held_out_groups(setup, tmp_path):
    import shutil

    run, data = setup
    mine = tmp_path / "run"
    shutil.copytree(run, mine)
    cfg = json.loads((mine / "config.json").read_text())
    cfg["data"]["val_groups"] = ["000000000002_01", "000000000002_02"]  # folders: group = stem
    (mine / "config.json").write_text(json.dumps(cfg))
    rep = lkmseg.val(mine, data, engine="torch", split="val")
    assert [r["image"].split("/")[-1] for r in rep.rows] == ["000000000002_01.jpg",
                                                              "000000000002_02.jpg"]
