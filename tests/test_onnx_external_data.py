"""An ONNX file whose tensors live in other files (external data) is refused wherever lkmseg
loads an ONNX file: ONNX Runtime builds lkmseg's sessions from bytes, so it would look for that
data in the working folder — whatever file of that name happens to be there."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest
from conftest import SAMPLES
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.engines.onnxruntime_engine import OnnxRuntimeEngine
from lkmseg.errors import UserError

runner = CliRunner()


@pytest.fixture
def external(run, tmp_path, monkeypatch) -> Path:
    """The shared export's model.onnx saved with its weights in ``model.onnx.data``, and the
    working folder set to that folder (where ONNX Runtime would find the data)."""
    ex = tmp_path / "export"
    ex.mkdir()
    model = onnx.load(str(run / "export" / "model.onnx"))
    onnx.save(model, str(ex / "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    assert (ex / "model.onnx.data").is_file()
    monkeypatch.chdir(ex)
    return ex / "model.onnx"


def _one_line(res, path: Path) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    (line,) = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert str(path) in line and "external data" in line and "'model.onnx.data'" in line
    return line


def test_engines_refuse_external_data(external):
    with pytest.raises(UserError, match=r"model\.onnx: \d+ tensor\(s\) stored outside the file"):
        OnnxRuntimeEngine(external, device="cpu")
    pytest.importorskip("openvino")
    from lkmseg.engines.openvino_engine import OpenVinoEngine

    with pytest.raises(UserError, match="external data"):
        OpenVinoEngine(external)


def test_predict_refuses_external_data(external, tmp_path):
    img = next((SAMPLES / "images").iterdir())
    before = sorted(p.name for p in external.parent.iterdir())
    res = runner.invoke(app, ["predict", str(external), str(img), "--out", str(tmp_path / "o"),
                              "--engine", "onnxruntime"])
    _one_line(res, external)
    assert sorted(p.name for p in external.parent.iterdir()) == before


def test_export_checks_and_triton_refuse_external_data(external, run, tmp_path):
    """``export --no-onnx --trt`` builds from the ONNX file already in the export folder, and
    ``--triton`` copies it: both load it first."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("export"))
    shutil.copytree(external.parent, copy / "export")
    res = runner.invoke(app, ["export", str(copy), "--no-onnx", "--trt"])
    _one_line(res, copy / "export" / "model.onnx")
    res = runner.invoke(app, ["export", str(copy), "--no-onnx", "--triton", str(tmp_path / "t")])
    _one_line(res, copy / "export" / "model.onnx")
    assert not (tmp_path / "t").exists()
