"""The README's exit codes where they were broken: a cache is never a reason to fail, a bad
file is one line naming it (exit 2), and only a failed write is reported as one."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.errors import UserError
from lkmseg.files.layout import SAMPLES_DIR
from lkmseg.fsutil import atomic_path

# ------------------------------------------------------------------------ atomic_path


def test_atomic_path_reports_only_its_own_write(tmp_path):
    dst = tmp_path / "out.bin"
    dst.write_bytes(b"before")
    with pytest.raises(FileNotFoundError) as e:  # reading another file: not "cannot write"
        with atomic_path(dst) as tmp:
            shutil.copyfile(tmp_path / "missing.bin", tmp)
    assert "missing.bin" in str(e.value)
    with pytest.raises(UserError, match=r"cannot write .*out\.bin: the disk is full"):
        with atomic_path(dst) as tmp:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # write(2) on a full disk
    with pytest.raises(UserError, match=r"cannot write .*out\.bin"):
        with atomic_path(dst) as tmp:
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp))
    assert dst.read_bytes() == b"before"  # nothing written before is damaged
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary file left


# ------------------------------------------------------------------------ TensorRT sidecar


def test_sidecar_without_run_config_is_one_line(tmp_path, monkeypatch):
    from fakes.tensorrt_fake import make_tensorrt
    from test_gpu_fakes import GPU, _build

    from lkmseg.engines import tensorrt_engine as trt_eng
    from lkmseg.engines import tensorrt_runtime as trt_rt

    trt = make_tensorrt("10.13.3.9")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_rt, "current_gpu", lambda: GPU)
    monkeypatch.setattr(trt_eng, "current_gpu", lambda: GPU)
    _build(trt, tmp_path)
    side = tmp_path / "model.engine.json"
    meta = json.loads(side.read_text())
    for bad in ({k: v for k, v in meta.items() if k != "run_config"},
                {**meta, "run_config": {"size": "oops"}}):
        side.write_text(json.dumps(bad))
        with pytest.raises(UserError, match=rf"{side}: .*run_config.*lkmseg export RUN --trt"):
            trt_eng.TensorRTEngine(tmp_path / "model.engine")


# ------------------------------------------------------------------------ compare's summary


def test_compare_names_a_corrupt_summary(tmp_path):
    from lkmseg.bench.study import CompareOptions, _run_config, _train_all

    o = CompareOptions(blocks=["1x5"], out=tmp_path, width=2, depth=2, size=(32, 32),
                       budget_s=1.0)
    run = tmp_path / "runs" / "1x5"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(_run_config(o, "1x5").to_dict()))
    for text in ("{not json", "[1, 2]"):
        (run / "summary.json").write_text(text)
        with pytest.raises(UserError, match=rf"{run / 'summary.json'}: "):
            _train_all(o, None)
        assert (run / "summary.json").read_text() == text


# ------------------------------------------------------------------------ a read-only cache


def _read_only(monkeypatch, folder: Path) -> None:
    """Every attempt to create something under ``folder`` fails as on a read-only mount
    (the tests run as root, for whom permission bits do not stop writes)."""
    inside = str(folder.resolve())

    def refuse(path) -> None:
        if str(Path(path).resolve()).startswith(inside):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    real_mkstemp, real_mkdir, real_open = tempfile.mkstemp, Path.mkdir, os.open

    def mkstemp(*a, **kw):
        refuse(kw.get("dir") or ".")
        return real_mkstemp(*a, **kw)

    def mkdir(self, *a, **kw):
        if not self.is_dir():
            refuse(self)
        return real_mkdir(self, *a, **kw)

    def open_(path, flags, *a, **kw):
        if flags & os.O_CREAT:
            refuse(path)
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)


def test_auto_with_a_read_only_cache_warns_once_and_runs(run, monkeypatch, tmp_path, capsys):
    from lkmseg.engines import auto, load_engine

    cache = tmp_path / "ro"
    cache.mkdir()
    monkeypatch.setenv("LKMSEG_CACHE", str(cache))
    try:
        from lkmseg.files import cache as files_cache

        monkeypatch.setattr(files_cache, "_warned", set())  # say it once in this test
    except ImportError:
        pass
    monkeypatch.setattr(auto, "measure", lambda engines, x, **kw: {
        k: 1.0 if (e.name, e.precision) == ("onnxruntime", "fp32") else 5.0
        for k, e in engines.items()})
    _read_only(monkeypatch, cache)
    for _ in range(2):  # nothing cached: measured both times, said once
        eng = load_engine("auto", run, device="cpu")
        assert eng.name == "onnxruntime" and "measured now" in eng.auto_choice
    err = capsys.readouterr().err
    assert err.count("warning: cannot write the cache") == 1, err
    assert str(cache) in err
    assert list(cache.iterdir()) == []

    img = SAMPLES_DIR / "images"
    image = next(p for p in sorted(img.iterdir()) if p.suffix in (".jpg", ".png"))
    res = CliRunner().invoke(app, ["predict", str(run), str(image), "--out",
                                   str(tmp_path / "pred"), "--engine", "auto",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert list((tmp_path / "pred").glob("*.png"))
