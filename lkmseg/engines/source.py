"""What ``RUN|MODEL_FILE`` points at: a run folder, an export folder, or one model file.

Every form resolves to the model's RunConfig (for preprocessing and the threshold) and the
model files available for each runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lkmseg.config import RunConfig, load_config
from lkmseg.errors import UserError
from lkmseg.files.layout import (
    CONFIG,
    ENGINE_EXTS,
    ENGINE_FILE,
    EXPORT_DIR,
    ONNX_FILES,
    WEIGHT_FILES,
)
from lkmseg.files.onnx_meta import config_from_metadata, read_metadata
from lkmseg.files.sidecar import config_from_sidecar


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


def resolve_model(path: str | Path) -> ModelSource:
    """Resolve a run folder, an export folder, an .onnx, a TensorRT engine or .safetensors."""
    p = Path(path)
    if p.is_dir():
        if (p / CONFIG).is_file():
            return _from_run(p, p)
        if (p.parent / CONFIG).is_file() and p.name == EXPORT_DIR:
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
        return ModelSource(path=p, kind="tensorrt", config=config_from_sidecar(p), engine=p)
    if suffix == ".safetensors":
        return ModelSource(path=p, kind="weights", config=load_config(p.parent),
                           run_dir=p.parent, weights=p)
    raise UserError(f"{p}: unknown model file type '{suffix}'; pass a run folder, .onnx, "
                    ".engine or .safetensors")
