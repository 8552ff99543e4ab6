"""``lkmseg export RUN --triton REPO``: a Triton Inference Server model repository.

For a cluster that runs Triton's own backends (no Python in the request path)::

    REPO/README.md                        the pre/post-processing contract, models, how to run
    REPO/<name>-onnxruntime/config.pbtxt  + 1/model.onnx   (onnxruntime backend, CPU or GPU)
    REPO/<name>-openvino/config.pbtxt     + 1/model.onnx, or 1/model.xml/.bin where the export
                                          folder holds an OpenVINO IR newer than model.onnx
    REPO/<name>-tensorrt/config.pbtxt     + 1/model.plan   (only when RUN/export has an engine)
    REPO/<name>-onnxruntime-int8/, REPO/<name>-openvino-int8/  + 1/model.onnx (the INT8 QDQ
        file, only where export shipped it and its accuracy gate passed in that runtime)

Every model takes the preprocessed batch — float32 (B, 3, H, W), RGB, x/255, resized to the
training size — and returns logits (B, 1, H, W): the config's ``parameters`` spell the
contract out (``lkmseg_*`` keys, which the backends ignore). Dynamic batching is on with
``max_batch_size`` images; static exports get ``max_batch_size: 0`` and their fixed shape.

Each model folder holds ``lkmseg.json`` (the run and the files lkmseg wrote): a folder or README
lkmseg did not write, or that changed since, or another run's model under the same name, is
never replaced without ``force`` (``export.triton_folders``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lkmseg.config import RunConfig
from lkmseg.data.transforms import logit_threshold
from lkmseg.errors import UserError
from lkmseg.export.pbtxt import Config, Enum, parameters, to_text
from lkmseg.export.triton_folders import check_readme, folder_owner, mark_readme, write_folder
from lkmseg.files.layout import ENGINE_FILE, ONNX_FILES

ONNX, ENGINE, IR = ONNX_FILES["fp32"], ENGINE_FILE, ("model.xml", "model.bin")
BACKENDS = ("onnxruntime", "openvino", "tensorrt")


@dataclass
class TritonRepoOptions:
    name: str | None = None  # base model name; default: the run folder's name
    max_batch: int = 8  # images per batch Triton forms (capped by a TensorRT profile)
    queue_delay_ms: float = 2.0
    instances: int = 1
    backends: tuple[str, ...] = BACKENDS
    force: bool = False  # replace folders and a README.md lkmseg did not write


@dataclass
class TritonRepoResult:
    repo: Path
    models: dict[str, Path] = field(default_factory=dict)  # model name -> its folder
    notes: list[str] = field(default_factory=list)


@dataclass
class _Model:
    """What one exported file looks like to Triton."""

    backend: str
    files: dict[str, Path]  # name inside 1/ -> source file
    max_batch: int  # 0: no batch dimension (static export)
    in_dims: list[int]
    out_dims: list[int]
    kind: str  # KIND_AUTO | KIND_CPU | KIND_GPU
    extra: Config = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def model_name(run_dir: Path, name: str | None = None) -> str:
    base = name or run_dir.name
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-")
    if not clean:
        raise UserError(f"--triton: cannot make a model name from {base!r}; rename the run")
    return clean


def _check(o: TritonRepoOptions) -> None:
    if not 1 <= o.max_batch <= 4096:
        raise UserError(f"--max-batch {o.max_batch}: must be between 1 and 4096 for --triton")
    if not 1 <= o.instances <= 64:
        raise UserError(f"instances {o.instances}: must be between 1 and 64")
    unknown = sorted(set(o.backends) - set(BACKENDS))
    if unknown:
        raise UserError(f"unknown Triton backend {unknown[0]!r}: choose from {', '.join(BACKENDS)}")


def _contract(cfg: RunConfig, meta: dict[str, str]) -> dict[str, str]:
    """The ``lkmseg_*`` parameters: everything a client needs to pre/post-process."""
    h, w = cfg.size
    norm = cfg.normalization
    return {
        "lkmseg_version": meta.get("lkmseg_version", "?"),
        "lkmseg_block": meta.get("block", cfg.model.block),
        "lkmseg_precision": meta.get("precision", "fp32"),
        "lkmseg_input": f"{meta.get('input', 'image')}: float32 (B, 3, {h}, {w}), RGB, "
                        f"channels first",
        "lkmseg_preprocess": f"resize each RGB uint8 image to {h}x{w} (H x W) with "
                             f"{norm.get('resize', 'area')} interpolation (cv2.INTER_AREA), "
                             f"then x * {norm.get('scale', 1 / 255):.10g}, mean "
                             f"{norm.get('mean')}, std {norm.get('std')}",
        "lkmseg_size": f"{h}x{w}",
        "lkmseg_output": f"{meta.get('output', 'logits')}: float32 (B, 1, {h}, {w}) logits",
        "lkmseg_postprocess": "resize the logits bilinearly (align_corners=False) to the "
                              "image's size, mask = logits > lkmseg_logit_threshold",
        "lkmseg_threshold": repr(float(cfg.threshold)),
        "lkmseg_logit_threshold": repr(logit_threshold(cfg.threshold)),
    }


def _onnx_shapes(meta: dict[str, str], max_batch: int) -> tuple[int, list[int], list[int]]:
    """(max_batch_size, input dims, output dims) for an ONNX export."""
    if meta.get("dynamic", "1") == "1":
        return max_batch, [3, -1, -1], [1, -1, -1]
    b, c, h, w = (int(v) for v in json.loads(meta["input_shape"]))
    return 0, [b, c, h, w], [b, 1, h, w]


def _trt_shapes(side: dict, max_batch: int) -> tuple[int, list[int], list[int]]:
    lo, hi = side["profile"]["min"], side["profile"]["max"]
    hw = [d if d == lo[i + 2] else -1 for i, d in enumerate(hi[2:])]
    if lo[0] == hi[0]:  # a static batch: no batch dimension in Triton's view
        return 0, [hi[0], 3, *hw], [hi[0], 1, *hw]
    return min(max_batch, int(hi[0])), [3, *hw], [1, *hw]


def _onnx_model(src: Path, meta: dict, o: TritonRepoOptions) -> _Model:
    mb, ins, outs = _onnx_shapes(meta, o.max_batch)
    return _Model("onnxruntime", {ONNX: src}, mb, ins, outs, "KIND_AUTO")


def fresh_ir(export_dir: Path) -> bool | None:
    """None: no OpenVINO IR beside model.onnx; False: one older than model.onnx (made from an
    earlier model: never served); True: a usable one."""
    ir = [export_dir / f for f in IR]
    if not all(p.is_file() for p in ir):
        return None
    return min(p.stat().st_mtime for p in ir) >= (export_dir / ONNX).stat().st_mtime


def _openvino_model(export_dir: Path, meta: dict, o: TritonRepoOptions,
                    onnx: Path | None = None) -> _Model:
    mb, ins, outs = _onnx_shapes(meta, o.max_batch)
    params = {"NUM_STREAMS": str(o.instances),
              "PERFORMANCE_HINT": "LATENCY" if o.instances == 1 else "THROUGHPUT"}
    if onnx is not None:  # a given ONNX file (the INT8 one)
        return _Model("openvino", {ONNX: onnx}, mb, ins, outs, "KIND_CPU",
                      {"default_model_filename": ONNX}, params)
    if fresh_ir(export_dir):
        files = {f: export_dir / f for f in IR}
        extra: Config = {}
    else:  # the OpenVINO backend reads ONNX too
        files = {ONNX: export_dir / ONNX}
        extra = {"default_model_filename": ONNX}
    return _Model("openvino", files, mb, ins, outs, "KIND_CPU", extra, params)


def _int8_models(export_dir: Path, meta: dict, o: TritonRepoOptions
                 ) -> tuple[dict[str, _Model], list[str]]:
    """The INT8 QDQ file for each backend whose run of it passed export's accuracy gate (both
    ONNX Runtime and OpenVINO execute Q/DQ pairs as int8 on the CPU)."""
    from lkmseg.files.export_report import gate_verdict, read_report

    src = export_dir / ONNX_FILES["int8"]
    if not src.is_file():
        return {}, []
    report = read_report(export_dir)
    models, notes = {}, []
    for backend in ("onnxruntime", "openvino"):
        if backend not in o.backends:
            continue
        ok, why = gate_verdict(report, backend, "int8")
        if not ok:
            notes.append(f"no {backend}-int8 model ({src.name}): {why}")
            continue
        m = (_onnx_model(src, meta, o) if backend == "onnxruntime"
             else _openvino_model(export_dir, meta, o, onnx=src))
        m.kind = "KIND_CPU"  # int8 QDQ is a CPU path (VNNI/AMX); GPUs get TensorRT
        m.params = {**m.params, "lkmseg_precision": "int8",
                    "lkmseg_accuracy_gate": f"passed: {why}"}
        models[f"{backend}-int8"] = m
    return models, notes


def _tensorrt_model(engine: Path, o: TritonRepoOptions) -> _Model:
    from lkmseg.files.sidecar import read_sidecar

    side = read_sidecar(engine)
    try:
        mb, ins, outs = _trt_shapes(side, o.max_batch)
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise UserError(f"{engine}.json: no usable optimization profile ({type(e).__name__}); "
                        "rebuild with `lkmseg export RUN --trt`") from e
    params = {"lkmseg_tensorrt_version": str(side.get("tensorrt_version")),
              "lkmseg_gpu": f"{side.get('gpu_name')} (compute capability "
                            f"{side.get('compute_capability')})",
              "lkmseg_engine_precision": str(side.get("precision"))}
    return _Model("tensorrt", {"model.plan": engine}, mb, ins, outs, "KIND_GPU", {}, params)


def config_message(name: str, m: _Model, meta: dict[str, str], contract: dict[str, str],
                   o: TritonRepoOptions) -> Config:
    """The model's config.pbtxt as a description (see ``pbtxt``)."""
    cfg: Config = {"name": name, "backend": m.backend, "max_batch_size": m.max_batch,
                   "input": [{"name": meta.get("input", "image"),
                              "data_type": Enum("TYPE_FP32"), "dims": m.in_dims}],
                   "output": [{"name": meta.get("output", "logits"),
                               "data_type": Enum("TYPE_FP32"), "dims": m.out_dims}]}
    if m.max_batch > 0:
        cfg["dynamic_batching"] = {"max_queue_delay_microseconds":
                                   round(o.queue_delay_ms * 1000)}
    cfg["instance_group"] = [{"count": o.instances, "kind": Enum(m.kind)}]
    cfg.update(m.extra)
    return {**cfg, **parameters({**contract, **m.params})}  # a model's own precision wins


