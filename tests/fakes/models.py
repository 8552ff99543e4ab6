"""Tiny ONNX graphs with the U-Net's interface, (B, 3, H, W) -> (B, 1, H, W), for the fakes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WEIGHTS = np.array([0.2, 0.3, 0.5], np.float32).reshape(1, 3, 1, 1)
BIAS = np.array([0.1], np.float32)


def reference(x: np.ndarray) -> np.ndarray:
    """What the graphs compute: a 1x1 convolution to one channel."""
    return (x * WEIGHTS).sum(1, keepdims=True) + BIAS[0]


def tiny_onnx(path: Path, fp16: bool = False, static: tuple[int, int, int] | None = None,
              fp16_output: bool = False, ir_version: int = 8) -> Path:
    """fp16: fp16 weights and compute between fp32 casts (like model.fp16.onnx);
    fp16_output: the output stays fp16; static: (B, H, W) fixed, else symbolic dims."""
    dims = list(static) if static else ["batch", "height", "width"]
    shape_in = [dims[0], 3, dims[1], dims[2]]
    shape_out = [dims[0], 1, dims[1], dims[2]]
    half = fp16 or fp16_output
    dt = np.float16 if half else np.float32
    inits = [numpy_helper.from_array(WEIGHTS.astype(dt), "w"),
             numpy_helper.from_array(BIAS.astype(dt), "b")]
    nodes, x = [], "image"
    if half:
        nodes.append(helper.make_node("Cast", ["image"], ["x16"], to=TensorProto.FLOAT16))
        x = "x16"
    y = "y16" if fp16 and not fp16_output else "logits"
    nodes.append(helper.make_node("Conv", [x, "w", "b"], [y]))
    if fp16 and not fp16_output:
        nodes.append(helper.make_node("Cast", ["y16"], ["logits"], to=TensorProto.FLOAT))
    out_type = TensorProto.FLOAT16 if fp16_output else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape_in)],
        [helper.make_tensor_value_info("logits", out_type, shape_out)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = ir_version
    onnx.save(model, str(path))
    return Path(path)
