"""`lkmseg info`: versions, devices, and an engine table that says how to fix what is missing."""

from __future__ import annotations

import json

import onnxruntime
import torch
from typer.testing import CliRunner

from lkmseg import __version__
from lkmseg.cli.app import app

runner = CliRunner()


def test_info_table():
    res = runner.invoke(app, ["info"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for text in ("lkmseg environment", __version__, torch.__version__, onnxruntime.__version__,
                 "CPUExecutionProvider", "onnxruntime providers", "engines", "tensorrt",
                 "physical cores"):
        assert text in res.output, text


def test_info_json_rows_explain_unavailable_engines():
    res = runner.invoke(app, ["info", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    env = data["environment"]
    assert env["lkmseg"] == __version__ and env["torch"] == torch.__version__
    assert env["onnxruntime"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in env["onnxruntime_providers"]
    rows = data["engines"]
    assert {r["engine"] for r in rows} == {"torch", "onnxruntime", "openvino", "tensorrt"}
    ov = {r["precision"]: r for r in rows if r["engine"] == "openvino"}
    assert set(ov) == {"fp32", "bf16", "int8"}  # info lists every openvino precision
    assert any(r["engine"] == "onnxruntime" and r["precision"] == "int8" for r in rows)
    for r in rows:
        assert isinstance(r["available"], bool) and r["detail"]
        if not r["available"]:  # every "no" says why and how to fix it
            assert any(k in r["detail"] for k in ("pip install", "install", "use ", "GPU"))
    cpu_ort = next(r for r in rows if r["engine"] == "onnxruntime" and r["device"] == "cpu"
                   and r["precision"] == "fp32")
    assert cpu_ort["available"]
    if not torch.cuda.is_available():
        assert env["gpus"] == []
        trt = [r for r in rows if r["engine"] == "tensorrt"]
        assert all(not r["available"] for r in trt)
