"""TensorBoard event files: loss, lr, images/s, validation Dice and images per step; a resumed
run purges the steps a killed process logged after its last checkpoint (no step twice);
skipped silently without tensorboard. results.png in every run folder."""

from __future__ import annotations

import csv
import sys

import pytest
from conftest import write_pairs

import lkmseg
from lkmseg.train import trainer

pytest.importorskip("tensorboard", reason="the 'tensorboard' extra is not installed")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)
from tensorboard.backend.event_processing.event_file_loader import (  # noqa: E402
    EventFileLoader,
)

TINY = dict(size=(32, 48), width=4, depth=3, batch_size=4, channels_last="off", amp="off",
            val_frac=0.34, val_every=4, verbose=False)


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))
    return write_pairs(tmp_path / "data", "carvana", groups=3, views=4, size=(48, 64))


def _events(run):
    ea = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    return ea


def _raw_loss_steps(run) -> list[int]:
    steps = []
    for f in sorted(run.glob("events.out.tfevents.*")):
        for ev in EventFileLoader(str(f)).Load():
            steps += [ev.step for v in ev.summary.value if v.tag == "train/loss"]
    return steps


def test_events_written_and_resumed_without_duplicate_steps(data, tmp_path, monkeypatch):
    real = trainer.Trainer._write_checkpoint

    def dies_after_step_8(self):  # as if killed after logging steps 9-12, before saving them
        if self.state.step <= 8:
            real(self)

    monkeypatch.setattr(trainer.Trainer, "_write_checkpoint", dies_after_step_8)
    run = lkmseg.train("1x5", data=data, steps=12, out=tmp_path / "runs", name="r", **TINY)
    ea = _events(run.path)
    assert [e.step for e in ea.Scalars("train/loss")] == list(range(1, 13))
    assert {"train/loss", "train/lr", "train/images_per_s", "val/dice"} <= set(
        ea.Tags()["scalars"])
    assert [e.step for e in ea.Scalars("val/dice")] == [4, 8, 12]
    (img,) = [i for i in ea.Images("val/predictions") if i.step == 4]
    assert (img.height, img.width) == (32, 4 * 96)  # 4 x (image | prediction overlay)
    monkeypatch.setattr(trainer.Trainer, "_write_checkpoint", real)
    lkmseg.train(resume=run.path, steps=16, verbose=False)
    assert len(_raw_loss_steps(run.path)) == 12 + 8  # steps 9-12 are in the files twice...
    ea = _events(run.path)
    loss = ea.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, 17))  # ...but TensorBoard shows them once
    assert [e.step for e in ea.Scalars("val/dice")] == [4, 8, 12, 16]
    logged = {int(r["step"]): float(r["loss"]) for r in csv.DictReader(
        open(run.path / "train_log.csv"))}
    assert sorted(logged) == list(range(1, 17))
    for e in loss:  # the resumed run's values, the same as the CSV log's
        assert e.value == pytest.approx(logged[e.step], rel=1e-4)
    lr = {e.step: e.value for e in ea.Scalars("train/lr")}
    assert lr[1] < lr[2]  # warm-up
    assert (run.path / "results.png").stat().st_size > 10_000


def test_no_tensorboard_installed_no_events(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    run = lkmseg.train("1x5", data=data, steps=4, out=tmp_path / "runs", name="n", **TINY)
    assert run.status == "complete" and not list(run.path.glob("events.out.tfevents.*"))
    assert (run.path / "results.png").is_file()


def test_tensorboard_off(data, tmp_path):
    run = lkmseg.train("1x5", data=data, steps=4, out=tmp_path / "runs", name="off",
                       tensorboard=False, **TINY)
    assert not list(run.path.glob("events.out.tfevents.*"))


def test_a_failing_event_write_stops_tensorboard_not_training(data, tmp_path, monkeypatch,
                                                               capsys):
    import errno

    from torch.utils.tensorboard import SummaryWriter

    calls = []

    def full(self, *a, **kw):
        calls.append(a[0])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(SummaryWriter, "add_scalar", full)
    run = lkmseg.train("1x5", data=data, steps=6, out=tmp_path / "runs", name="f", **TINY)
    assert run.status == "complete" and run.summary["steps"] == 6
    assert calls == ["train/loss"]  # the first failure switched TensorBoard off
    err = capsys.readouterr().err
    assert err.count("TensorBoard logging stopped (No space left on device)") == 1
