"""Two commands at once on one run folder or one cache (a shared machine, a shared disk).

A run folder is written by one command at a time: a new run claims its folder atomically and
holds its lock (``lkmseg.files.lock``) until it ends, ``--resume`` takes the same lock; a
second command exits 2 with one line naming the PID that holds it, and touches nothing. Cache
records are updated under a lock (no writer's answer lost), and the cache key is the same
whichever way the data folder is written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import log_steps, wait_for_step, write_pairs

FOLDER_LOCK = ".lkmseg.lock"  # lkmseg.files.lock.FOLDER_LOCK

TINY = ["--block", "1x5", "--width", "4", "--depth", "3", "--size", "32x48",
        "--batch-size", "4", "--channels-last", "off", "--amp", "off", "--val-frac", "0.34",
        "--workers", "0"]


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))
    return write_pairs(tmp_path / "data", "carvana", groups=3, views=4, size=(48, 64))


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _train(*args: str) -> list[str]:
    return [sys.executable, "-m", "lkmseg", "train", *args]


def _one_error_line(code: int, text: str) -> str:
    assert "Traceback" not in text, text[-3000:]
    assert code == 2, text[-3000:]
    errors = [x for x in text.splitlines() if x.startswith("error:")]
    assert len(errors) == 1, text[-3000:]
    return errors[0]




# ------------------------------------------------------------------------ run folders


def test_two_trainings_with_one_name(data, tmp_path):
    """Started together: one trains the run to its end, the other exits 2 with one line
    naming the folder; the run's log has every step once."""
    cmd = _train("--data", str(data), *TINY, "--steps", "12", "--out", str(tmp_path / "runs"),
                 "--name", "r")
    ps = [subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in ps]
    codes = [p.returncode for p in ps]
    assert sorted(codes) == [0, 2], outs
    line = _one_error_line(2, outs[codes.index(2)])
    run = tmp_path / "runs" / "r"
    assert str(run) in line
    assert "in use by PID" in line or "run folder exists" in line, line
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "complete" and s["steps"] == 12
    assert log_steps(run / "train_log.csv") == list(range(1, 13))
    assert not (run / FOLDER_LOCK).exists()  # released at the end


