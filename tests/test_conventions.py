"""Conventions: `lkmseg --version`, `train --config FILE` (TOML or a run's config.json) with
command-line overrides, LICENSE / CITATION.cff / py.typed shipped, `import lkmseg` light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, write_pairs
from typer.testing import CliRunner

import lkmseg
from lkmseg.cli.app import app

runner = CliRunner()


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"lkmseg {lkmseg.__version__}"


def test_import_is_light_and_api_names_resolve():
    code = ("import sys, lkmseg; assert 'torch' not in sys.modules; "
            "assert callable(lkmseg.train) and callable(lkmseg.export) and "
            "callable(lkmseg.bench); import lkmseg.train.loop as loop; "
            "assert lkmseg.train.loop is loop and callable(lkmseg.train); "
            "print(sorted(n for n in lkmseg.__all__ if not n.startswith('_')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "'load'" in out.stdout and "'val'" in out.stdout


def test_files_shipped():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    cff = (ROOT / "CITATION.cff").read_text()
    assert "cff-version:" in cff and "Large Kernel Matters" in cff
    assert (ROOT / "lkmseg" / "py.typed").is_file()  # in the wheel: tests/test_package.py


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))
    return write_pairs(tmp_path / "data", "carvana", groups=3, views=4, size=(48, 64))


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def test_train_config_toml_then_run_config_with_overrides(data, tmp_path):
    toml = tmp_path / "train.toml"
    toml.write_text(f'block = "5x5"\nsize = [32, 48]\nwidth = 4\ndepth = 3\nsteps = 50\n'
                    f'data = "{data}"\n\n[train]\nbatch-size = 4\nlr = 0.002\n'
                    'channels-last = "off"\namp = "off"\nval-frac = 0.34\n'
                    "tensorboard = false\n")
    runs = tmp_path / "runs"
    res = runner.invoke(app, ["train", "--config", str(toml), "--steps", "2", "--out",
                              str(runs), "--name", "a"])
    assert res.exit_code == 0, res.output
    a = _config(runs / "a")
    assert a["model"]["block"] == "5x5" and a["model"]["width"] == 4 and a["size"] == [32, 48]
    assert a["train"]["lr"] == 0.002 and a["train"]["batch_size"] == 4
    assert a["train"]["steps"] == 2  # the command line wins
    assert a["train"]["tensorboard"] is False
    res = runner.invoke(app, ["train", "--config", str(runs / "a" / "config.json"), "--block",
                              "1x5", "--steps", "3", "--out", str(runs), "--name", "b"])
    assert res.exit_code == 0, res.output
    b = _config(runs / "b")
    assert b["model"]["block"] == "1x5" and b["train"]["steps"] == 3
    assert b["model"]["width"] == 4 and b["train"]["lr"] == 0.002 and b["size"] == [32, 48]
    assert b["data"]["source"] == a["data"]["source"]  # the data came along


@pytest.mark.parametrize("text, why", [("lrr = 0.1\n", "unknown option 'lrr'"),
                                       ("block = \n", "not valid TOML")])
def test_bad_config_exit_2(tmp_path, text, why):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    res = runner.invoke(app, ["train", "--config", str(f), "--steps", "1"])
    assert res.exit_code == 2, res.output
    assert why in res.output and str(f) in res.output
    res = runner.invoke(app, ["train", "--config", str(tmp_path / "none.toml")])
    assert res.exit_code == 2 and "cannot read it" in res.output