def _plan(export_dir: Path, o: TritonRepoOptions, meta: dict) -> tuple[dict[str, _Model], list]:
    models: dict[str, _Model] = {}
    notes: list[str] = []
    if "onnxruntime" in o.backends:
        models["onnxruntime"] = _onnx_model(export_dir / ONNX, meta, o)
    if "openvino" in o.backends:
        models["openvino"] = _openvino_model(export_dir, meta, o)
        if fresh_ir(export_dir) is False:
            notes.append(f"ignored {IR[0]}/{IR[1]} in {export_dir}: older than {ONNX} (made "
                         f"from an earlier model); the openvino model reads {ONNX}")
    int8, int8_notes = _int8_models(export_dir, meta, o)
    models.update(int8)
    notes += int8_notes
    if "tensorrt" in o.backends:
        if (export_dir / ENGINE).is_file():
            models["tensorrt"] = _tensorrt_model(export_dir / ENGINE, o)
        else:
            notes.append(f"no {ENGINE} in {export_dir}: no TensorRT model (build one on the "
                         "target GPU with `lkmseg export RUN --trt`)")
    return models, notes


def write_triton_repo(export_dir: str | Path, repo: str | Path, run_dir: str | Path,
                      options: TritonRepoOptions | None = None,
                      log: Callable[[str], None] | None = None) -> TritonRepoResult:
    """Write (or update) the models of ``export_dir`` into the Triton repository ``repo``.
    Other models already in ``repo`` are left alone; README.md lists every lkmseg model."""
    from lkmseg.export.triton_readme import write_readme
    from lkmseg.files.onnx_meta import config_from_metadata, read_metadata

    o, log = options or TritonRepoOptions(), log or (lambda _m: None)
    _check(o)
    export_dir, repo = Path(export_dir), Path(repo)
    if not (export_dir / ONNX).is_file():
        raise UserError(f"{export_dir / ONNX}: not found; run `lkmseg export RUN` first")
    if repo.exists() and not repo.is_dir():
        raise UserError(f"--triton {repo}: is a file, not a folder; choose another path")
    meta = read_metadata(export_dir / ONNX)
    contract = _contract(config_from_metadata(meta, export_dir / ONNX), meta)
    base = model_name(Path(run_dir), o.name)
    models, notes = _plan(export_dir, o, meta)
    run_id = str(Path(run_dir).resolve())
    owners = _owners(repo, [f"{base}-{b}" for b in models], run_id, o.force)
    result = TritonRepoResult(repo=repo, notes=notes)
    for backend, m in models.items():
        name = f"{base}-{backend}"
        folder = repo / name
        files: dict[str, bytes | Path] = {}
        for fname, src in m.files.items():
            log(f"{name}: copying {src.name} -> {folder.name}/1/{fname}")
            files[f"1/{fname}"] = src
        files["config.pbtxt"] = to_text(config_message(name, m, meta, contract, o)).encode()
        owner = owners[name]
        write_folder(folder, files, owner, replace=owner is None and folder.exists(),
                     run_id=run_id, export_dir=export_dir)
        result.models[name] = folder
    write_readme(repo)
    mark_readme(repo)
    return result


def precheck(repo: str | Path, run_dir: str | Path, options: TritonRepoOptions) -> None:
    """Refuse early (before minutes of exporting) what ``write_triton_repo`` would refuse for
    sure: the README and the float models' folders."""
    o, repo = options, Path(repo)
    _check(o)
    if repo.exists() and not repo.is_dir():
        raise UserError(f"--triton {repo}: is a file, not a folder; choose another path")
    base = model_name(Path(run_dir), o.name)
    names = [f"{base}-{b}" for b in ("onnxruntime", "openvino") if b in o.backends]
    _owners(repo, names, str(Path(run_dir).resolve()), o.force)


def _owners(repo: Path, names: list[str], run_id: str, force: bool) -> dict[str, dict | None]:
    """Check every target before writing any (a refusal writes nothing): the marker of each
    model folder lkmseg may update, None for one to create (or to replace, with ``force``)."""
    if not force:
        check_readme(repo)
    owners = {}
    for name in names:
        try:
            owners[name] = folder_owner(repo / name, run_id)
        except UserError:
            if not force:
                raise
            owners[name] = None
    return owners
