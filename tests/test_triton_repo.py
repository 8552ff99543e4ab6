"""`lkmseg export RUN --triton REPO`: every config.pbtxt parses with Triton's own schema
(tritonclient's model_config_pb2) and says what the model files and the run say."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from lkmseg.cli.app import app
from lkmseg.errors import UserError
from lkmseg.export.pbtxt import Enum, fallback_text, parameters, to_text
from lkmseg.export.triton_repo import TritonRepoOptions, write_triton_repo

runner = CliRunner()
pb = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                         reason="Triton's model_config schema comes with the 'serve' extra "
                                "(tritonclient): pip install 'lkmseg[serve]'")
text_format = pytest.importorskip("google.protobuf.text_format")


def parse(config: Path):
    return text_format.Parse(config.read_text(), pb.ModelConfig())


def params(cfg) -> dict[str, str]:
    return {k: v.string_value for k, v in cfg.parameters.items()}


def test_cli_writes_a_valid_repository(run, tmp_path):
    repo = tmp_path / "repo"
    res = runner.invoke(app, ["export", str(run), "--no-onnx", "--triton", str(repo)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in repo.iterdir()) == [".lkmseg.json", "README.md",
                                                      "run-onnxruntime", "run-openvino"]
    graph = onnx.load(str(run / "export" / "model.onnx"), load_external_data=False).graph
    for backend, kind in (("onnxruntime", pb.ModelInstanceGroup.KIND_AUTO),
                          ("openvino", pb.ModelInstanceGroup.KIND_CPU)):
        cfg = parse(repo / f"run-{backend}" / "config.pbtxt")
        assert cfg.name == f"run-{backend}" and cfg.backend == backend
        assert cfg.max_batch_size == 8
        assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
        assert [(g.count, g.kind) for g in cfg.instance_group] == [(1, kind)]
        (inp,), (out,) = cfg.input, cfg.output
        assert (inp.name, out.name) == (graph.input[0].name, graph.output[0].name)
        assert inp.data_type == out.data_type == pb.TYPE_FP32
        assert list(inp.dims) == [3, -1, -1] and list(out.dims) == [1, -1, -1]
        p = params(cfg)
        assert p["lkmseg_size"] == "64x96" and p["lkmseg_block"] == "1x5"
        assert float(p["lkmseg_threshold"]) == 0.5 and float(p["lkmseg_logit_threshold"]) == 0
        assert "INTER_AREA" in p["lkmseg_preprocess"] and "0.003921568627" in p["lkmseg_preprocess"]
        assert filecmp.cmp(repo / f"run-{backend}" / "1" / "model.onnx",
                           run / "export" / "model.onnx", shallow=False)
    ov = parse(repo / "run-openvino" / "config.pbtxt")
    assert ov.default_model_filename == "model.onnx"  # the OpenVINO backend reads ONNX
    assert params(ov)["NUM_STREAMS"] == "1" and params(ov)["PERFORMANCE_HINT"] == "LATENCY"
    readme = (repo / "README.md").read_text()
    assert "`run-onnxruntime` | onnxruntime | 8 | 1x5 | 64x96 | 0.5" in readme
    assert "`run-openvino` | openvino | 8" in readme and "tritonserver --model-repository" in readme


def _export_copy(run: Path, tmp: Path) -> Path:
    ex = tmp / "run" / "export"
    ex.mkdir(parents=True)
    shutil.copy(run / "export" / "model.onnx", ex / "model.onnx")
    return ex


def _fake_engine(ex: Path, lo: list, hi: list) -> None:
    (ex / "model.engine").write_bytes(b"plan bytes")
    side = {"tensorrt_version": "10.13.0", "gpu_name": "NVIDIA H100", "compute_capability": "9.0",
            "precision": "fp16", "input": "image", "profile": {"min": lo, "opt": lo, "max": hi}}
    (ex / "model.engine.json").write_text(json.dumps(side))


def test_tensorrt_plan_and_openvino_ir(run, tmp_path):
    ex = _export_copy(run, tmp_path)
    _fake_engine(ex, [1, 3, 32, 48], [4, 3, 128, 192])
    (ex / "model.xml").write_text("<net/>")
    (ex / "model.bin").write_bytes(b"\0" * 8)
    newer = (ex / "model.onnx").stat().st_mtime + 10  # an IR made from this model.onnx
    for f in ("model.xml", "model.bin"):
        os.utime(ex / f, (newer, newer))
    opts = TritonRepoOptions(name="car seg", max_batch=16, instances=2, queue_delay_ms=0.5)
    res = write_triton_repo(ex, tmp_path / "repo", ex.parent, opts)
    assert sorted(res.models) == ["car_seg-onnxruntime", "car_seg-openvino", "car_seg-tensorrt"]
    trt = parse(res.models["car_seg-tensorrt"] / "config.pbtxt")
    assert trt.backend == "tensorrt" and trt.max_batch_size == 4  # capped by the profile
    assert list(trt.input[0].dims) == [3, -1, -1]
    assert [(g.count, g.kind) for g in trt.instance_group] == [(2, pb.ModelInstanceGroup.KIND_GPU)]
    assert trt.dynamic_batching.max_queue_delay_microseconds == 500
    assert params(trt)["lkmseg_tensorrt_version"] == "10.13.0"
    assert "NVIDIA H100" in params(trt)["lkmseg_gpu"]
    assert (res.models["car_seg-tensorrt"] / "1" / "model.plan").read_bytes() == b"plan bytes"
    ov_dir = res.models["car_seg-openvino"]
    ov = parse(ov_dir / "config.pbtxt")
    assert ov.default_model_filename == ""  # IR: the backend's default model.xml
    assert sorted(p.name for p in (ov_dir / "1").iterdir()) == ["model.bin", "model.xml"]
    assert params(ov)["NUM_STREAMS"] == "2" and params(ov)["PERFORMANCE_HINT"] == "THROUGHPUT"
    assert parse(res.models["car_seg-onnxruntime"] / "config.pbtxt").max_batch_size == 16
    assert "TensorRT 10.13.0" in (tmp_path / "repo" / "README.md").read_text()


def test_int8_entries_only_where_the_gate_passed(run, tmp_path):
    ex = _export_copy(run, tmp_path)
    shutil.copy(run / "export" / "model.onnx", ex / "model.int8.onnx")
    gate = {"tolerance": 0.005, "candidates": {
        "onnxruntime/int8": {"dice": 0.9612, "delta": -0.0011, "passed": True},
        "openvino/int8": {"dice": 0.9500, "delta": -0.0123, "passed": False}}}
    (ex / "report.json").write_text(json.dumps({"formats": {}, "accuracy_gate": gate}))
    res = write_triton_repo(ex, tmp_path / "repo", ex.parent)
    assert sorted(res.models) == ["run-onnxruntime", "run-onnxruntime-int8", "run-openvino"]
    cfg = parse(res.models["run-onnxruntime-int8"] / "config.pbtxt")
    assert cfg.name == "run-onnxruntime-int8" and cfg.backend == "onnxruntime"
    assert [g.kind for g in cfg.instance_group] == [pb.ModelInstanceGroup.KIND_CPU]
    p = params(cfg)
    assert p["lkmseg_precision"] == "int8" and "-0.0011" in p["lkmseg_accuracy_gate"]
    assert params(parse(res.models["run-onnxruntime"] / "config.pbtxt"))["lkmseg_precision"] == \
        "fp32"
    assert filecmp.cmp(res.models["run-onnxruntime-int8"] / "1" / "model.onnx",
                       ex / "model.int8.onnx", shallow=False)
    (note,) = [n for n in res.notes if n.startswith("no ") and "-int8 model" in n]
    assert note.startswith("no openvino-int8 model") and "-0.0123" in note
    readme = (tmp_path / "repo" / "README.md").read_text()
    assert "`run-onnxruntime-int8` | onnxruntime | 8" in readme and "| int8 |" in readme
    # a report that never checked INT8 (no gate entries): no INT8 entry at all
    (ex / "report.json").write_text(json.dumps({"formats": {}}))
    res = write_triton_repo(ex, tmp_path / "repo2", ex.parent)
    assert not [m for m in res.models if m.endswith("-int8")]
    assert len([n for n in res.notes if "not checked" in n]) == 2


def test_static_exports_have_no_batch_dimension(run, tmp_path):
    ex = _export_copy(run, tmp_path)
    model = onnx.load(str(ex / "model.onnx"))
    meta = {p.key: p for p in model.metadata_props}
    meta["dynamic"].value, meta["input_shape"].value = "0", "[2, 3, 64, 96]"
    onnx.save(model, str(ex / "model.onnx"))
    _fake_engine(ex, [2, 3, 64, 96], [2, 3, 64, 96])
    res = write_triton_repo(ex, tmp_path / "repo", ex.parent,
                            TritonRepoOptions(backends=("onnxruntime", "tensorrt")))
    for name in ("run-onnxruntime", "run-tensorrt"):
        cfg = parse(res.models[name] / "config.pbtxt")
        assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
        assert list(cfg.input[0].dims) == [2, 3, 64, 96]
        assert list(cfg.output[0].dims) == [2, 1, 64, 96]


def test_other_models_are_kept_and_listed(run, tmp_path):
    repo = tmp_path / "repo"
    other = repo / "someone-else" / "config.pbtxt"
    other.parent.mkdir(parents=True)
    other.write_text('name: "someone-else"\nbackend: "python"\n')
    ex = _export_copy(run, tmp_path)
    write_triton_repo(ex, repo, ex.parent, TritonRepoOptions(name="a", backends=("onnxruntime",)))
    write_triton_repo(ex, repo, ex.parent, TritonRepoOptions(name="b", backends=("onnxruntime",)))
    assert other.read_text() == 'name: "someone-else"\nbackend: "python"\n'
    readme = (repo / "README.md").read_text()
    assert "`a-onnxruntime`" in readme and "`b-onnxruntime`" in readme
    assert "someone-else" not in readme


def test_bad_targets_are_user_errors(run, tmp_path):
    ex = _export_copy(run, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        write_triton_repo(ex, tmp_path / "file", ex.parent)
    with pytest.raises(UserError, match="model.onnx: not found"):
        write_triton_repo(tmp_path / "empty", tmp_path / "repo", ex.parent)
    with pytest.raises(UserError, match="unknown Triton backend 'tf'"):
        write_triton_repo(ex, tmp_path / "repo", ex.parent, TritonRepoOptions(backends=("tf",)))
    res = runner.invoke(app, ["export", str(tmp_path / "nowhere"), "--no-onnx", "--triton",
                              str(tmp_path / "repo")])
    assert res.exit_code == 2 and "not found" in res.output


def test_pbtxt_schema_and_fallback_write_the_same_config():
    desc = {"name": 'we"ird\\name', "max_batch_size": 3,
            "input": [{"name": "x", "data_type": Enum("TYPE_UINT8"), "dims": [-1, 2]}],
            "dynamic_batching": {"max_queue_delay_microseconds": 500},
            "instance_group": [{"count": 2, "kind": Enum("KIND_CPU")}],
            **parameters({"k": "line1\nline2", "size": "64×96"})}
    text = to_text(desc)  # tritonclient's schema (the serve extra is here)
    assert text != fallback_text(desc)  # two writers...
    a = text_format.Parse(text, pb.ModelConfig())
    assert a == text_format.Parse(fallback_text(desc), pb.ModelConfig())  # ...one config
    assert a.name == 'we"ird\\name' and a.max_batch_size == 3
    assert a.input[0].data_type == pb.TYPE_UINT8 and list(a.input[0].dims) == [-1, 2]
    assert a.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert a.parameters["k"].string_value == "line1\nline2"
    assert a.parameters["size"].string_value == "64×96" and "64×96" in text  # UTF-8 kept


def test_pbtxt_schema_rejects_a_misspelt_field():
    from google.protobuf.json_format import ParseError

    with pytest.raises(ParseError, match="max_batch"):
        to_text({"name": "m", "max_batch": 3})


# --------------------------------------------------------------------------- what lkmseg owns


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _triton(run: Path, repo: Path, *extra: str):
    return runner.invoke(app, ["export", str(run), "--no-onnx", "--triton", str(repo), *extra])


def _refused(res, culprit: Path) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    (line,) = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert str(culprit) in line and "--force" in line
    return line


@pytest.mark.parametrize("theirs", ["README.md", "run-openvino"])
def test_what_lkmseg_did_not_write_is_replaced_only_with_force(run, tmp_path, theirs):
    repo = tmp_path / "repo"
    if theirs == "README.md":
        repo.mkdir()
        (repo / "README.md").write_text("# our team's models\n")
    else:
        (repo / theirs / "1").mkdir(parents=True)
        (repo / theirs / "config.pbtxt").write_text('name: "run-openvino"\nbackend: "python"\n')
        (repo / theirs / "1" / "model.py").write_text("# ours\n")
    before = _tree(repo)
    line = _refused(_triton(run, repo), repo / theirs)
    assert "not written by lkmseg" in line
    assert _tree(repo) == before  # nothing written, not even the other models
    res = _triton(run, repo, "--force")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in repo.iterdir()) == [".lkmseg.json", "README.md",
                                                      "run-onnxruntime", "run-openvino"]
    assert "`run-openvino` | openvino" in (repo / "README.md").read_text()
    assert sorted(_tree(repo / "run-openvino")) == ["1/model.onnx", "config.pbtxt", "lkmseg.json"]
    assert not list(repo.glob(".run-*"))  # the replaced folder is gone, no temporary left


def test_two_runs_with_one_name_do_not_overwrite_each_other(run, tmp_path):
    a, b = tmp_path / "a" / "1x5", tmp_path / "b" / "1x5"
    for copy in (a, b):
        shutil.copytree(run, copy)
    repo = tmp_path / "repo"
    assert _triton(a, repo).exit_code == 0
    before = _tree(repo)
    line = _refused(_triton(b, repo), repo / "1x5-onnxruntime")
    assert f"holds the model of another run ({a.resolve()})" in line and "--triton-name" in line
    assert _tree(repo) == before
    res = _triton(b, repo, "--triton-name", "1x5-b")
    assert res.exit_code == 0, res.output
    assert {k: v for k, v in _tree(repo).items() if k.startswith("1x5-o")} == \
        {k: v for k, v in before.items() if k.startswith("1x5-o")}
    marker = json.loads((repo / "1x5-b-onnxruntime" / "lkmseg.json").read_text())
    assert marker["run"] == str(b.resolve())
    readme = (repo / "README.md").read_text()
    assert "`1x5-onnxruntime`" in readme and "`1x5-b-onnxruntime`" in readme


def test_a_run_updates_its_own_models_unless_someone_edited_them(run, tmp_path):
    repo = tmp_path / "repo"
    assert _triton(run, repo).exit_code == 0
    (repo / "run-onnxruntime" / "1" / "notes.txt").write_text("kept")  # theirs: kept
    res = _triton(run, repo)  # the same run again: its own folders are updated
    assert res.exit_code == 0, res.output
    assert (repo / "run-onnxruntime" / "1" / "notes.txt").read_text() == "kept"
    cfg = repo / "run-onnxruntime" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("count: 1", "count: 4"))  # tuned by hand
    edited = _tree(repo)
    line = _refused(_triton(run, repo), cfg)
    assert "changed since lkmseg wrote it" in line and _tree(repo) == edited
    (repo / "README.md").write_text((repo / "README.md").read_text() + "\nmy notes\n")
    line = _refused(_triton(run, repo, "--max-batch", "4"), repo / "README.md")
    assert "changed since lkmseg wrote it" in line


def test_readme_from_before_markers_is_lkmseg_s(run, tmp_path):
    from lkmseg.export.triton_folders import LEGACY_README
    from lkmseg.export.triton_readme import _HEADER

    assert _HEADER.splitlines()[0] == LEGACY_README
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text(_HEADER + "| `gone` | onnxruntime | 8 |\n")
    assert _triton(run, repo).exit_code == 0
    assert "`gone`" not in (repo / "README.md").read_text()


def test_an_ir_older_than_model_onnx_is_ignored(run, tmp_path):
    ex = _export_copy(run, tmp_path)
    (ex / "model.xml").write_text("<net/>")
    (ex / "model.bin").write_bytes(b"\0" * 8)
    older = (ex / "model.onnx").stat().st_mtime - 10  # converted from an earlier model
    os.utime(ex / "model.xml", (older, older))
    res = write_triton_repo(ex, tmp_path / "repo", ex.parent,
                            TritonRepoOptions(backends=("openvino",)))
    ov = res.models["run-openvino"]
    assert sorted(p.name for p in (ov / "1").iterdir()) == ["model.onnx"]
    assert parse(ov / "config.pbtxt").default_model_filename == "model.onnx"
    (note,) = [n for n in res.notes if "model.xml" in n]
    assert "older than model.onnx" in note
    newer = older + 20  # converted again: served, and the folder's model.onnx goes
    for f in ("model.xml", "model.bin"):
        os.utime(ex / f, (newer, newer))
    res = write_triton_repo(ex, tmp_path / "repo", ex.parent,
                            TritonRepoOptions(backends=("openvino",)))
    assert sorted(p.name for p in (ov / "1").iterdir()) == ["model.bin", "model.xml"]
