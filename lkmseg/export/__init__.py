"""Export: ONNX (fp32 + fp16), TensorRT engines, and parity against PyTorch.

Public API::

    export_run(run_dir, ExportOptions(...), strict=True) -> ExportResult   # lkmseg export
    export_onnx(model, cfg, dynamic=True, size=None, batch=1, opset=18) -> onnx.ModelProto
    convert_fp16(model_proto) -> onnx.ModelProto
    read_metadata(path) -> dict[str, str]; config_from_metadata(meta) -> RunConfig
    build_engine(onnx_fp32, engine_path, shapes, precision=..., onnx_fp16=...) -> sidecar dict
    profile_shapes(size, batch, dynamic, max_batch) -> ProfileShapes
"""

from lkmseg.engines.tensorrt_runtime import ProfileShapes, require_tensorrt, tensorrt_status
from lkmseg.export.onnx_export import convert_fp16, export_onnx
from lkmseg.export.pipeline import ExportOptions, ExportResult, export_run
from lkmseg.export.tensorrt_build import build_engine, profile_shapes
from lkmseg.files.onnx_meta import (
    MARKER,
    config_from_metadata,
    load_onnx,
    read_metadata,
    save_onnx,
)
from lkmseg.files.sidecar import check_compatible

__all__ = ["MARKER", "ExportOptions", "ExportResult", "ProfileShapes", "build_engine",
           "check_compatible", "config_from_metadata", "convert_fp16", "export_onnx",
           "export_run", "load_onnx", "profile_shapes", "read_metadata", "require_tensorrt",
           "save_onnx", "tensorrt_status"]

from lkmseg._callable import callable_package  # noqa: E402

callable_package(__name__)  # lkmseg.export(...) calls lkmseg.api.export
