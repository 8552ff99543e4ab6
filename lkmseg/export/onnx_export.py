"""PyTorch -> ONNX (fp32) with the dynamo exporter, and ONNX fp32 -> fp16 (fp32 I/O).

Every exported file is self-contained (no external data), simplified with onnxslim, checked
with ``onnx.checker`` and tagged with metadata (``lkmseg_export=1``, block, kernel, training
size, normalization, threshold, versions, the run config) from which engines rebuild the
pre/post-processing without the run folder.

The U-Net pads its input to a multiple of 2**depth inside ``forward`` and crops the logits
back; torch.export traces that with symbolic sizes (Mod/Pad/Slice in the graph), so one
ONNX file serves any batch, height and width.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from typing import TYPE_CHECKING

from lkmseg.config import RunConfig
from lkmseg.errors import UserError
from lkmseg.files.onnx_meta import (
    INPUT_NAME,
    OUTPUT_NAME,
    build_metadata,
    set_metadata,
)

if TYPE_CHECKING:
    import onnx
    from torch import nn

MIN_OPSET = 18  # the dynamo exporter's lowest supported opset
MAX_SIDE, MAX_BATCH = 16384, 4096


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's progress lines and known-harmless warnings."""
    names = ("torch.onnx", "torch.export", "torch._export", "torch.fx.experimental.symbolic_shapes",
             "onnxscript")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _dynamic_shapes(dynamic: bool):
    if not dynamic:
        return None
    from torch.export import Dim

    return ({0: Dim("batch", min=1, max=MAX_BATCH), 2: Dim("height", min=1, max=MAX_SIDE),
             3: Dim("width", min=1, max=MAX_SIDE)},)


def _name_io_dims(model: onnx.ModelProto, dynamic: bool, shape: tuple[int, ...]) -> None:
    """Give the output the input's symbolic dims (the exporter writes a Min/Mod expression)."""
    dims = ("batch", 1, "height", "width") if dynamic else (shape[0], 1, shape[2], shape[3])
    in_dims = (dims[0], 3, dims[2], dims[3])
    for vi, d in ((model.graph.input[0], in_dims), (model.graph.output[0], dims)):
        for proto_dim, value in zip(vi.type.tensor_type.shape.dim, d):
            if isinstance(value, str):
                proto_dim.dim_param = value
            else:
                proto_dim.dim_value = value


def _dedupe_value_info(model: onnx.ModelProto) -> None:
    """onnxslim (0.1.98) appends a value_info entry per pass: keep the last one per tensor."""
    last = {vi.name: vi for vi in model.graph.value_info}
    keep = [type(vi)() for vi in last.values()]
    for dst, src in zip(keep, last.values()):
        dst.CopyFrom(src)
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)


def fold_gcn_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose GCN blocks have their BatchNorm folded into both branches.

    The exporter folds BN into the conv right before it, but a GCN block applies BN to the sum
    of two branches: BN(a + b) = s*a + (s*b + t), so the scale goes into each branch's last conv
    and the shift into one of them. Other blocks are left to the exporter.
    """
    import copy

    import torch
    from torch import nn

    from lkmseg.models.blocks import GCNBlock

    model = copy.deepcopy(model).eval()
    for block in model.modules():
        if not isinstance(block, GCNBlock) or isinstance(block.bn, nn.Identity):
            continue
        bn = block.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C,)
        shift = bn.bias - bn.running_mean * scale
        with torch.no_grad():
            for i, branch in enumerate((block.left, block.right)):
                old = branch[-1]
                new = nn.Conv2d(old.in_channels, old.out_channels, old.kernel_size,
                                padding=old.padding, bias=True)
                new.weight.copy_(old.weight * scale[:, None, None, None])
                base = old.bias * scale if old.bias is not None else torch.zeros_like(shift)
                new.bias.copy_(base + (shift if i == 0 else 0))
                branch[-1] = new
        block.bn = nn.Identity()
    return model


def export_onnx(model: nn.Module, cfg: RunConfig, *, dynamic: bool = True,
                size: tuple[int, int] | None = None, batch: int = 1,
                opset: int = MIN_OPSET) -> onnx.ModelProto:
    """Export an eval-mode U-Net to a simplified, checked, tagged fp32 ONNX model (in memory).

    ``size``/``batch`` give the example input (and the fixed shape when ``dynamic=False``);
    a dynamic export accepts any batch, height and width.
    """
    import onnx
    import onnxslim
    import torch

    if opset < MIN_OPSET:
        raise UserError(f"--opset {opset}: the exporter needs opset >= {MIN_OPSET}")
    if opset > onnx.defs.onnx_opset_version():
        raise UserError(f"--opset {opset}: this onnx ({onnx.__version__}) knows opsets up to "
                        f"{onnx.defs.onnx_opset_version()}; choose a lower one")
    h, w = size or cfg.size
    # torch.export specialises sizes 0 and 1: trace a dynamic export with batch >= 2.
    example = torch.rand(max(batch, 2) if dynamic else batch, 3, h, w)
    model = fold_gcn_batchnorm(model.eval())
    # Not guarded: the model comes from a validated run folder, so an exporter failure is a
    # bug (ours or torch's) and keeps its traceback; the note says what to try meanwhile.
    try:
        with _quiet_exporter(), torch.no_grad():
            prog = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                     input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                     dynamic_shapes=_dynamic_shapes(dynamic),
                                     external_data=False, optimize=True, verbose=False)
    except Exception as e:
        e.add_note("lkmseg: the ONNX exporter failed on this model; "
                   + ("`lkmseg export --static` may avoid it; " if dynamic else "")
                   + "please report it with this traceback")
        raise
    proto = onnxslim.slim(prog.model_proto)
    _dedupe_value_info(proto)
    _name_io_dims(proto, dynamic, tuple(example.shape))
    # a static export at another --size must be fed that size: record it as the model's size
    meta_cfg = cfg if dynamic else dataclasses.replace(cfg, size=(h, w))
    set_metadata(proto, build_metadata(meta_cfg, "fp32", dynamic, opset,
                                       None if dynamic else tuple(example.shape), cfg.size))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def convert_fp16(fp32: onnx.ModelProto) -> onnx.ModelProto:
    """FP16 weights and compute with fp32 input/output (Cast at both ends).

    Uses ONNX Runtime's maintained converter (onnxruntime.transformers.float16, the
    onnxconverter-common code), then onnxslim to restore topological order and fold casts.
    Resize's ``scales`` input stays fp32 as the ONNX spec requires.
    """
    import onnx
    import onnxslim
    from onnxruntime.transformers.float16 import convert_float_to_float16

    meta = {p.key: p.value for p in fp32.metadata_props}
    with _quiet_exporter():
        half = convert_float_to_float16(fp32, keep_io_types=True)
    half = onnxslim.slim(half)
    _dedupe_value_info(half)
    dims = [d.dim_param or d.dim_value for d in fp32.graph.output[0].type.tensor_type.shape.dim]
    _name_io_dims(half, meta.get("dynamic") == "1", tuple(d if isinstance(d, int) else 1
                                                          for d in dims))
    meta["precision"] = "fp16"
    set_metadata(half, meta)
    onnx.checker.check_model(half, full_check=True)
    return half


