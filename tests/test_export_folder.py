"""The export folder is one transaction: a user's own files in ``--out`` are never touched, an
export that fails leaves the folder as it was, a re-export removes only what an earlier lkmseg
export wrote (manifest.json), and two exports into one folder do not delete each other's files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.engines import load_engine
from lkmseg.engines.onnxruntime_engine import OnnxRuntimeEngine, ort_trt_cache_dir
from lkmseg.export import ExportOptions, export_run, parity
from lkmseg.export import gated_formats as pg
from lkmseg.export import quantize as q
from lkmseg.export.gated_formats import GateOptions
from lkmseg.files.manifest import EXPORT_MANIFEST, file_digest, read_manifest, write_manifest
from lkmseg.files.onnx_meta import read_metadata

runner = CliRunner()
QUICK = ["--no-fp16", "--no-int8", "--parity-images", "1", "--gate-images", "1"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _users_files(out: Path) -> dict[str, bytes]:
    """Files a user keeps in their own folder, some under names an export also uses."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "notes.txt").write_text("my notes\n")
    (out / "model.engine").write_bytes(b"my own engine")
    (out / "model.engine.json").write_text('{"tensorrt_version": "mine"}')
    (out / "model.int8.onnx").write_bytes(b"my own int8 model")
    (out / "ort_trt_cache" / "abc").mkdir(parents=True)
    (out / "ort_trt_cache" / "abc" / "x.engine").write_bytes(b"cached engine")
    return snapshot(out)


def test_out_folder_keeps_the_users_own_files(tiny_run, tmp_path):
    run, out = tiny_run(width=2, depth=2), tmp_path / "mine"
    before = _users_files(out)
    res = runner.invoke(app, ["export", str(run), "--out", str(out), *QUICK])
    assert res.exit_code == 0, res.output
    after = snapshot(out)
    assert {k: after.get(k) for k in before} == before  # every file of theirs, byte for byte
    assert (out / "model.onnx").is_file() and (out / "report.json").is_file()
    man = read_manifest(out / EXPORT_MANIFEST)
    assert sorted(man["files"]) == ["model.onnx", "report.json"]
    assert man["files"]["model.onnx"] == file_digest(out / "model.onnx")
    assert not list(out.glob(".export-*"))  # no staging folder left


def test_out_folder_with_a_manifest_of_its_own_is_refused(tiny_run, tmp_path):
    run, out = tiny_run(width=2, depth=2), tmp_path / "mine"
    out.mkdir()
    (out / "manifest.json").write_text('{"their": "manifest"}')
    res = runner.invoke(app, ["export", str(run), "--out", str(out), *QUICK])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines()[-1] == (
        f"error: --out {out}: holds a manifest.json lkmseg did not write (an export writes its "
        "own there); choose another --out")
    assert snapshot(out) == {"manifest.json": b'{"their": "manifest"}'}


@pytest.fixture
def exported_copy(run, tmp_path) -> Path:
    """A copy of the shared exported run, with an engine an earlier `--trt` export wrote."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    ex = copy / "export"
    (ex / "model.engine").write_bytes(b"engine of the old model")
    (ex / "model.engine.json").write_text('{"tensorrt_version": "10.13"}')
    man = read_manifest(ex / EXPORT_MANIFEST)
    files = {**man["files"], **{n: file_digest(ex / n)
                                for n in ("model.engine", "model.engine.json")}}
    write_manifest(ex / EXPORT_MANIFEST, files, run=man["run"])
    return copy


def test_failed_export_leaves_the_folder_as_it_was(exported_copy, monkeypatch):
    ex = exported_copy / "export"
    (ex / "notes.txt").write_text("mine")
    before = snapshot(ex)

    def boom(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(parity, "compare", boom)  # fails after the new ONNX files are made
    with pytest.raises(RuntimeError, match="boom"):
        export_run(exported_copy, ExportOptions(fp16=False, parity_images=1,
                                                gates=GateOptions(int8=False)))
    assert snapshot(ex) == before
    assert not list(ex.glob(".*"))


def test_reexport_removes_only_what_an_earlier_export_wrote(exported_copy):
    ex = exported_copy / "export"
    (ex / "notes.txt").write_text("mine")
    (ex / "model.engine.json").write_text('{"tensorrt_version": "edited by me"}')
    old_onnx = file_digest(ex / "model.onnx")
    cache = ort_trt_cache_dir(ex / "model.fp16.onnx")  # engines of a file about to go
    cache.mkdir(parents=True)
    (cache / "e.engine").write_bytes(b"x")
    res = runner.invoke(app, ["export", str(exported_copy), *QUICK])
    assert res.exit_code == 0, res.output
    assert not (ex / "model.engine").exists()  # lkmseg's, stale now: removed
    assert not (ex / "model.fp16.onnx").exists()  # --no-fp16: the earlier one is stale
    assert not cache.exists() and not (ex / "ort_trt_cache").exists()
    assert (ex / "model.engine.json").read_text() == '{"tensorrt_version": "edited by me"}'
    assert (ex / "notes.txt").read_text() == "mine"
    assert "kept model.engine.json: changed since lkmseg wrote it" in res.output
    man = read_manifest(ex / EXPORT_MANIFEST)
    assert sorted(man["files"]) == ["model.onnx", "report.json"]
    assert file_digest(ex / "model.onnx") == old_onnx  # the same weights: the same file


def test_legacy_export_folder_clears_the_engine_cache_of_the_old_model(tiny_run):
    """An export folder from before manifests: RUN/export is lkmseg's own, so the known files
    count as lkmseg's; the ONNX Runtime TensorRT cache of the replaced model goes with it."""
    run = tiny_run(width=2, depth=2)
    ex = run / "export"
    ex.mkdir()
    (ex / "model.onnx").write_bytes(b"an older model")
    (ex / "model.engine").write_bytes(b"its engine")
    stale = ort_trt_cache_dir(ex / "model.onnx")
    stale.mkdir(parents=True)
    (stale / "TensorrtExecutionProvider_x_sm89.engine").write_bytes(b"old")
    export_run(run, ExportOptions(fp16=False, parity_images=1,
                                  gates=GateOptions(int8=False, gate_images=1)))
    assert not (ex / "ort_trt_cache").exists() and not (ex / "model.engine").exists()
    assert read_metadata(ex / "model.onnx")["block"] == "1x5"


