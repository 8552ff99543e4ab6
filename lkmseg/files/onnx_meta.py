"""The lkmseg metadata stored in every exported ONNX file, and reading/writing those files.

Every exported file is tagged with ``metadata_props`` (``lkmseg_export=1``, block, kernel,
training size, normalization, threshold, versions, precision, the run config) from which the
engines rebuild the pre/post-processing without the run folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lkmseg import __version__
from lkmseg.config import RunConfig
from lkmseg.errors import UserError
from lkmseg.fsutil import write_bytes

if TYPE_CHECKING:
    import onnx

MARKER = "lkmseg_export"
INPUT_NAME, OUTPUT_NAME = "image", "logits"


def build_metadata(cfg: RunConfig, precision: str, dynamic: bool, opset: int,
                   input_shape: tuple[int, ...] | None = None,
                   training_size: tuple[int, int] | None = None) -> dict[str, str]:
    """The metadata_props stored in every exported ONNX file (all values are strings).

    ``size`` (and ``run_config.size``) is the size inputs are preprocessed to: the training
    size, or the fixed size of a --static export made at another --size.
    """
    import torch

    spec = cfg.model.spec
    run = cfg.to_dict()
    run["data"] = {k: v for k, v in run.get("data", {}).items() if k != "val_items"}
    return {
        MARKER: "1",
        "lkmseg_version": __version__,
        "torch_version": torch.__version__,
        "opset": str(opset),
        "precision": precision,
        "dynamic": "1" if dynamic else "0",
        "block": spec.name,
        "family": spec.family,
        "kernel": str(spec.kernel),
        "width": str(cfg.model.width),
        "depth": str(cfg.model.depth),
        "size": json.dumps(list(cfg.size)),
        "training_size": json.dumps(list(training_size or cfg.size)),
        "input_shape": json.dumps(list(input_shape) if input_shape else
                                  ["batch", 3, "height", "width"]),
        "threshold": repr(float(cfg.threshold)),
        "normalization": json.dumps(cfg.normalization, sort_keys=True),
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "run_config": json.dumps(run, sort_keys=True),
    }


def set_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = k, v
    model.producer_name, model.producer_version = "lkmseg", __version__
    model.doc_string = (f"lkmseg U-Net ({meta.get('block')}, width {meta.get('width')}, "
                        f"depth {meta.get('depth')}): image float32 (B,3,H,W) in [0,1] -> "
                        "logits float32 (B,1,H,W)")


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load an ONNX file; a missing, truncated or non-ONNX file is a UserError."""
    import onnx
    from google.protobuf.message import DecodeError

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: ONNX file not found; export one with `lkmseg export RUN`")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as e:
        raise UserError(f"{p}: corrupt or not an ONNX file ({type(e).__name__}); "
                        "re-export it with `lkmseg export RUN`") from e
    if not model.graph.node:
        raise UserError(f"{p}: not a usable ONNX model (empty graph); "
                        "re-export it with `lkmseg export RUN`")
    external = [t for t in _tensors(model.graph) if t.data_location == t.EXTERNAL]
    if external:  # ONNX Runtime would resolve them against the working folder, not the file's
        where = next((e.value for e in external[0].external_data if e.key == "location"), "?")
        raise UserError(f"{p}: {len(external)} tensor(s) stored outside the file (external "
                        f"data, e.g. {where!r}), which lkmseg never writes nor loads; "
                        "re-export it with `lkmseg export RUN`")
    return model


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of a graph: initializers, sparse ones, and node attributes (subgraphs too)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(sub)


def read_metadata(path: str | Path, model: onnx.ModelProto | None = None) -> dict[str, str]:
    """The lkmseg metadata of an ONNX file; UserError if it is not an lkmseg export."""
    model = model if model is not None else load_onnx(path)
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get(MARKER) != "1":
        raise UserError(f"{path}: not an lkmseg export (no '{MARKER}' metadata), so its "
                        "preprocessing is unknown; export the model with `lkmseg export RUN`")
    return meta


def config_from_metadata(meta: dict[str, str], where: str | Path = "model") -> RunConfig:
    """Rebuild the RunConfig (model, size, threshold, normalization) from export metadata."""
    try:
        return RunConfig.from_dict(json.loads(meta["run_config"]))
    except (KeyError, json.JSONDecodeError, UserError) as e:
        raise UserError(f"{where}: lkmseg metadata is incomplete ({e}); "
                        "re-export it with `lkmseg export RUN`") from e


def save_onnx(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write atomically as one self-contained file."""
    write_bytes(path, model.SerializeToString())
    return Path(path)
