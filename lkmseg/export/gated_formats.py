"""Export's accuracy gates: every runtime x precision a user could ship, measured against
PyTorch fp32 on held-out images, and the INT8 model made, checked in each runtime that will
run it (ONNX Runtime CPU and OpenVINO), and shipped only inside the gate.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lkmseg.export import accuracy_gate as ag
from lkmseg.export import quantize as q
from lkmseg.files.layout import ONNX_FILES
from lkmseg.hw import cpu_bf16, cpu_int8

REJECTED = "model.int8.rejected.onnx"
CANDIDATE = (".model.int8.candidate.", ".onnx")  # prefix, suffix of a unique temporary name


@dataclass
class GateOptions:
    int8: bool = True
    calib_dir: Path | None = None
    calib_images: int = 16
    tolerance: float = ag.DEFAULT_TOLERANCE
    gate_images: int = 96
    gate_data: Path | None = None  # the gate's images: a dataset (default: the run's val split)


@dataclass
class GateOutcome:
    section: dict
    int8: dict | None = None  # report.json formats["onnx_int8"]
    failures: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def _openvino(path: Path, prec: str):
    from lkmseg.engines.openvino_engine import OpenVinoEngine

    ok, why = OpenVinoEngine.available(prec, "cpu")
    return OpenVinoEngine(path, precision=prec) if ok else why


def _onnxruntime(path: Path, prec: str):
    from lkmseg.engines.onnxruntime_engine import OnnxRuntimeEngine

    return OnnxRuntimeEngine(path, device="cpu")


def float_candidates(files: dict[str, Path], torch_bf16: Callable[[], object] | None):
    """(key, loader) for every float runtime x precision that has a file here."""
    out = []
    if "onnx_fp32" in files:
        f32 = files["onnx_fp32"]
        out += [("onnxruntime/fp32", lambda: _onnxruntime(f32, "fp32")),
                ("openvino/fp32", lambda: _openvino(f32, "fp32")),
                ("openvino/bf16", lambda: _openvino(f32, "bf16"))]
    if "onnx_fp16" in files:
        out.append(("onnxruntime/fp16", lambda: _onnxruntime(files["onnx_fp16"], "fp16")))
    if torch_bf16 is not None and cpu_bf16():
        out.append(("torch/bf16", torch_bf16))
    return out


def _check(gs: ag.GateSet, loader, tol: float) -> dict:
    t0 = time.perf_counter()
    eng = loader()
    if isinstance(eng, str):  # not available here: the reason
        return {"status": "unavailable", "reason": eng, "passed": False}
    with eng, loader() as again:  # a second load: are its answers the same?
        fig = ag.evaluate(eng, gs, tol, second=again)
    fig["seconds"] = round(time.perf_counter() - t0, 1)
    return fig


class PrecisionGates:
    def __init__(self, out: Path, cfg, size: tuple[int, int], opts: GateOptions,
                 log: Callable[[str], None]) -> None:
        self.out, self.cfg, self.size, self.opts, self.log = out, cfg, size, opts, log
        self.gs: ag.GateSet | None = None

    def run(self, files: dict[str, Path], torch_fp32, torch_bf16=None) -> GateOutcome:
        self.gs = ag.gate_set(self.cfg, self.size, self.opts.gate_images)
        self.log(f"accuracy gate: {self.gs.origin}, Dice within {self.opts.tolerance} of fp32")
        ag.set_reference(self.gs, torch_fp32)
        res = GateOutcome(ag.section(self.gs, self.opts.tolerance))
        for key, loader in float_candidates(files, torch_bf16):
            self.log(f"accuracy gate: {key}…")
            res.section["candidates"][key] = _check(self.gs, loader, self.opts.tolerance)
        if self.opts.int8 and "onnx_fp32" in files:
            self.int8(files["onnx_fp32"], res)
        return res

    # ------------------------------------------------------------------ int8
    def int8(self, fp32: Path, res: GateOutcome) -> None:
        pool, origin = q.calibration_paths(self.cfg, self.opts.calib_dir)
        q.first_file(pool)
        reduce_range = cpu_int8() is False
        entry = {"calibration": {"origin": origin, "available": len(pool)}, "attempts": [],
                 "tolerance": self.opts.tolerance, "checked_on": []}
        fd, name = tempfile.mkstemp(prefix=CANDIDATE[0], suffix=CANDIDATE[1], dir=self.out)
        os.close(fd)
        cand, best = Path(name), None
        try:
            for recipe in q.RECIPES:
                attempt = self._attempt(fp32, cand, recipe, pool, reduce_range)
                entry["attempts"].append(attempt)
                if best is None or attempt["worst_delta"] > best[0]["worst_delta"]:
                    best = (attempt, cand.read_bytes())
                if attempt["passed"]:
                    break
            self._finish(entry, best, res)
        finally:
            cand.unlink(missing_ok=True)

    def _attempt(self, fp32: Path, cand: Path, recipe: q.Recipe, pool: list[Path],
                 reduce_range: bool) -> dict:
        t0 = time.perf_counter()
        paths = q.images_for(recipe, pool, self.opts.calib_images)
        self.log(f"int8: {recipe.name} ({len(paths)} calibration images)…")
        made = q.quantize(fp32, cand, recipe, paths, self.size, reduce_range)
        runtimes = {}
        for name, loader in (("onnxruntime", lambda: _onnxruntime(cand, "int8")),
                             ("openvino", lambda: _openvino(cand, "int8"))):
            fig = _check(self.gs, loader, self.opts.tolerance)
            runtimes[name] = fig
            self.log(f"int8 in {name}: {_short(fig)}")
        # a runtime whose answers vary between loads is reported, and never used (auto and
        # serve skip it), but does not decide the file: the others may ship it
        checked = [f for f in runtimes.values() if "dice" in f and f.get("reproducible", True)]
        worst = min((f["delta"] for f in checked), default=float("-inf"))
        return {**made, "runtimes": runtimes, "worst_delta": worst,
                "passed": bool(checked) and all(f["passed"] for f in checked),
                "seconds": round(time.perf_counter() - t0, 1)}

    def _finish(self, entry: dict, best: tuple[dict, bytes], res: GateOutcome) -> None:
        attempt, data = best
        shipped = attempt["passed"]
        name = ONNX_FILES["int8"] if shipped else REJECTED
        from lkmseg.fsutil import write_bytes

        write_bytes(self.out / name, data)
        stale = self.out / (REJECTED if shipped else ONNX_FILES["int8"])
        stale.unlink(missing_ok=True)  # never leave a file engines would load by mistake
        res.files["onnx_int8" if shipped else "onnx_int8_rejected"] = self.out / name
        for rt, fig in attempt["runtimes"].items():
            res.section["candidates"][f"{rt}/int8"] = {**fig, "recipe": attempt["recipe"]}
        checked = {rt: f for rt, f in attempt["runtimes"].items()
                   if "dice" in f and f.get("reproducible", True)}
        entry.update(file=name, mb=round(os.path.getsize(self.out / name) / 1e6, 3),
                     status="shipped" if shipped else "rejected", recipe=attempt["recipe"],
                     checked_on=sorted(checked), passed=shipped,
                     gate_dice=min((f["dice"] for f in checked.values()), default=None),
                     gate_mask_dice_vs_torch=min(
                         (f["mask_dice_vs_torch"] for f in checked.values()), default=None))
        entry["failures"] = [] if shipped else [
            f"INT8 misses the accuracy gate after {len(entry['attempts'])} recipes (best: "
            f"{attempt['recipe']}, Dice {attempt['worst_delta']:+.4f} vs fp32, gate "
            f"-{self.opts.tolerance}); kept as {name}, not shipped; pass --no-int8 to skip INT8"
            if checked else
            f"INT8 not shipped: no runtime here gave the same masks from two loads of the file "
            f"({', '.join(sorted(attempt['runtimes']))}); kept as {name}; pass --no-int8 to "
            "skip INT8"]
        res.int8 = entry
        res.failures += entry["failures"]


def _short(fig: dict) -> str:
    if "dice" not in fig:
        return fig.get("reason", "not checked")
    out = (f"Dice {fig['dice']:.4f} ({fig['delta']:+.4f}), masks vs torch "
           f"{fig['mask_dice_vs_torch']:.4f}, {'pass' if fig['passed'] else 'FAIL'}")
    return out if fig.get("reproducible", True) else f"{out}: {fig['reason']}"
