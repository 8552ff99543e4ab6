"""Which engine x precision rows a bench has, and why a row did not run.

A row's status is one of:

- ``ok``
- ``skipped: <why it cannot run here>``: the engine or precision is not available on this
  machine (no GPU, no native bf16, runtime not installed) or its model file is absent
- ``failed: <why>``: a model file is present but fails to load or run (``kind`` "file": bench
  exits 2), or the row misses its accuracy gate — at export (a rejected INT8 model) or in the
  bench's own Dice (``kind`` "gate": bench exits 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lkmseg.files.export_report import gate_verdict, read_report, varies
from lkmseg.files.layout import ENGINE_FILE, EXPORT_DIR, ONNX_FILES, WEIGHT_FILES

REJECTED = "model.int8.rejected.onnx"  # written by export when INT8 misses its gate

# engine -> precisions with a row (tensorrt: one engine file per precision)
ENGINE_PRECISIONS = {"torch": ["fp32", "bf16", "fp16"],
                     "onnxruntime": ["fp32", "fp16", "int8"],
                     "openvino": ["fp32", "bf16", "int8"],
                     "tensorrt": ["fp32", "fp16", "int8"]}


@dataclass
class Verdict:
    status: str  # "ok" | "skipped: ..." | "failed: ..."
    kind: str | None = None  # failed rows: "file" | "gate"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def skipped(why: str) -> Verdict:
    return Verdict(f"skipped: {why}")


def failed(why: str, kind: str) -> Verdict:
    return Verdict(f"failed: {why}", kind)


def combos(engines: list[str], device: str, tf32: bool = False) -> list[tuple[str, str]]:
    """(engine, precision) rows, torch fp32 first (the reference for mask agreement);
    ``tf32`` adds a torch row with TF32 math on (a CUDA mode: skipped with the reason
    elsewhere)."""
    out = []
    for eng in engines:
        for prec in ENGINE_PRECISIONS[eng] + (["tf32"] if tf32 and eng == "torch" else []):
            if eng == "torch" and prec == "fp16" and device != "cuda":
                continue  # fp16 autocast is a GPU path; on CPUs bf16 is the reduced precision
            out.append((eng, prec))
    return sorted(out, key=lambda c: c != ("torch", "fp32"))


def model_file(run: Path, eng: str, prec: str) -> Path:
    """The file a row reads."""
    ex = run / EXPORT_DIR
    if eng == "torch":
        return next((run / w for w in WEIGHT_FILES if (run / w).is_file()), run / WEIGHT_FILES[0])
    if eng == "tensorrt":
        return ex / ENGINE_FILE
    if eng == "onnxruntime":
        return ex / ONNX_FILES[prec]
    return ex / ONNX_FILES["int8" if prec == "int8" else "fp32"]  # openvino


def _absent(run: Path, path: Path, prec: str) -> Verdict:
    ex = run / EXPORT_DIR
    if prec == "int8" and (ex / REJECTED).is_file():
        ok, why = gate_verdict(read_report(ex), "onnxruntime", "int8")
        return failed(f"export rejected INT8 (accuracy gate missed: {why}); "
                      f"{REJECTED} kept for inspection", "gate")
    how = ("train it with `lkmseg train`" if path.suffix == ".safetensors" else
           "build it with `lkmseg export RUN --trt`" if path.name == ENGINE_FILE else
           "export it with `lkmseg export RUN`" + (" (without --no-int8)" if prec == "int8"
                                                    else ""))
    return skipped(f"no {path.name} in {path.parent}; {how}")


def _tensorrt_precision(path: Path, prec: str) -> Verdict | None:
    from lkmseg.errors import UserError
    from lkmseg.files.sidecar import read_sidecar

    try:
        built = read_sidecar(path).get("precision", "fp32")
    except UserError as e:
        return failed(str(e), "file")
    if built != prec:
        return skipped(f"{path.name} was built for {built}; for {prec} rebuild with "
                       f"`lkmseg export RUN --trt --trt-precision {prec}`")
    return None


def before_loading(run: Path, eng: str, prec: str, device: str) -> Verdict:
    """Available here, model file present, and not rejected by export's accuracy gate?"""
    from lkmseg.engines.factory import engine_class

    ok, why = engine_class(eng).available(prec, device)
    if not ok:
        return skipped(why)
    if eng == "torch" and prec == "bf16":
        from lkmseg import hw

        if not hw.native_bf16(device):
            return skipped(f"torch bf16 not measured: {hw.why_not_bf16(device)}")
    path = model_file(run, eng, prec)
    if not path.is_file():
        return _absent(run, path, prec)
    if eng == "tensorrt":
        return _tensorrt_precision(path, prec) or Verdict("ok")
    report = read_report(run / EXPORT_DIR)
    why = varies(report, eng, prec)
    if why is not None:
        # a property of this runtime on this machine, not of the file: not timed, and no
        # run of bench fails for it (export's gate table and auto say the same)
        return skipped(f"{eng} {prec}: {why}")
    if prec in ("bf16", "int8"):
        gate = (report or {}).get("accuracy_gate", {}).get("candidates", {})
        if f"{eng}/{prec}" in gate:
            passed, why = gate_verdict(report, eng, prec)
            if not passed:
                return failed(f"missed export's accuracy gate ({why})", "gate")
    return Verdict("ok")


def dice_gate(dice: float | None, ref: float | None, prec: str, tol: float) -> Verdict:
    """A reduced-precision row whose Dice (vs ground truth) falls more than ``tol`` below
    fp32's on the bench images misses the gate."""
    if prec in ("fp32", "engine") or dice is None or ref is None or dice >= ref - tol:
        return Verdict("ok")
    return failed(f"accuracy gate: Dice {dice:.4f} is {ref - dice:.4f} below fp32's "
                  f"{ref:.4f} (gate {tol})", "gate")
