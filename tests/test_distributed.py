"""Multi-process training (DDP on CPU with gloo) against one process with the global batch.

Two processes with batch size 4 each and ``--sync-bn`` must end with the weights (and the
BatchNorm statistics, and the validation Dice) of one process with batch size 8. Without
``--sync-bn`` each process normalises with its own shard's statistics, which is standard DDP
but not the single-process computation, so the equality is only promised with it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_pairs
from safetensors.torch import load_file

from lkmseg.config import RunConfig, TrainConfig
from lkmseg.models import ModelConfig
from lkmseg.train.evaluate import evaluate
from lkmseg.train.loop import train_run
from lkmseg.train.runtime import Runtime

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="this torch build has no torch.distributed")

STEPS = 6
TINY = ["--block", "1x5", "--width", "4", "--depth", "3", "--size", "32x48",
        "--channels-last", "off", "--amp", "off", "--val-frac", "0.25", "--seed", "0"]

# Installed with PYTHONPATH into every process the test starts: records each write-like
# file operation under LKMSEG_AUDIT_ROOT, tagged with the process's torchrun RANK.
AUDIT_HOOK = '''
import os, sys
_root, _log = os.environ.get("LKMSEG_AUDIT_ROOT"), os.environ.get("LKMSEG_AUDIT_LOG")
if _root and _log and "RANK" in os.environ:
    _rank, _busy = os.environ["RANK"], [False]
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    def _hook(event, args):
        if _busy[0]:
            return
        if event == "open":
            path, mode, flags = args
            if isinstance(mode, str) and not set(mode) & set("wax+"):
                return
            if mode is None and not (flags or 0) & _WRITE:
                return
        elif event == "os.rename":  # also os.replace: log the destination
            path = args[1]
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.truncate", "os.chmod"):
            path = args[0]
        else:
            return
        if not isinstance(path, (str, bytes, os.PathLike)):
            return
        path = os.fsdecode(os.fspath(path))
        if path.startswith(_root):
            _busy[0] = True
            try:
                with open(_log, "a") as f:
                    f.write(f"{_rank} {event} {path}\\n")
            finally:
                _busy[0] = False
    sys.addaudithook(_hook)
_tlog = os.environ.get("LKMSEG_THREADS_LOG")
if _tlog and "RANK" in os.environ:
    import atexit, glob, json, threading
    def _threads_at_exit():  # what still runs when the interpreter starts to exit
        names = []
        for p in glob.glob("/proc/self/task/*/comm"):
            try:
                names.append(open(p).read().strip())
            except OSError:
                pass
        py = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        with open(_tlog, "a") as f:
            f.write(json.dumps({"rank": os.environ["RANK"], "os": sorted(names), "py": py})
                    + "\\n")
    atexit.register(_threads_at_exit)
'''


@pytest.fixture(scope="module")
def ddp_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    data = write_pairs(root / "data", "carvana", groups=4, views=4, size=(48, 64))
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT_HOOK)
    env = {**os.environ, "LKMSEG_CACHE": str(root / "cache"),
           "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
           "LKMSEG_AUDIT_ROOT": str(root / "runs"), "LKMSEG_AUDIT_LOG": str(root / "audit.log"),
           "LKMSEG_THREADS_LOG": str(root / "threads.log"), "OMP_NUM_THREADS": "1"}
    return root, data, env


def _threads_left(root: Path) -> list[dict]:
    """The training processes that had a thread besides the main one running at exit (read
    and cleared): a Python thread, or the process group's (gloo / c10d) C++ threads, which
    can abort a process that exits while they run."""
    log = root / "threads.log"
    if not Path("/proc/self/task").is_dir():
        return []
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
    log.unlink(missing_ok=True)
    assert rows, "no training process recorded its threads at exit"
    return [r for r in rows if r["py"] or any("gloo" in n or n.startswith(("pt_", "c10d"))
                                              for n in r["os"])]


def _single(root: Path, data: Path, name: str, steps: int, monkeypatch) -> Path:
    """The reference: one process, batch size 8 (= 2 processes x 4), in this process."""
    monkeypatch.setenv("LKMSEG_CACHE", str(root / "cache"))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    cfg = RunConfig(model=ModelConfig(block="1x5", width=4, depth=3), size=(32, 48),
                    train=TrainConfig(steps=steps, batch_size=8, channels_last="off", amp="off",
                                      val_frac=0.25, seed=0, val_every=3))
    run, _ = train_run(cfg, data, root / "ref", name=name)
    return run


def _assert_same_weights(a: Path, b: Path, atol: float = 2e-5) -> None:
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    for k in wa:  # parameters and BatchNorm running statistics alike
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=atol,
                                   msg=lambda m, k=k: f"{k}: {m}")


def _steps(path: Path) -> list[int]:
    with open(path, newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def _dice(path: Path) -> list[float]:
    with open(path, newline="") as f:
        return [float(r["dice"]) for r in csv.DictReader(f)]


def test_two_processes_match_one_process_with_the_global_batch(ddp_env, monkeypatch):
    root, data, env = ddp_env
    out = root / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "lkmseg", "train", *TINY, "--data", str(data), "--batch-size", "4",
           "--sync-bn", "--steps", str(STEPS), "--val-every", "3", "--out", str(out),
           "--name", "ddp"]
    (root / "threads.log").unlink(missing_ok=True)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert not _threads_left(root)  # every thread stopped, the process group freed
    ref = _single(root, data, "single", STEPS, monkeypatch)
    run = out / "ddp"

    _assert_same_weights(run / "last.safetensors", ref / "last.safetensors")
    _assert_same_weights(run / "model.safetensors", ref / "model.safetensors")

    # validation: each rank scores its shard, the Dice is reduced over both
    assert _steps(run / "val_log.csv") == _steps(ref / "val_log.csv") == [3, 6]
    np.testing.assert_allclose(_dice(run / "val_log.csv"), _dice(ref / "val_log.csv"), atol=1e-4)
    from lkmseg.data.prepare import prepare
    from lkmseg.files.run_folder import load_run

    model, cfg = load_run(run, which="last")
    prep = prepare(data, cfg.size, val_frac=0.25, seed=0)
    rt1 = Runtime(torch.device("cpu"), None, False, False)
    full = evaluate(model, prep.val_images, prep.val_masks, rt1)
    shard = evaluate(model, prep.val_images[0::2], prep.val_masks[0::2], rt1)
    assert full == pytest.approx(_dice(run / "val_log.csv")[-1], abs=1e-4)
    assert abs(shard - full) > 1e-4, "test data too uniform to tell a shard from the whole"

    # only rank 0 wrote, and the run folder is complete and clean
    events = [p for p in run.iterdir() if p.name.startswith("events.out.tfevents.")]
    assert len(events) == (1 if importlib.util.find_spec("tensorboard") else 0)
    assert sorted(p.name for p in run.iterdir() if p not in events) == sorted(
        ["config.json", "model.safetensors", "last.safetensors", "state.pt",
         "train_log.csv", "val_log.csv", "summary.json", "results.png"])
    assert _steps(run / "train_log.csv") == list(range(1, STEPS + 1))
    audit = (root / "audit.log").read_text().splitlines()
    assert any(line.startswith("0 ") and line.endswith("state.pt") for line in audit), audit
    assert not [line for line in audit if not line.startswith("0 ")], audit
    s = json.loads((run / "summary.json").read_text())
    assert s["world_size"] == 2 and s["images_seen"] == STEPS * 8 and s["steps"] == STEPS
    assert "2 processes" in s["device"]


def _ctrl_c_then_resume(root: Path, data: Path, env: dict, name: str,
                        steps: int = 40) -> tuple[list[str], str, str]:
    """``train --nproc 2``, Ctrl-C after 3 logged steps, then ``--resume --nproc 2``: asserts
    both exit 0 (the first with the resume line, the second with the finished run); returns
    (the first command, its output, the resumed one's output)."""
    out = root / "runs"
    cmd = [sys.executable, "-m", "lkmseg", "train", *TINY, "--data", str(data),
           "--batch-size", "4", "--sync-bn", "--steps", str(steps), "--val-every", "8",
           "--out", str(out), "--name", name, "--nproc", "2"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    run = out / name
    deadline = time.time() + 240
    while p.poll() is None and time.time() < deadline:
        if (run / "train_log.csv").is_file() and len(_steps(run / "train_log.csv")) >= 3:
            break
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    text, _ = p.communicate(timeout=240)
    assert p.returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert f"Resume with: lkmseg train --resume {run} --nproc 2" in text, text[-3000:]
    stopped = json.loads((run / "summary.json").read_text())
    assert stopped["status"] == "interrupted" and 3 <= stopped["steps"] < steps

    r = subprocess.run([sys.executable, "-m", "lkmseg", "train", "--resume", str(run),
                        "--nproc", "2"], env=env, capture_output=True, text=True, timeout=300,
                       check=False)
    resumed = r.stdout + r.stderr
    assert r.returncode == 0, resumed[-3000:]
    assert "terminate called" not in resumed and "Traceback" not in resumed, resumed[-3000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "complete" and s["steps"] == steps
    assert _steps(run / "train_log.csv") == list(range(1, steps + 1))
    return cmd, text, resumed


def test_ctrl_c_under_nproc_then_resume(ddp_env, monkeypatch):
    """Ctrl-C reaches the launcher (workers run in their own sessions): every process
    checkpoints, the command exits 0 with the resume line; --resume --nproc 2 finishes
    the run with the weights of an uninterrupted one."""
    root, data, env = ddp_env
    (root / "threads.log").unlink(missing_ok=True)
    cmd, _, _ = _ctrl_c_then_resume(root, data, env, "cut")
    assert not _threads_left(root)  # nothing left running when the processes exit
    # the reference: the same command, not interrupted (two processes again: over 40 steps
    # a one-process run drifts from a two-process one by ~1e-3 through float rounding — as
    # does one thread from two — while one step more or less moves weights by ~3e-2)
    ref = subprocess.run([a if a != "cut" else "whole" for a in cmd], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    out = root / "runs"
    _assert_same_weights(out / "cut" / "last.safetensors", out / "whole" / "last.safetensors",
                         atol=1e-6)


@pytest.mark.stress
def test_ctrl_c_then_resume_20_times(ddp_env):
    """The cycle above 20 times in a row: every command exits 0 (a finished run is never
    reported as failed). Not in the default run: ``pytest -m stress``."""
    root, data, env = ddp_env
    t0, done = time.perf_counter(), 0
    for i in range(20):
        _ctrl_c_then_resume(root, data, env, f"stress{i}")
        done += 1
        print(f"cycle {i + 1}/20 ok ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"stress: {done}/20 Ctrl-C + --resume cycles exited 0 in "
          f"{time.perf_counter() - t0:.0f} s")
    assert done == 20


def test_launcher_blames_the_process_that_failed():
    """The elastic agent SIGTERMs the processes still running once one has failed, and lists
    them among the failures too: the one to report is the one that failed by itself."""
    from types import SimpleNamespace

    from lkmseg.train.distributed import _root_failure

    def failed(codes: dict[int, int]) -> SimpleNamespace:
        fs = {r: SimpleNamespace(exitcode=c, timestamp=0) for r, c in codes.items()}
        return SimpleNamespace(failures=fs, get_first_failure=lambda: (0, fs[0]))

    assert _root_failure(failed({0: -signal.SIGTERM, 1: -signal.SIGABRT})) == (1, -6)
    assert _root_failure(failed({0: -signal.SIGKILL, 1: 2})) == (1, 2)
    assert _root_failure(failed({0: 4, 1: 1})) == (1, 1)  # a peer's failure is not the cause
    # stopped from outside (every process SIGTERMed): the first one
    assert _root_failure(failed({0: -signal.SIGTERM, 1: -signal.SIGTERM})) == (0, -15)


def test_resume_with_another_process_count_keeps_the_global_batch(ddp_env, tmp_path,
                                                                  monkeypatch, capsys):
    """A 2-process run (batch 4 each) resumed by one process trains on with batch 8; a
    global batch that cannot be split evenly is refused with the fix."""
    root, data, _ = ddp_env
    monkeypatch.setenv("LKMSEG_CACHE", str(root / "cache"))
    cfg = RunConfig(model=ModelConfig(block="1x5", width=4, depth=3), size=(32, 48),
                    train=TrainConfig(steps=2, batch_size=4, channels_last="off", amp="off",
                                      val_frac=0.25, seed=0))
    run, _ = train_run(cfg, data, tmp_path, name="r")
    state = torch.load(run / "state.pt", weights_only=True)
    state["progress"]["world_size"] = 2  # as if two processes had written it
    torch.save(state, run / "state.pt")
    from lkmseg.config import load_config

    cfg = load_config(run)
    cfg.train.steps = 3
    _, s = train_run(cfg, None, resume=run)
    assert s["batch_size"] == 8 and s["steps"] == 3
    assert load_config(run).train.batch_size == 8
    assert "global batch 8 unchanged" in capsys.readouterr().err

    from types import SimpleNamespace

    from lkmseg.errors import UserError
    from lkmseg.train.trainer import Trainer

    fake = SimpleNamespace(cfg=RunConfig(train=TrainConfig(batch_size=3)),
                           rt=SimpleNamespace(world=2), run_dir=run, warn=print)
    with pytest.raises(UserError, match="resume with --nproc 3"):
        Trainer._rebatch(fake, 3)  # 3 x 3 images per step cannot be split over 2