def test_two_exports_into_one_folder_do_not_delete_each_others_files(tiny_run, tmp_path,
                                                                      monkeypatch):
    """Export B runs to completion while export A is making its INT8 candidate, into the same
    folder: each keeps its own temporary files, and A (committed last) leaves a whole export."""
    run_a, run_b = tiny_run(width=2, depth=2, seed=1), tiny_run(width=2, depth=2, seed=2)
    out = tmp_path / "shared"
    monkeypatch.setattr(pg, "float_candidates", lambda *_a: [])  # the INT8 gate is enough here
    monkeypatch.setattr(q, "RECIPES", q.RECIPES[:1])  # shipped or rejected after one recipe
    opts = ExportOptions(fp16=False, parity_images=1, out_dir=out,
                         gates=GateOptions(calib_images=2, gate_images=2))
    real, nested = q.quantize, []

    def quantize(*args, **kw):
        made = real(*args, **kw)
        if not nested:  # A's candidate is on disk: B exports now, start to finish
            nested.append(None)
            nested[0] = export_run(run_b, opts, strict=False)
        return made

    monkeypatch.setattr(q, "quantize", quantize)
    res_a = export_run(run_a, opts, strict=False)
    (res_b,) = nested
    assert "onnx_int8" in res_a.files or "onnx_int8_rejected" in res_a.files
    assert "onnx_int8" in res_b.files or "onnx_int8_rejected" in res_b.files
    report = json.loads((out / "report.json").read_text())
    assert report["run"] == str(run_a)
    assert (out / report["formats"]["onnx_int8"]["file"]).is_file()
    man = read_manifest(out / EXPORT_MANIFEST)["files"]
    assert {n: file_digest(out / n) for n in man} == man  # the folder is what A committed
    x = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
    with load_engine("torch", run_a, "fp32", "cpu") as ta, \
            load_engine("torch", run_b, "fp32", "cpu") as tb, \
            OnnxRuntimeEngine(out / "model.onnx", device="cpu") as ort:
        y = ort(x)
        assert np.abs(y - ta(x)).max() < 1e-3 < np.abs(y - tb(x)).max()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


@pytest.fixture
def fake_trt(monkeypatch):
    """TensorRT (the strict fake of tests/fakes) and a 'GPU' for export's --trt."""
    import functools

    from fakes.tensorrt_fake import make_tensorrt

    from lkmseg.export import pipeline, tensorrt_build

    trt = make_tensorrt("10.13.3.9")
    monkeypatch.setattr(pipeline, "tensorrt_status", lambda: (True, "fake TensorRT"))
    monkeypatch.setattr(pipeline, "build_engine", functools.partial(
        tensorrt_build.build_engine, trt=trt, gpu=("NVIDIA L4", "8.9")))
    return trt


def test_engine_build_failure_keeps_the_new_onnx_files(tiny_run, fake_trt, monkeypatch,
                                                       tmp_path):
    """A failed --trt build (exit 3) still commits the ONNX files and their report, as an
    export without --trt would, and removes the stale engine of the earlier model."""
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fake_trt.Builder, "build_serialized_network", lambda *_a: None)
    run = tiny_run(width=2, depth=2)
    ex = run / "export"
    ex.mkdir()
    (ex / "model.engine").write_bytes(b"engine of an earlier model")
    res = runner.invoke(app, ["export", str(run), "--trt", *QUICK])
    assert res.exit_code == 3, res.output
    assert "TensorRT engine build failed" in res.output.strip().splitlines()[-1]
    assert sorted(p.name for p in ex.iterdir()) == ["manifest.json", "model.onnx", "report.json"]
    assert json.loads((ex / "report.json").read_text())["formats"]["onnx_fp32"]["passed"]
