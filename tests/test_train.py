import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import write_pairs
from safetensors.torch import load_file
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.config import RunConfig, TrainConfig, load_config
from lkmseg.models import ModelConfig
from lkmseg.train.loop import train_run
from lkmseg.train.trainer import lr_at

TINY = ["--width", "4", "--depth", "3", "--size", "32x48", "--batch-size", "4",
        "--channels-last", "off", "--amp", "off", "--val-frac", "0.34"]


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))
    return write_pairs(tmp_path / "data", "carvana", groups=3, views=4, size=(48, 64))


def _cfg(steps=12, **kw):
    return RunConfig(model=ModelConfig(block="1x5", width=4, depth=3), size=(32, 48),
                     train=TrainConfig(steps=steps, batch_size=4, channels_last="off", amp="off",
                                       val_frac=0.34, **kw))


def test_run_folder_contract(data, tmp_path):
    run, s = train_run(_cfg(steps=12, val_every=4), data, tmp_path / "runs", name="r")
    for f in ["config.json", "model.safetensors", "last.safetensors", "state.pt",
              "train_log.csv", "val_log.csv", "summary.json"]:
        assert (run / f).is_file(), f
    rows = list(csv.DictReader(open(run / "train_log.csv")))
    assert list(rows[0]) == ["step", "epoch", "elapsed_s", "images_per_s", "loss", "lr"]
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    vals = list(csv.DictReader(open(run / "val_log.csv")))
    assert [int(v["step"]) for v in vals] == [4, 8, 12]
    assert {"step", "elapsed_s", "dice"} <= set(vals[0])
    summary = json.loads((run / "summary.json").read_text())
    for k in ["block", "kernel", "params", "best_val_dice", "images_per_s", "train_seconds",
              "device", "loader_images_per_s", "val_dice_full_res"]:
        assert summary[k] is not None, k
    assert summary["block"] == "1x5" and summary["kernel"] == 5 and summary["steps"] == 12
    assert summary["best_val_dice"] == pytest.approx(max(float(v["dice"]) for v in vals), abs=1e-5)
    cfg = load_config(run)
    assert cfg.model.block == "1x5" and cfg.size == (32, 48)
    val_groups, train_groups = set(cfg.data["val_groups"]), set(cfg.data["train_groups"])
    assert val_groups and not val_groups & train_groups
    assert all(Path(p).stem.split("_")[0] in val_groups for p, _ in cfg.data["val_items"])


def test_learns_easy_data(data, tmp_path):
    _, s = train_run(_cfg(steps=60, val_every=20, lr=3e-3), data, tmp_path / "runs")
    assert s["best_val_dice"] > 0.8, s


def test_lr_schedule_warmup_and_decay():
    cfg = _cfg(lr=1e-3)
    assert lr_at(cfg, 0.0) < lr_at(cfg, 0.03) == pytest.approx(1e-3)
    assert lr_at(cfg, 0.5) < lr_at(cfg, 0.1)
    assert lr_at(cfg, 1.0) == pytest.approx(1e-5)


def test_nan_loss_is_skipped_then_stops(data, tmp_path, monkeypatch):
    from lkmseg.train import step

    real = step.bce_dice_loss
    calls = {"n": 0}

    def flaky(logits, target):
        calls["n"] += 1
        loss = real(logits, target)
        return loss * float("nan") if calls["n"] in (3, 4) else loss

    monkeypatch.setattr(step, "bce_dice_loss", flaky)
    _, s = train_run(_cfg(steps=8), data, tmp_path / "runs")
    assert s["skipped_steps"] == 2 and s["steps"] == 8
    monkeypatch.setattr(step, "bce_dice_loss", lambda lg, t: real(lg, t) * float("inf"))
    from lkmseg.errors import UserError
    with pytest.raises(UserError, match="NaN/inf for 20 steps"):
        train_run(_cfg(steps=30), data, tmp_path / "runs")


def _cli(args, env):
    return subprocess.Popen([sys.executable, "-m", "lkmseg", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _steps_logged(run: Path) -> int:
    try:
        return max(0, len((run / "train_log.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_then_resume_matches_uninterrupted(data, tmp_path, sig):
    env = {**os.environ, "LKMSEG_CACHE": os.environ["LKMSEG_CACHE"]}
    common = ["--block", "1x5", "--data", str(data), *TINY, "--steps", "40",
              "--out", str(tmp_path / "runs"), "--val-every", "10"]
    ref = subprocess.run([sys.executable, "-m", "lkmseg", "train", *common, "--name", "ref"],
                         env=env, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    p = _cli([*common, "--name", "cut"], env)
    run = tmp_path / "runs" / "cut"
    deadline = time.time() + 120
    while _steps_logged(run) < 5 and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(sig)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out
    assert "--resume" in out and "interrupted at step" in out
    stopped = json.loads((run / "summary.json").read_text())["steps"]
    assert 5 <= stopped < 40
    r = subprocess.run([sys.executable, "-m", "lkmseg", "train", "--resume", str(run)],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((run / "summary.json").read_text())
    assert s["steps"] == 40 and s["status"] == "complete"
    steps = [int(x["step"]) for x in csv.DictReader(open(run / "train_log.csv"))]
    assert steps == list(range(1, 41))  # no step repeated or lost in the log
    a = load_file(run / "last.safetensors")
    b = load_file(tmp_path / "runs" / "ref" / "last.safetensors")
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_cli_train_and_bad_options(data, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["train", "--block", "5x5", "--data", str(data), *TINY,
                            "--steps", "3", "--out", str(tmp_path / "runs"), "--name", "c"])
    assert r.exit_code == 0, r.output
    assert "best val dice" in r.output and (tmp_path / "runs" / "c" / "summary.json").is_file()
    for args, needle in [(["--block", "x5"], "unknown block 'x5'"),
                         (["--size", "12x"], "--size"),
                         (["--time-budget", "ten minutes"], "--time-budget"),
                         (["--device", "tpu"], "--device"),
                         (["--amp", "fp8"], "--amp"),
                         (["--data", str(tmp_path / "missing")], "missing"),
                         (["--resume", str(tmp_path / "nowhere")], "nowhere")]:
        r = runner.invoke(app, ["train", "--data", str(data), *TINY, "--steps", "1",
                                "--out", str(tmp_path / "runs"), *args])
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output, (args, r.output)
        assert "Traceback" not in r.output
    r = runner.invoke(app, ["train", "--data", str(data), *TINY, "--steps", "1",
                            "--out", str(tmp_path / "runs"), "--name", "c"])
    assert r.exit_code == 2 and "--resume" in r.output  # never overwrite an existing run


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_requested_without_gpu(data, tmp_path):
    r = CliRunner().invoke(app, ["train", "--data", str(data), *TINY, "--steps", "1",
                                 "--device", "cuda", "--out", str(tmp_path / "runs")])
    assert r.exit_code == 2 and "no CUDA GPU" in r.output