def test_second_command_on_a_training_run_names_its_pid(data, tmp_path):
    """While a run trains: a new run with its name, and --resume of it, exit 2 naming the
    training's PID and leave its files (its in-flight temporary file too) alone; once it has
    stopped, --resume works and clears the temporary files left behind."""
    runs = tmp_path / "runs"
    run = runs / "r"
    a = subprocess.Popen(_train("--data", str(data), *TINY, "--steps", "2000", "--out",
                                str(runs), "--name", "r"), env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_step(run, 2, a, timeout=240)
        in_flight = run / ".state.pt.a1b2c3d4.tmp"  # as the training's atomic save makes
        in_flight.write_bytes(b"half a checkpoint")
        config = (run / "config.json").read_bytes()
        for args in (["--resume", str(run), "--steps", "3"],
                     ["--data", str(data), *TINY, "--steps", "2", "--out", str(runs),
                      "--name", "r"]):
            b = subprocess.run(_train(*args), env=_env(), capture_output=True, text=True,
                               timeout=300, check=False)
            line = _one_error_line(b.returncode, b.stdout + b.stderr)
            assert f"PID {a.pid}" in line and str(run) in line, line
            assert in_flight.read_bytes() == b"half a checkpoint"
            assert (run / "config.json").read_bytes() == config
        assert a.poll() is None  # still training
    finally:
        a.send_signal(signal.SIGINT)
        out, _ = a.communicate(timeout=300)
    assert a.returncode == 0 and "interrupted at step" in out, out[-3000:]
    r = subprocess.run(_train("--resume", str(run), "--steps", "8"), env=_env(),
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert not in_flight.exists() and not (run / FOLDER_LOCK).exists()


def test_unnamed_runs_started_together_get_their_own_folders(tmp_path):
    """Runs started in the same second (same default name) each claim a folder of their
    own; a start that fails removes the empty folder it claimed."""
    from lkmseg.files.run_claim import claim_new_run

    claims = [claim_new_run(tmp_path, None, "1x5_32x48_x") for _ in range(3)]
    assert [c.path.name for c in claims] == ["1x5_32x48_x", "1x5_32x48_x-2", "1x5_32x48_x-3"]
    for c in claims:
        c.abandon()
    assert list(tmp_path.iterdir()) == []


def test_folder_lock_names_its_holder_and_frees_on_exit(tmp_path):
    from lkmseg.files.lock import FOLDER_LOCK as name
    from lkmseg.files.lock import FolderBusy, lock_folder

    assert name == FOLDER_LOCK
    lock = lock_folder(tmp_path, "export")
    with pytest.raises(FolderBusy, match=rf"{tmp_path}: in use by PID {os.getpid()} "
                                         r"\(export since "):
        lock_folder(tmp_path, "train")
    lock.release()
    assert not (tmp_path / FOLDER_LOCK).exists()
    # a holder killed outright leaves no stale lock (the kernel drops it with the process)
    code = ("import os, sys; from lkmseg.files.lock import lock_folder; "
            "lock_folder(sys.argv[1], 'train'); print('held', flush=True); "
            "os.kill(os.getpid(), 9)")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                       text=True, timeout=120, check=False)
    assert p.returncode == -9 and "held" in p.stdout, p.stderr
    assert (tmp_path / FOLDER_LOCK).exists()  # left behind, but not held
    with lock_folder(tmp_path, "train"):
        pass


def test_file_system_without_locks_is_a_warning(tmp_path, monkeypatch, capsys):
    import errno
    import fcntl

    from lkmseg.files.lock import lock_folder

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with lock_folder(tmp_path, "train") as lock:
        assert not lock.held
    assert "cannot lock files" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ caches


def _slow_writes(monkeypatch) -> None:
    """Widen the read-modify-write window so that unlocked writers surely overlap."""
    import lkmseg.fsutil as fsutil

    real = fsutil.write_json

    def slow(path, obj):
        time.sleep(0.005)
        real(path, obj)

    monkeypatch.setattr(fsutil, "write_json", slow)
    try:
        import lkmseg.files.cache as files_cache

        monkeypatch.setattr(files_cache, "write_json", slow)
    except ImportError:
        pass


def test_autotune_cache_keeps_every_writers_record(tmp_path, monkeypatch):
    from lkmseg import tune

    _slow_writes(monkeypatch)
    path = tmp_path / "autotune.json"

    def writer(w: int) -> None:
        for i in range(10):
            tune.remember({"w": w, "i": i}, {"best": f"{w}-{i}"}, path)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(json.loads(path.read_text())) == 40  # no record lost to another writer
    assert tune.cached({"w": 3, "i": 9}, path)["best"] == "3-9"


def test_locked_serialises_read_modify_write(tmp_path):
    from lkmseg.files.lock import locked

    counter = tmp_path / "n"
    counter.write_text("0")

    def add() -> None:
        for _ in range(50):
            with locked(counter):
                n = int(counter.read_text())
                time.sleep(0.0005)
                counter.write_text(str(n + 1))

    threads = [threading.Thread(target=add) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.read_text() == "150"


def test_empty_lkmseg_cache_means_the_default(monkeypatch, tmp_path):
    from lkmseg.data.cache import cache_root

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LKMSEG_CACHE", "")
    assert cache_root() == tmp_path / "home" / ".cache" / "lkmseg"  # not the working folder
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"


def test_data_cache_is_shared_by_relative_and_absolute_paths(data, tmp_path, monkeypatch):
    from lkmseg.data.cache import build_cache
    from lkmseg.data.datasets import find_items

    monkeypatch.chdir(data.parent)
    _, rel = find_items(Path(data.name))  # --data d
    _, absolute = find_items(data.resolve())  # --data $PWD/d
    first = build_cache(rel, (32, 48), root=tmp_path / "c")
    again = build_cache(absolute, (32, 48), root=tmp_path / "c")
    assert not first.reused and again.reused and again.path == first.path
    assert again.items == absolute  # the caller's items, as the caller named them
    assert (again.images == first.images).all()
    assert build_cache(rel, (32, 48), root=tmp_path / "c").reused
