"""Crash safety: SIGKILL at random steps, a full disk, a read-only run folder.

What a run folder must survive: a kill at any moment leaves every file either in its old
or its new complete version (atomic writes), maybe a hidden ``.NAME.xxxx.tmp`` leftover
(ignored, removed on --resume) and log rows past the last checkpoint (cut on --resume);
resuming then reproduces the uninterrupted run. A failed write (disk full, read-only) is
one line naming the file, exit 2, and the previous checkpoint stays intact.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import log_steps, wait_for_step, write_pairs
from safetensors.torch import load_file
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.config import RunConfig, TrainConfig
from lkmseg.models import ModelConfig
from lkmseg.train.loop import train_run

TINY = ["--block", "1x5", "--width", "4", "--depth", "3", "--size", "32x48",
        "--batch-size", "4", "--channels-last", "off", "--amp", "off", "--val-frac", "0.34"]
CHECKPOINT = ("state.pt", "last.safetensors", "model.safetensors")


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))
    return write_pairs(tmp_path / "data", "carvana", groups=3, views=4, size=(48, 64))


def _cfg(steps: int, **kw) -> RunConfig:
    return RunConfig(model=ModelConfig(block="1x5", width=4, depth=3), size=(32, 48),
                     train=TrainConfig(steps=steps, batch_size=4, channels_last="off", amp="off",
                                       val_frac=0.34, **kw))



def assert_run_folder_intact(run: Path) -> int:
    """Every file of the run parses; returns the checkpointed step."""
    for p in run.glob("*.json"):
        json.loads(p.read_text())
    for p in run.glob("*.safetensors"):
        load_file(p)
    state = torch.load(run / "state.pt", map_location="cpu", weights_only=True)
    step = int(state["progress"]["step"])
    train = log_steps(run / "train_log.csv")
    assert train == list(range(1, len(train) + 1)), train  # no gap, no repeat
    assert len(train) >= step  # the log reaches the checkpoint (rows after it are cut later)
    val = log_steps(run / "val_log.csv")
    assert val == sorted(set(val)), val
    assert int(_meta(run / "last.safetensors")["step"]) >= step  # written before state.pt
    return step


def _meta(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata()



def test_sigkill_at_random_steps_then_resume_matches_uninterrupted(data, tmp_path):
    steps = 30
    common = [*TINY, "--steps", str(steps), "--val-every", "5", "--ckpt-every", "2"]
    env = {**os.environ, "LKMSEG_CACHE": os.environ["LKMSEG_CACHE"]}
    run = tmp_path / "runs" / "victim"
    rng = random.Random(20240501)
    kills = sorted(rng.sample(range(3, steps - 3), 3))
    cmd = [sys.executable, "-m", "lkmseg", "train", "--data", str(data), *common,
           "--out", str(tmp_path / "runs"), "--name", "victim"]
    seen_steps = []
    for target in kills:
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_step(run, target, p)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        assert p.returncode == -signal.SIGKILL
        ckpt_step = assert_run_folder_intact(run)
        assert ckpt_step >= (seen_steps[-1] if seen_steps else 0)  # progress is never lost
        seen_steps.append(ckpt_step)
        cmd = [sys.executable, "-m", "lkmseg", "train", "--resume", str(run)]
    # a leftover a kill inside a save would leave: ignored, then removed by --resume
    (run / ".state.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert assert_run_folder_intact(run) == steps
    assert not list(run.glob(".*.tmp"))
    s = json.loads((run / "summary.json").read_text())
    assert s["steps"] == steps and s["status"] == "complete"
    assert log_steps(run / "val_log.csv") == [5, 10, 15, 20, 25, 30]

    ref, _ = train_run(_cfg(steps, val_every=5, ckpt_every=2), data, tmp_path / "runs",
                       name="reference")
    for name in ("last.safetensors", "model.safetensors"):
        a, b = load_file(run / name), load_file(ref / name)
        for k in b:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    ref_log = (ref / "train_log.csv").read_text().splitlines()
    got_log = (run / "train_log.csv").read_text().splitlines()
    loss = [float(x.split(",")[4]) for x in got_log[1:]]
    ref_loss = [float(x.split(",")[4]) for x in ref_log[1:]]
    assert loss == pytest.approx(ref_loss, rel=1e-4)  # the same steps, in the same order


def test_resume_of_a_run_killed_before_its_first_checkpoint(data, tmp_path, capsys):
    run, _ = train_run(_cfg(3), data, tmp_path, name="r")
    for f in CHECKPOINT:
        (run / f).unlink()  # as if killed at step 1, before any checkpoint
    (run / "summary.json").unlink()
    from lkmseg.config import load_config

    _, s = train_run(load_config(run), None, resume=run)
    assert s["steps"] == 3 and "no checkpoint yet" in capsys.readouterr().err
    assert log_steps(run / "train_log.csv") == [1, 2, 3]


def test_resume_cuts_logs_back_to_the_checkpoint(data, tmp_path):
    run, _ = train_run(_cfg(4, ckpt_every=2, val_every=2), data, tmp_path, name="r")
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["progress"]["step"] == 4
    with open(run / "train_log.csv", "a") as f:  # rows written after the checkpoint, and
        f.write("5,1,0.1,1,0.5,0.001\n6,1,0.1,1,0.5,0.001\n7,1,0.")  # a line cut by a kill
    from lkmseg.config import load_config

    cfg = load_config(run)
    cfg.train.steps = 6
    train_run(cfg, None, resume=run)
    assert log_steps(run / "train_log.csv") == [1, 2, 3, 4, 5, 6]
    assert log_steps(run / "val_log.csv") == [2, 4, 6]


# ------------------------------------------------------------------- disk full / read-only


def _snapshot(run: Path) -> bytes:
    """The resumable checkpoint. (model/last.safetensors may legitimately be replaced by
    complete newer versions before the failing write: they are only checked to load.)"""
    return (run / "state.pt").read_bytes()


def _trained(data: Path, tmp_path: Path) -> Path:
    run, _ = train_run(_cfg(4, ckpt_every=2, val_every=2), data, tmp_path / "runs", name="r")
    return run


def _resume_cli(run: Path, steps: int = 8):
    return CliRunner().invoke(app, ["train", "--resume", str(run), "--steps", str(steps)])


def _assert_failed_cleanly(r, run: Path, before: bytes, needle: str) -> None:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0] and str(run) in lines[0], r.output
    assert _snapshot(run) == before  # the previous checkpoint is intact, byte for byte
    assert assert_run_folder_intact(run) == 4
    assert not list(run.glob(".*.tmp"))


@pytest.mark.parametrize("victim,err", [("last.safetensors", errno.ENOSPC),
                                        ("state.pt", errno.ENOSPC),
                                        ("train_log.csv", errno.EROFS)])
def test_failed_write_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch, victim, err):
    """The kernel's answer to a write on a full disk / read-only folder, injected at the
    rename (tests run as root, where chmod does not stop writes)."""
    run = _trained(data, tmp_path)
    before = _snapshot(run)
    real = os.replace

    def failing_replace(src, dst, *a, **kw):
        if Path(dst).name == victim:
            raise OSError(err, os.strerror(err))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", failing_replace)
    r = _resume_cli(run)
    needle = "the disk is full" if err == errno.ENOSPC else "not writable"
    _assert_failed_cleanly(r, run, before, needle)
    assert victim in r.output
    monkeypatch.setattr(os, "replace", real)  # space freed: the same command now works
    r = _resume_cli(run)
    assert r.exit_code == 0, r.output
    assert log_steps(run / "train_log.csv") == list(range(1, 9))


def test_full_disk_while_appending_to_the_log(data, tmp_path, monkeypatch):
    run = _trained(data, tmp_path)
    before = _snapshot(run)
    from lkmseg.train import logs

    def full(self, **row):
        raise logs.explain_os_error(self.path, OSError(errno.ENOSPC, "No space left"))

    monkeypatch.setattr(logs.CsvLog, "write", full)
    _assert_failed_cleanly(_resume_cli(run), run, before, "the disk is full")


@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); the "
                    "monkeypatched disk-full/read-only tests above still ran")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.mark.skipif(sys.platform != "linux", reason="uses a Linux tmpfs mount")
def test_real_full_disk_and_read_only_mount(data, tmp_path):
    """The same on a real 1 MiB tmpfs: filled up, then remounted read-only."""
    with _tmpfs(tmp_path / "mnt", "1m") as mnt:
        run, _ = train_run(_cfg(4, ckpt_every=2, val_every=2), data, mnt, name="r")
        before = _snapshot(run)
        filler = mnt / "filler"
        # fill the disk, then give back 16 KiB: enough for the logs, not for a checkpoint
        with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
        os.truncate(filler, max(0, filler.stat().st_size - 16384))
        r = _resume_cli(run)
        _assert_failed_cleanly(r, run, before, "the disk is full")
        assert ".safetensors" in r.output, r.output  # it trained on, then failed to save
        filler.unlink()
        r = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True,
                           check=False)
        assert r.returncode == 0, r.stderr
        _assert_failed_cleanly(_resume_cli(run), run, before, "not writable")
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
        r = _resume_cli(run)
        assert r.exit_code == 0, r.output
        assert assert_run_folder_intact(run) == 8
