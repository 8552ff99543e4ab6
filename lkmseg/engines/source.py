"""What ``RUN|MODEL_FILE`` points at: a run folder, an export folder, or one model file.

Every form resolves to the model's RunConfig (for preprocessing and the threshold) and the
model files available for each runtime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lkmseg.config import RunConfig, load_config
from lkmseg.errors import UserError

EXPORT_DIR = "export"
ONNX_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx"}
ENGINE_FILE = "model.engine"
ENGINE_EXTS = (".engine", ".plan", ".trt")
WEIGHT_FILES = ("model.safetensors", "last.safetensors")


@dataclass
class ModelSource:
    path: Path  # as given
    kind: str  # run | export | onnx | tensorrt | weights
    config: RunConfig
    run_dir: Path | None = None
    weights: Path | None = None  # safetensors for the torch engine
    onnx: dict[str, Path] = field(default_factory=dict)  # precision -> file
    engine: Path | None = None  # TensorRT plan (+ .json sidecar)

    def describe(self) -> str:
        have = [p for p, ok in (("weights", self.weights), ("onnx", self.onnx),
                                ("tensorrt", self.engine)) if ok]
        return f"{self.path} ({self.kind}; has {', '.join(have) or 'nothing'})"


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def _export_files(src: ModelSource, folder: Path) -> None:
    for prec, name in ONNX_FILES.items():
        if (folder / name).is_file():
            src.onnx[prec] = folder / name
    if (folder / ENGINE_FILE).is_file():
        src.engine = folder / ENGINE_FILE


def _from_run(path: Path, given: Path) -> ModelSource:
    src = ModelSource(path=given, kind="run", config=load_config(path), run_dir=path)
    src.weights = next((path / w for w in WEIGHT_FILES if (path / w).is_file()), None)
    _export_files(src, path / EXPORT_DIR)
    return src


def read_sidecar(engine_path: Path) -> dict:
    side = sidecar_path(engine_path)
    if not side.is_file():
        raise UserError(f"{engine_path}: no sidecar {side.name} beside it (TensorRT version "
                        "and GPU unknown); rebuild with `lkmseg export RUN --trt`")
    try:
        d = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{side}: unreadable sidecar ({type(e).__name__}); "
                        "rebuild with `lkmseg export RUN --trt`") from e
    if not isinstance(d, dict) or "tensorrt_version" not in d:
        raise UserError(f"{side}: not an lkmseg engine sidecar; rebuild with "
                        "`lkmseg export RUN --trt`")
    return d


def _config_from_sidecar(engine: Path) -> RunConfig:
    side = sidecar_path(engine)
    try:
        return RunConfig.from_dict(read_sidecar(engine)["run_config"])
    except (KeyError, TypeError) as e:
        raise UserError(f"{side}: sidecar has no usable run_config ({type(e).__name__}); "
                        "rebuild with `lkmseg export RUN --trt`") from e


def resolve_model(path: str | Path) -> ModelSource:
    """Resolve a run folder, an export folder, an .onnx, a TensorRT engine or .safetensors."""
    from lkmseg.export.onnx_export import config_from_metadata, read_metadata

    p = Path(path)
    if p.is_dir():
        if (p / "config.json").is_file():
            return _from_run(p, p)
        if (p.parent / "config.json").is_file() and p.name == EXPORT_DIR:
            return _from_run(p.parent, p)
        if (p / ONNX_FILES["fp32"]).is_file() or (p / ONNX_FILES["fp16"]).is_file():
            src = ModelSource(path=p, kind="export", config=RunConfig())
            _export_files(src, p)
            first = next(iter(src.onnx.values()))
            src.config = config_from_metadata(read_metadata(first), first)
            return src
        raise UserError(f"{p}: neither a run folder (config.json) nor an export folder "
                        "(model.onnx); pass one made by `lkmseg train` / `lkmseg export`")
    if not p.exists():
        raise UserError(f"{p}: not found; pass a run folder or a model file "
                        "(.onnx, .engine, .safetensors)")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        meta = read_metadata(p)
        return ModelSource(path=p, kind="onnx", config=config_from_metadata(meta, p),
                           onnx={meta.get("precision", "fp32"): p})
    if suffix in ENGINE_EXTS:
        return ModelSource(path=p, kind="tensorrt", config=_config_from_sidecar(p), engine=p)
    if suffix == ".safetensors":
        return ModelSource(path=p, kind="weights", config=load_config(p.parent),
                           run_dir=p.parent, weights=p)
    raise UserError(f"{p}: unknown model file type '{suffix}'; pass a run folder, .onnx, "
                    ".engine or .safetensors")
