"""OpenVINO on the CPU: fp32, bf16 (where the CPU has it natively) and int8 (the QDQ file).

Reads the exported ONNX files directly (no IR conversion step):

- ``fp32``  model.onnx with ``INFERENCE_PRECISION_HINT=f32`` (OpenVINO's own default on AMX
  CPUs is bf16: we ask for f32 explicitly so "fp32" means fp32)
- ``bf16``  model.onnx with ``INFERENCE_PRECISION_HINT=bf16``; offered only where the CPU runs
  bf16 natively (AVX512-BF16 or AMX-BF16), as both OpenVINO and the CPU flags must say
- ``int8``  model.int8.onnx, ONNX Runtime's QDQ model made by ``lkmseg export``: OpenVINO's
  low-precision transformations turn the Q/DQ pairs into int8 convolutions (VNNI/AMX)

One compiled model per input shape (compiling is what makes OpenVINO fast: static shapes),
``PERFORMANCE_HINT=LATENCY`` for batch 1 and ``THROUGHPUT`` for larger batches (the batch's
images then run as parallel single-image requests on the CPU's streams), and
``INFERENCE_NUM_THREADS`` = physical cores.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from lkmseg.engines.base import Engine, to_numpy
from lkmseg.engines.source import ModelSource
from lkmseg.errors import UserError
from lkmseg.hw import cpu_bf16, cpu_int8

OV_PRECISIONS = ("fp32", "bf16", "int8")
FILE_FOR = {"fp32": "fp32", "bf16": "fp32", "int8": "int8"}  # precision -> ONNX file key
HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the float remainder in f32
INSTALL = "pip install openvino (x86-64: scripts/setup.sh installs it)"


@functools.cache
def _core() -> Any:
    """One OpenVINO Core per process (plugins are loaded once and shared)."""
    import openvino as ov

    return ov.Core()


def _installed() -> tuple[bool, str]:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False, f"OpenVINO is not installed: {INSTALL}"
    return True, "openvino"


@functools.cache
def capabilities() -> frozenset[str]:
    """OpenVINO's view of the CPU: e.g. {'FP32', 'BF16', 'INT8', ...}."""
    return frozenset(_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def bf16_status() -> tuple[bool, str]:
    flags = cpu_bf16()
    if "BF16" not in capabilities() or flags is False:
        return False, "no AVX512-BF16/AMX on this CPU (bf16 would be emulated: use fp32 or int8)"
    return True, "native bf16 (AVX512-BF16/AMX)"


class OpenVinoEngine(Engine):
    name = "openvino"

    def __init__(self, path: str | Path, precision: str = "fp32", device: str = "cpu",
                 threads: int | None = None) -> None:
        from lkmseg.files.onnx_meta import config_from_metadata, load_onnx, read_metadata
        from lkmseg.hw import physical_cores

        super().__init__()
        ok, why = self.available(precision, device)
        if not ok:
            raise UserError(f"openvino engine: {why}")
        self.path, self.precision = Path(path), precision
        meta = read_metadata(self.path, load_onnx(self.path))
        self.config = config_from_metadata(meta, self.path)
        want = FILE_FOR[precision]
        if meta.get("precision", "fp32") != want:
            from lkmseg.files.layout import ONNX_FILES

            raise UserError(f"{self.path}: a {meta.get('precision')} model, openvino {precision} "
                            f"reads the {want} export; pass {ONNX_FILES[want]}")
        try:
            self.model = _core().read_model(str(self.path))
        except RuntimeError as e:
            raise UserError(f"{self.path}: OpenVINO cannot read this model "
                            f"({_first_line(e)}); re-export it with `lkmseg export RUN`") from e
        self.threads = threads or physical_cores()
        self._compiled: dict[tuple[int, ...], Any] = {}
        self.detail = f"CPU, {HINT[precision]} compute, {self.threads} threads"
        shape = self._check_io()
        if shape[2].is_static and shape[3].is_static:
            self.fixed_hw = (shape[2].get_length(), shape[3].get_length())

    def _check_io(self) -> Any:
        """UserError unless the model maps (B, 3, H, W) -> (B, 1, H, W); returns the input's
        partial shape."""
        def dims(ps: Any) -> list:
            if ps.rank.is_dynamic:
                return ["?"]
            return [d.get_length() if d.is_static else "?" for d in ps]

        inp = self.model.input(0).get_partial_shape()
        out = self.model.output(0).get_partial_shape()
        i, o = dims(inp), dims(out)
        if len(i) != 4 or i[1] != 3 or len(o) != 4 or o[1] != 1:
            raise UserError(f"{self.path}: model maps {i} -> {o}, not an lkmseg U-Net "
                            "(B, 3, H, W) -> (B, 1, H, W); re-export it with `lkmseg export RUN`")
        return inp

    @classmethod
    def from_source(cls, src: ModelSource, precision: str = "fp32", device: str = "auto",
                    threads: int | None = None) -> OpenVinoEngine:
        key = FILE_FOR.get(precision)
        path = src.onnx.get(key) if key else None
        if path is None:
            have = ", ".join(src.onnx) or "none"
            raise UserError(f"{src.path}: no {key or precision} ONNX model for openvino "
                            f"{precision} (have: {have}); export it with `lkmseg export RUN`")
        return cls(path, precision=precision, device="cpu", threads=threads)

    @classmethod
    def available(cls, precision: str = "fp32", device: str = "auto") -> tuple[bool, str]:
        if precision not in OV_PRECISIONS:
            return False, f"openvino runs {', '.join(OV_PRECISIONS)}, not {precision}"
        if device not in ("auto", "cpu"):
            return False, "the openvino engine runs on the CPU only; use --device cpu"
        ok, why = _installed()
        if not ok:
            return ok, why
        if precision == "bf16":
            return bf16_status()
        if precision == "int8":
            fast = cpu_int8()
            return True, ("int8 with VNNI/AMX" if fast or fast is None else
                          "int8 without VNNI/AMX: runs, but not faster than fp32")
        return True, "openvino CPU fp32"

    def _compile(self, shape: tuple[int, ...]) -> Any:
        """Compile (once) for ``shape``: latency mode for one image, throughput for a batch."""
        import openvino as ov

        per_request = (1, *shape[1:])
        key = shape if shape[0] == 1 else ("batch", *per_request)
        if key in self._compiled:
            return self._compiled[key]
        model = self.model.clone()
        model.reshape({model.input(0).get_any_name(): ov.PartialShape(list(per_request))})
        mode = "LATENCY" if shape[0] == 1 else "THROUGHPUT"
        compiled = _core().compile_model(model, "CPU", {
            "PERFORMANCE_HINT": mode, "INFERENCE_NUM_THREADS": self.threads,
            "INFERENCE_PRECISION_HINT": HINT[self.precision]})
        if shape[0] == 1:
            runner = compiled.create_infer_request()
        else:
            jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            runner = ov.AsyncInferQueue(compiled, max(1, jobs))
        self._compiled[key] = runner
        return runner

    def _run(self, x: Any) -> np.ndarray:
        x = to_numpy(x)
        if self.fixed_hw is not None and tuple(x.shape[2:]) != self.fixed_hw:
            h, w = self.fixed_hw
            raise UserError(f"{self.path.name} was exported with --static for {h}x{w} inputs, "
                            f"got {x.shape[2]}x{x.shape[3]}; re-export with --dynamic")
        runner = self._compile(tuple(x.shape))
        if x.shape[0] == 1:
            runner.infer({0: x})
            return runner.get_output_tensor(0).data.copy()
        out: list[np.ndarray | None] = [None] * x.shape[0]

        def done(request: Any, i: int) -> None:
            out[i] = request.get_output_tensor(0).data.copy()

        runner.set_callback(done)
        for i in range(x.shape[0]):
            runner.start_async({0: x[i : i + 1]}, i)
        runner.wait_all()
        return np.concatenate(out)

    def close(self) -> None:
        self._compiled.clear()
        self.model = None


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("Exception from")]
    return ((useful or lines or [type(e).__name__])[0])[:200]
