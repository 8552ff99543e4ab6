"""The accuracy gate runs on the run's own validation images or not at all: training records
them as absolute paths; when they moved, export exits 2 naming them and ``--gate-data DIR``
(and writes nothing) instead of quietly gating on samples/ or synthetic shapes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import write_pairs
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.config import RunConfig
from lkmseg.data.datasets import find_items
from lkmseg.errors import UserError
from lkmseg.export import accuracy_gate as ag
from lkmseg.fsutil import write_json

runner = CliRunner()
QUICK = ["--no-fp16", "--no-int8", "--parity-images", "2", "--gate-images", "4"]


def test_training_records_absolute_validation_paths(tmp_path, monkeypatch):
    from lkmseg.data.prepare import prepare_run

    write_pairs(tmp_path / "data", groups=4, views=2)
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    cfg = RunConfig(size=(32, 48))
    prepare_run(cfg, Path("data"))  # `lkmseg train --data data`
    monkeypatch.chdir(tmp_path / "cache")  # export starts elsewhere
    assert Path(cfg.data["source"]) == (tmp_path / "data").resolve()
    assert cfg.data["val_items"] and all(Path(p).is_absolute() and Path(p).is_file()
                                         for pair in cfg.data["val_items"] for p in pair)
    assert ag.held_out_items(cfg) == cfg.data["val_items"]


def _run_trained_on(tiny_run, data: Path) -> Path:
    """A run whose config.json records ``data``'s last two cars as its validation split."""
    run = tiny_run(width=2, depth=2)
    _, items = find_items(data)
    val_groups = sorted({it.group for it in items})[-2:]
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"] = {"source": str(data), "layout": "carvana", "val_groups": val_groups,
                   "train_groups": sorted({it.group for it in items} - set(val_groups)),
                   "val_items": [[str(it.image), str(it.mask)] for it in items
                                 if it.group in val_groups]}
    write_json(run / "config.json", cfg)
    return run


def test_moved_validation_images_stop_the_export(tiny_run, tmp_path):
    data = write_pairs(tmp_path / "data", groups=4, views=2)
    run = _run_trained_on(tiny_run, data)
    moved = tmp_path / "elsewhere"
    shutil.move(data, moved)
    res = runner.invoke(app, ["export", str(run), *QUICK])
    assert res.exit_code == 2, res.output
    (line,) = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert "of the run's validation files are not where training read them" in line
    assert str(data / "train") in line and "--gate-data DIR" in line
    assert not (run / "export").exists()  # nothing written
    res = runner.invoke(app, ["export", str(run), *QUICK, "--gate-data", str(moved)])
    assert res.exit_code == 0, res.output
    rep = json.loads((run / "export" / "report.json").read_text())
    val = json.loads((run / "config.json").read_text())["data"]["val_groups"]
    assert rep["inputs"]["origin"] == "val_items"  # parity on the held-out cars too
    assert {n.split("_")[0] for n in rep["inputs"]["names"]} <= set(val)
    assert rep["accuracy_gate"]["origin"] == "val_items (4 images, held-out groups)"
    assert rep["accuracy_gate"]["metric"].startswith("mean per-image Dice vs ground truth")


def test_gate_data_without_the_runs_groups_uses_all_its_images(tmp_path):
    other = write_pairs(tmp_path / "other", groups=2, views=2, seed=5)
    cfg = RunConfig(data={"val_groups": ["0000000000ff"], "val_items": [["/gone.jpg", "/g.gif"]]})
    pairs = ag.held_out_items(cfg, other)
    assert len(pairs) == 4 and all(Path(p).is_file() for pair in pairs for p in pair)
    with pytest.raises(UserError, match="--gate-data .*nope: not a folder"):
        ag.held_out_items(cfg, tmp_path / "nope")


def test_unreadable_validation_image_is_named(tmp_path):
    data = write_pairs(tmp_path / "data", groups=2, views=1)
    _, items = find_items(data)
    items[0].image.write_bytes(b"not a jpeg")
    cfg = RunConfig(size=(32, 48), data={"val_items": [[str(it.image), str(it.mask)]
                                                       for it in items]})
    with pytest.raises(UserError, match=rf"accuracy gate: {items[0].image}.*--gate-data DIR"):
        ag.gate_set(cfg, (32, 48), limit=4)


def test_synthetic_runs_rebuild_their_validation_images(tmp_path, monkeypatch):
    """The embedded synthetic set is generated deterministically: a run trained on it is gated
    on its held-out groups even after the cache was cleared."""
    import lkmseg.data.synth as synth

    fresh = write_pairs(tmp_path / "regenerated", groups=3, views=2)
    monkeypatch.setattr(synth, "default_dataset", lambda **_kw: fresh)
    _, items = find_items(fresh)
    cfg = RunConfig(data={"layout": "synthetic", "val_groups": [items[-1].group],
                          "val_items": [["/old/cache/a.jpg", "/old/cache/a_mask.gif"]]})
    pairs = ag.held_out_items(cfg)
    assert pairs == [[str(it.image), str(it.mask)] for it in items if it.group == items[-1].group]
    assert ag.held_out_items(RunConfig(data={"layout": "synthetic"})) is None  # none recorded
