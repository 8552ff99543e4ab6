"""The machine's dense-matmul peak for each precision, measured in the bench run itself.

A row's ``frac_of_peak`` is its achieved GFLOP/s over the peak *for its precision*: fp32,
bf16 and int8 matmuls run on different units (AVX-512 FMA, AVX512-BF16/AMX-BF16, VNNI/AMX-INT8)
whose ceilings differ by up to an order of magnitude. Each peak is the best of what the
installed libraries achieve on a large square matmul: PyTorch (``torch.mm`` fp32/bf16,
``torch._int_mm`` int8) and, where installed, OpenVINO (a MatMul, and a QDQ int8 MatMul, the
same path OpenVINO's int8 convolutions take).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from lkmseg.bench.measure import matmul_peak_gflops


def _best_rate(fn: Callable[[], object], flops: float, seconds: float) -> float:
    fn()
    best, t_end = 0.0, time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        fn()
        best = max(best, flops / (time.perf_counter() - t0) / 1e9)
        if time.perf_counter() > t_end:
            return best


def torch_int8_peak(n: int = 2048, seconds: float = 1.0) -> float | None:
    if not hasattr(torch, "_int_mm"):
        return None
    a = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    b = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    try:
        return _best_rate(lambda: torch._int_mm(a, b), 2 * n**3, seconds)
    except RuntimeError:  # no CPU kernel in this torch build
        return None


def _matmul_onnx(n: int, int8: bool) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    if int8:
        inits = [numpy_helper.from_array((w * 10).clip(-127, 127).astype(np.int8), "wq"),
                 numpy_helper.from_array(np.array(0.1, np.float32), "ws"),
                 numpy_helper.from_array(np.array(0, np.int8), "wz"),
                 numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
                 numpy_helper.from_array(np.array(128, np.uint8), "xz")]
        nodes = [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"]),
                 helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
                 helper.make_node("MatMul", ["xd", "w"], ["y"])]
    else:
        inits, nodes = [numpy_helper.from_array(w, "w")], [helper.make_node("MatMul",
                                                                          ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "matmul", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [n, n])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [n, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model.SerializeToString()


def openvino_peak(precision: str, threads: int, n: int = 2048,
                  seconds: float = 1.0) -> float | None:
    """OpenVINO's GFLOP/s (GOP/s for int8) on an n x n MatMul in ``precision``."""
    from lkmseg.engines.openvino_engine import HINT, OpenVinoEngine, _core

    if not OpenVinoEngine.available(precision, "cpu")[0]:
        return None
    model = _core().read_model(_matmul_onnx(n, precision == "int8"), b"")
    compiled = _core().compile_model(model, "CPU", {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": HINT[precision]})
    req = compiled.create_infer_request()
    x = np.random.default_rng(1).random((n, n), dtype=np.float32)
    return _best_rate(lambda: req.infer({0: x}), 2 * n**3, seconds)


def _best(*vals: float | None) -> float | None:
    have = [v for v in vals if v]
    return round(max(have), 1) if have else None


def measure_peaks(device: str, engines: list[str], threads: int) -> dict[str, float | None]:
    """{'fp32': ..., 'bf16': ..., 'int8': ..., 'fp16': ...} GFLOP/s; None = not measurable
    here (e.g. bf16 where the CPU emulates it: no peak, no fraction)."""
    if device == "cuda":
        return {"fp32": _best(matmul_peak_gflops(device)),
                "fp16": _best(matmul_peak_gflops(device, dtype=torch.float16)),
                "bf16": _best(matmul_peak_gflops(device, dtype=torch.bfloat16)),
                "int8": None}
    from lkmseg.hw import cpu_bf16

    ov = "openvino" in engines and _openvino_installed()
    bf16 = cpu_bf16() is not False
    secs = 1.0  # the best rate in a second: a busy machine needs a window to show its peak
    return {"fp32": _best(matmul_peak_gflops(device, seconds=secs),
                          openvino_peak("fp32", threads) if ov else None),
            "bf16": _best(matmul_peak_gflops(device, dtype=torch.bfloat16, seconds=secs)
                          if bf16 else None,
                          openvino_peak("bf16", threads) if ov else None),
            "int8": _best(torch_int8_peak(), openvino_peak("int8", threads) if ov else None),
            "fp16": None}


def _openvino_installed() -> bool:
    from lkmseg.engines.openvino_engine import _installed

    return _installed()[0]


def peak_for(peaks: dict[str, float | None], precision: str, device: str) -> float | None:
    """The peak a row is compared with: its own precision's; ONNX Runtime fp16 on a CPU
    computes through fp32, so it is compared with the fp32 peak."""
    if precision == "fp16" and device != "cuda":
        return peaks.get("fp32")
    return peaks.get(precision) or (peaks.get("fp32") if precision == "engine" else None)
