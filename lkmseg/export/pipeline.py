"""``lkmseg export``: run folder -> ONNX fp32/fp16/int8 (+ TensorRT engine) -> parity and
accuracy-gate report.

Writes into ``RUN/export/``: model.onnx, model.fp16.onnx, model.int8.onnx (static QDQ INT8,
see ``export.quantize``), model.engine + model.engine.json, report.json. Parity against PyTorch
is part of the export: a format that misses its bar is kept on disk (for inspection) but the
export fails with GateFailed (exit 3) naming it; a format that cannot be made here (--trt
without TensorRT or a GPU) is a UserError (exit 2). Reduced precisions (OpenVINO bf16, INT8 in
ONNX Runtime and OpenVINO) are checked by the accuracy gate (``export.gated_formats``); an
INT8 model that misses it is kept as model.int8.rejected.onnx and the export exits 3 too.

The folder is written as one transaction (``export.outputs``): files are made in a staging
folder, moved into place when the export is done, listed in manifest.json, and only then are
the files an earlier export wrote and this one did not rewrite removed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lkmseg import __version__
from lkmseg.engines.tensorrt_runtime import ProfileShapes, current_gpu, tensorrt_status
from lkmseg.errors import GateFailed, LkmsegError, UserError
from lkmseg.export import accuracy_gate, parity
from lkmseg.export.gated_formats import GateOptions, PrecisionGates
from lkmseg.export.onnx_export import MIN_OPSET, convert_fp16, export_onnx
from lkmseg.export.outputs import ExportFolder
from lkmseg.export.tensorrt_build import build_engine, profile_shapes
from lkmseg.files.layout import BEST, EXPORT_DIR, EXPORT_FILES, REPORT
from lkmseg.files.onnx_meta import load_onnx, read_metadata, save_onnx
from lkmseg.fsutil import write_json

FILES = EXPORT_FILES


@dataclass
class ExportOptions:
    onnx: bool = True
    fp16: bool = True
    trt: bool = False
    dynamic: bool = True
    size: tuple[int, int] | None = None  # example / opt shape; default: the training size
    batch: int = 1
    opset: int = MIN_OPSET
    trt_precision: str = "fp32"
    max_batch: int | None = None
    workspace_gib: float = 4.0
    parity_images: int = 16
    out_dir: Path | None = None
    gates: GateOptions = field(default_factory=GateOptions)  # INT8 + accuracy gates


@dataclass
class ExportResult:
    out_dir: Path
    report_path: Path
    report: dict
    files: dict[str, Path] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # quality gates missed
    unavailable: list[str] = field(default_factory=list)  # formats that cannot be made here

    @property
    def problems(self) -> list[str]:
        return [*self.unavailable, *self.failures]

    @property
    def passed(self) -> bool:
        return not self.problems

    def check(self) -> None:
        """Raise GateFailed for a missed gate (it outranks), else UserError for a format that
        cannot be made here."""
        for items, err in ((self.failures, GateFailed), (self.unavailable, UserError)):
            if items:
                more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
                raise err(f"{items[0]}{more}; see {self.report_path}")


def timing_cache_path() -> Path:
    """One TensorRT timing cache per TensorRT version and GPU model, reused across builds.
    TensorRT ties a cache to the device's properties, not just its SM (set_timing_cache fails
    otherwise): two GPU models with one SM get two files."""
    root = Path(os.environ.get("LKMSEG_CACHE", Path.home() / ".cache" / "lkmseg"))
    gpu = current_gpu()
    tag = (re.sub(r"[^a-z0-9]+", "-", gpu[0].lower()).strip("-") + "-sm"
           + gpu[1].replace(".", "")) if gpu else "nogpu"
    try:
        import tensorrt as trt

        ver = trt.__version__
    except ImportError:
        ver = "none"
    return root / f"tensorrt-{ver}-{tag}.timing"


def _versions() -> dict[str, str | None]:
    import platform

    import torch

    from lkmseg.hw import library_versions

    libs = library_versions(("torch", "onnx", "onnxslim", "onnxruntime", "tensorrt"))
    return {"python": platform.python_version(), **libs, "cuda": torch.version.cuda}


def _file_entry(path: Path) -> dict:
    return {"file": path.name, "mb": round(path.stat().st_size / 1e6, 3)}


def _validate(opts: ExportOptions) -> None:
    if opts.batch < 1:
        raise UserError(f"--batch {opts.batch}: must be >= 1")
    if opts.size is not None and (opts.size[0] < 1 or opts.size[1] < 1):
        raise UserError(f"--size {opts.size[0]}x{opts.size[1]}: must be positive")
    if opts.trt_precision not in ("fp32", "fp16"):
        raise UserError(f"--trt-precision {opts.trt_precision}: choose fp32 or fp16")
    if opts.parity_images < 1:
        raise UserError(f"--parity-images {opts.parity_images}: must be >= 1")
    g = opts.gates
    if g.calib_images < 1 or g.gate_images < 1:
        raise UserError(f"--calib-images {g.calib_images} / --gate-images {g.gate_images}: "
                        "must be >= 1")
    if not 0 <= g.tolerance < 1:
        raise UserError(f"--int8-tolerance {g.tolerance}: a Dice difference in [0, 1), "
                        "e.g. 0.005")
    if g.gate_data is not None and not Path(g.gate_data).is_dir():
        raise UserError(f"--gate-data {g.gate_data}: not a folder; pass a dataset (images with "
                        "masks)")
    if g.calib_dir is not None and not Path(g.calib_dir).is_dir():
        raise UserError(f"--calib {g.calib_dir}: not a folder; pass a folder of images or a "
                        "dataset")
    if not opts.onnx and not opts.trt:
        raise UserError("nothing to do: --no-onnx without --trt; drop --no-onnx")


class _Exporter:
    def __init__(self, run_dir: Path, opts: ExportOptions, log: Callable[[str], None]) -> None:
        from lkmseg.files.run_folder import load_run

        self.run_dir, self.opts, self.log = Path(run_dir), opts, log
        self.model, self.cfg = load_run(self.run_dir)
        own = self.run_dir / EXPORT_DIR
        self.out = Path(opts.out_dir) if opts.out_dir else own
        self.size = tuple(opts.size or self.cfg.size)
        self.files: dict[str, Path] = {}
        self.failures: list[str] = []  # quality gates missed
        self.unavailable: list[str] = []  # formats that cannot be made here
        self.report = self._report_head()
        self.eval_cfg = self._held_out() if opts.onnx else self.cfg
        # every file is made in a staging folder and moved into place by commit()
        self.folder = ExportFolder(self.out, self.out.resolve() == own.resolve(), self.run_dir,
                                   log)
        self.stage = self.folder.stage

    def _held_out(self):  # noqa: ANN202 — RunConfig
        """The config whose val_items parity and the accuracy gate read: where the images are
        now (UserError, before any work, when the run's are missing)."""
        pairs = accuracy_gate.held_out_items(self.cfg, self.opts.gates.gate_data)
        if pairs is None:
            return self.cfg
        return dataclasses.replace(self.cfg, data={**self.cfg.data, "val_items": pairs})

    def _report_head(self) -> dict:
        spec = self.cfg.model.spec
        return {"lkmseg_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "run": str(self.run_dir), "block": spec.name, "kernel": spec.kernel,
                "width": self.cfg.model.width, "depth": self.cfg.model.depth,
                "training_size": list(self.cfg.size), "threshold": self.cfg.threshold,
                "options": {k: (list(v) if isinstance(v, tuple) else
                                str(v) if isinstance(v, Path) else v)
                            for k, v in vars(self.opts).items()},
                "versions": _versions(),
                "thresholds": parity.THRESHOLDS, "formats": {}, "passed": None}

    def write_report(self) -> Path:
        self.report["passed"] = not (self.failures or self.unavailable)
        self.report["problems"] = [*self.unavailable, *self.failures]
        self.report["gate_failures"] = list(self.failures)
        path = self.stage / REPORT
        write_json(path, self.report)
        return path

    def reference(self) -> parity.Reference:
        from lkmseg.engines.torch_engine import TorchEngine

        pset = parity.parity_set(self.eval_cfg, self.opts.parity_images)
        self.log(f"parity inputs: {len(pset.images)} images from {pset.origin}")
        torch_eng = TorchEngine(self.model, self.cfg, "fp32", "cpu", channels_last=False)
        ref = parity.make_reference(torch_eng, pset, self.size, self.cfg.threshold)
        sizes = sorted({tuple(s) for s in pset.sizes})
        self.report["inputs"] = {"origin": pset.origin, "n_images": len(pset.images),
                                 "names": pset.names, "model_size": list(self.size),
                                 "original_sizes": [list(s) for s in sizes],
                                 "odd_shape": list(ref.x_odd.shape), "notes": pset.notes}
        self.report["formats"]["torch"] = {"file": BEST, "engine": "torch cpu fp32",
                                           "dice_vs_gt": ref.dice_gt, "reference": True}
        return ref

    def commit(self) -> ExportResult:
        """Move the new files into place (and only then remove those they make stale)."""
        self.folder.commit(new_model=self.opts.onnx)
        files = {k: self.folder.final(p) for k, p in self.files.items()}
        return ExportResult(self.out, self.out / REPORT, self.report, files, self.failures,
                            self.unavailable)

    def onnx(self) -> None:
        import torch

        t0 = time.perf_counter()
        self.log("exporting ONNX fp32 (torch.onnx dynamo exporter)…")
        torch.manual_seed(0)
        fp32 = export_onnx(self.model, self.cfg, dynamic=self.opts.dynamic, size=self.size,
                           batch=self.opts.batch, opset=self.opts.opset)
        self.files["onnx_fp32"] = save_onnx(fp32, self.stage / FILES["onnx_fp32"])
        self.report["formats"]["onnx_fp32"] = {**_file_entry(self.files["onnx_fp32"]),
                                               "export_seconds": round(time.perf_counter() - t0, 2)}
        if self.opts.fp16:
            t0 = time.perf_counter()
            self.log("converting to ONNX fp16 (fp32 inputs/outputs)…")
            self.files["onnx_fp16"] = save_onnx(convert_fp16(fp32), self.stage / FILES["onnx_fp16"])
            self.report["formats"]["onnx_fp16"] = {
                **_file_entry(self.files["onnx_fp16"]),
                "export_seconds": round(time.perf_counter() - t0, 2)}

    def existing_onnx(self) -> None:
        """--no-onnx --trt: build from the ONNX files already in the export folder."""
        for key in ("onnx_fp32", "onnx_fp16"):
            p = self.out / FILES[key]
            if p.is_file():
                read_metadata(p, load_onnx(p))
                self.files[key] = p
        if "onnx_fp32" not in self.files:
            raise UserError(f"{self.out / FILES['onnx_fp32']}: not found, and --no-onnx was "
                            "given; drop --no-onnx to export it")

    def check_onnx(self, ref: parity.Reference) -> None:
        from lkmseg.engines.onnxruntime_engine import OnnxRuntimeEngine

        for key, prec in (("onnx_fp32", "fp32"), ("onnx_fp16", "fp16")):
            if key not in self.files or key not in self.report["formats"]:
                continue
            self.log(f"parity: {self.files[key].name} in onnxruntime vs torch…")
            with OnnxRuntimeEngine(self.files[key], device="cpu") as eng:
                rep = parity.compare(eng, ref, prec)
                rep.update(engine=eng.describe(), precision=prec)
            self.report["formats"][key].update(rep)
            self._note_failures(key, rep)

    def _note_failures(self, key: str, rep: dict) -> None:
        if rep["failures"]:
            self.failures.append(f"parity failed for {FILES[key]}: {rep['failures'][0]}")

    def precision_gates(self, ref: parity.Reference) -> None:
        """Accuracy gate for every float runtime x precision, then INT8 (made and gated);
        the shipped INT8 file also gets the parity figures, on the parity images, beside the
        other formats' (informational: INT8 is judged by the accuracy gate)."""
        from lkmseg.engines.torch_engine import TorchEngine

        gates = PrecisionGates(self.stage, self.eval_cfg, self.size, self.opts.gates, self.log)
        torch_fp32 = TorchEngine(self.model, self.cfg, "fp32", "cpu", channels_last=False)
        res = gates.run(self.files, torch_fp32,
                        lambda: TorchEngine(self.model, self.cfg, "bf16", "cpu",
                                            channels_last=False))
        self.report["accuracy_gate"] = res.section
        if res.int8 is not None:
            self.report["formats"]["onnx_int8"] = res.int8
        if "onnx_int8" in res.files:
            from lkmseg.engines.onnxruntime_engine import OnnxRuntimeEngine

            with OnnxRuntimeEngine(res.files["onnx_int8"], device="cpu") as eng:
                figures = parity.compare(eng, ref, "int8")
            for key in ("failures", "passed"):
                figures.pop(key)
            res.int8.update(figures)
        self.files.update(res.files)
        self.failures += res.failures

    def tensorrt(self, ref: parity.Reference) -> None:
        ok, why = tensorrt_status()
        if not ok:
            self.report["formats"]["tensorrt"] = {"status": "unavailable", "reason": why}
            self.unavailable.append(f"--trt needs TensorRT and a CUDA GPU: {why} "
                                    "(the ONNX files were written)")
            return
        from lkmseg.engines.tensorrt_engine import TensorRTEngine

        shapes: ProfileShapes = profile_shapes(self.size, self.opts.batch, self.opts.dynamic,
                                               self.opts.max_batch)
        engine_path = self.stage / FILES["tensorrt"]
        self.log(f"building TensorRT {self.opts.trt_precision} engine ({shapes})…")
        t0 = time.perf_counter()
        side = build_engine(self.files["onnx_fp32"], engine_path, shapes,
                            precision=self.opts.trt_precision,
                            onnx_fp16=self.files.get("onnx_fp16"),
                            workspace_gib=self.opts.workspace_gib,
                            timing_cache=timing_cache_path(), config=self.cfg)
        self.files["tensorrt"] = engine_path
        entry = {**_file_entry(engine_path), "export_seconds": round(time.perf_counter() - t0, 2),
                 "sidecar": engine_path.name + ".json",
                 **{k: side[k] for k in ("tensorrt_version", "gpu_name", "compute_capability",
                                         "precision", "strongly_typed", "profile")}}
        self.report["formats"]["tensorrt"] = entry
        with TensorRTEngine(engine_path) as eng:
            rep = parity.compare(eng, ref, self.opts.trt_precision)
            rep["engine"] = eng.describe()
        entry.update(rep)
        self._note_failures("tensorrt", rep)


def export_run(run_dir: str | Path, options: ExportOptions | None = None, *, strict: bool = True,
               log: Callable[[str], None] | None = None) -> ExportResult:
    """Export a run folder; see the module doc. ``strict`` raises on any problem (after the
    files and report.json are written); otherwise inspect ``result.problems``."""
    opts = options or ExportOptions()
    _validate(opts)
    if opts.trt:  # fail on impossible profile options before minutes of exporting
        profile_shapes(opts.size or (64, 64), opts.batch, opts.dynamic, opts.max_batch)
    with _run_lock(Path(run_dir)):  # a training, resume or export of this run waits
        ex = _Exporter(Path(run_dir), opts, log or (lambda _msg: None))
        try:
            result = _steps(ex)
        finally:
            ex.folder.discard()  # a failed or interrupted export leaves the folder as it was
    if strict:
        result.check()
    return result


def _run_lock(run_dir: Path):
    """The run folder's lock; a run folder we cannot write to (exported elsewhere with --out)
    is exported unlocked, since nothing of it is written."""
    import contextlib

    from lkmseg.files.lock import FolderBusy, lock_folder

    if not run_dir.is_dir():  # _Exporter says what is wrong with it
        return contextlib.nullcontext()
    try:
        return lock_folder(run_dir, "export")
    except FolderBusy:
        raise
    except UserError:
        return contextlib.nullcontext()


def _steps(ex: _Exporter) -> ExportResult:
    opts = ex.opts
    if opts.onnx:
        ex.onnx()
    else:
        ex.existing_onnx()
    ref = ex.reference()
    ex.check_onnx(ref)
    if opts.onnx:
        ex.precision_gates(ref)
    ex.write_report()
    if opts.trt:
        try:
            ex.tensorrt(ref)
        except LkmsegError:
            ex.commit()  # the ONNX files and their report stand, as without --trt
            raise
        ex.write_report()
    return ex.commit()
