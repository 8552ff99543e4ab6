"""Minimal reproducer: OpenVINO's CPU INT8 convolution with a (k, 1) kernel gives different,
wrong outputs each time the model is compiled, on a CPU with AMX.

Found 2026-11-26 by lkmseg's export gate (two loads of a 1x5 U-Net's INT8 file disagreed; the
faulty layers are the 5x1 convolutions after the 1x5 ones) on Intel Xeon family 6 model 207
(AMX-INT8), OpenVINO 2026.4.1 (oneDNN 3.13), ONNX Runtime 1.32: one QDQ Conv 8->8, kernel (5, 1),
padding (2, 0), input with a non-zero uint8 zero-point; only the top padded output rows are
wrong, and they change with every ``compile_model`` (uninitialised padding zero-point
compensation in oneDNN's ``brg_conv_fwd:avx10_1_512_amx``, it seems). Measured triggers: kernel
k x 1 with k = 3, 5, 7 (not 9..15 x 1, 1 x k or square), 4, 8 or 12 input channels, padding along
H, a non-zero source zero-point. ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI`` (no AMX) or a symmetric
int8 activation quantisation avoids it; no OpenVINO property does.

    python benchmarks/openvino_int8_kx1_repro.py [--kernel 5x1] [--cin 8] [--compiles 5]

Prints the convolution primitive, the spread of the outputs across compiles (0 = reproducible)
and each compile's largest difference from ONNX Runtime on the same QDQ file.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openvino as ov
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from lkmseg.hw import cpu_model, describe_isa


class _Reader(CalibrationDataReader):
    def __init__(self, shape: tuple[int, ...], shift: float) -> None:
        rng = np.random.default_rng(0)
        self.batches = iter([{"x": rng.random(shape, dtype=np.float32) - np.float32(shift)}
                             for _ in range(4)])

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel", default="5x1", help="KHxKW")
    ap.add_argument("--cin", type=int, default=8, help="input = output channels")
    ap.add_argument("--hw", type=int, default=16)
    ap.add_argument("--shift", type=float, default=0.5,
                    help="inputs in [-shift, 1-shift): 0 gives a zero zero-point (no bug)")
    ap.add_argument("--compiles", type=int, default=5)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    kh, kw = map(int, a.kernel.split("x"))
    torch.manual_seed(0)
    net = torch.nn.Conv2d(a.cin, a.cin, (kh, kw), padding=(kh // 2, kw // 2)).eval()
    shape = (1, a.cin, a.hw, a.hw)
    tmp = Path(tempfile.mkdtemp(prefix="ov_kx1_"))
    fp, qp = tmp / "f.onnx", tmp / "q.onnx"
    torch.onnx.export(net, (torch.rand(*shape),), str(fp), input_names=["x"],
                      output_names=["y"], opset_version=17, dynamo=False)
    quantize_static(str(fp), str(qp), _Reader(shape, a.shift), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8,
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    x = np.random.default_rng(1).random(shape, dtype=np.float32) - np.float32(a.shift)
    ref = ort.InferenceSession(str(qp), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    core = ov.Core()
    model = core.read_model(str(qp))
    outs, prims = [], []
    for _ in range(a.compiles):
        cm = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                               "INFERENCE_NUM_THREADS": 2,
                                               "INFERENCE_PRECISION_HINT": "f32"})
        outs.append(cm.create_infer_request().infer({0: x})[cm.output(0)].copy())
        prims = [op.get_rt_info()["primitiveType"].astype(str)
                 for op in cm.get_runtime_model().get_ordered_ops()
                 if op.get_rt_info()["layerType"].astype(str) == "Convolution"]
    o = np.stack(outs)
    spread = float((o.max(0) - o.min(0)).max())
    rows = sorted(set(np.where(np.abs(o - ref).max(axis=(0, 1, 2, 4)) > 0.02)[0].tolist()))
    print(f"{cpu_model()} ({describe_isa()}); openvino {ov.__version__}, "
          f"onnxruntime {ort.__version__}")
    print(f"Conv {a.cin}->{a.cin} kernel {a.kernel}, input {shape}, primitive {prims}")
    print(f"spread across {a.compiles} compiles: {spread:.4f} (0 = reproducible); max abs vs "
          f"ONNX Runtime per compile: {' '.join(f'{float(np.abs(v - ref).max()):.3f}' for v in o)}"
          f"; output rows off by > 0.02: {rows}")


if __name__ == "__main__":
    main()
