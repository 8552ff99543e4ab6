"""``lkmseg.export``, ``lkmseg.bench`` and ``lkmseg.compare``: the CLI commands' work, with
their reports returned as data (the CLI calls these same functions, then prints)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lkmseg.api.parse import duration
from lkmseg.api.parse import size as size_of
from lkmseg.errors import UserError
from lkmseg.files.layout import BEST, CONFIG, LAST

if TYPE_CHECKING:
    from lkmseg.export import ExportResult

ENGINES = ("torch", "onnxruntime", "openvino", "tensorrt")
# export's keyword -> GateOptions field (the INT8 and accuracy-gate options)
GATE_KEYS = {"int8": "int8", "calib": "calib_dir", "calib_images": "calib_images",
             "int8_tolerance": "tolerance", "gate_images": "gate_images",
             "gate_data": "gate_data"}


def _names(value: str | Sequence[str], what: str) -> list[str]:
    from lkmseg.cli.options import parse_list

    return parse_list(value, what) if isinstance(value, str) else [str(v) for v in value]


def _ints(value: str | Sequence[int], what: str) -> list[int]:
    try:
        out = [int(v) for v in _names(value, what)] if isinstance(value, str) else \
            [int(v) for v in value]
    except ValueError as e:
        raise UserError(f"{what} {value!r}: use integers like 1,8") from e
    if not out or any(b < 1 for b in out):
        raise UserError(f"{what} {value!r}: batch sizes must be >= 1")
    return out



def export_options(**kw: Any):  # noqa: ANN201 — ExportOptions, imported lazily
    """ExportOptions from ``export``'s keywords (unknown ones: a UserError listing all)."""
    from lkmseg.export import ExportOptions
    from lkmseg.export.gated_formats import GateOptions

    plain = {f.name for f in fields(ExportOptions)} - {"gates", "out_dir", "workspace_gib"}
    valid = sorted(plain | set(GATE_KEYS) | {"out", "workspace"})
    unknown = sorted(set(kw) - set(valid))
    if unknown:
        raise UserError(f"unknown export option {unknown[0]!r}: choose from {', '.join(valid)}")
    gates = GateOptions(**{GATE_KEYS[k]: kw.pop(k) for k in list(kw) if k in GATE_KEYS})
    if gates.calib_dir is not None:
        gates.calib_dir = Path(gates.calib_dir)
    if gates.gate_data is not None:
        gates.gate_data = Path(gates.gate_data)
    out = kw.pop("out", None)
    if "workspace" in kw:
        kw["workspace_gib"] = kw.pop("workspace")
    if isinstance(kw.get("size"), (str, int)):
        kw["size"] = size_of(kw["size"])
    elif kw.get("size") is not None:
        kw["size"] = tuple(int(v) for v in kw["size"])
    if "trt_precision" in kw:
        kw["trt_precision"] = str(kw["trt_precision"]).lower()
    return ExportOptions(out_dir=Path(out) if out is not None else None, gates=gates, **kw)


def export(run: str | os.PathLike, *, check: bool = True,
           log: Callable[[str], None] | None = None, **options: Any) -> ExportResult:
    """Export a run folder to ONNX fp32 + fp16 + INT8 (and TensorRT with ``trt=True``),
    checking parity against PyTorch and every runtime x precision against the accuracy gate;
    returns the ``ExportResult`` (``.report`` is report.json as a dict, ``.files``).

    Options: onnx, fp16, int8, trt, dynamic, size, batch, opset, trt_precision, max_batch,
    workspace, parity_images, calib, calib_images, int8_tolerance, gate_images, gate_data,
    out.
    ``check``: raise GateFailed (a missed gate) or UserError (a format that cannot be made
    here) after writing the files, as the CLI's exit codes 3 and 2.

    >>> res = lkmseg.export("runs/1x5_128x128", int8=False)
    >>> res.report["formats"]["onnx_fp32"]["passed"], res.files["onnx_fp32"]
    """
    from lkmseg.export import export_run

    result = export_run(Path(os.fspath(run)), export_options(**options), strict=False, log=log)
    if check:
        result.check()
    return result


@dataclass
class BenchReport:
    """``lkmseg bench``'s rows (one dict per model x engine x precision x batch; the columns
    of bench.csv), the context (machine, inputs, peaks) and the files written."""

    rows: list[dict]
    context: dict
    files: list[Path] = field(default_factory=list)

    def failures(self) -> list[dict]:
        return [r for r in self.rows if str(r.get("status", "")).startswith("failed:")]


def find_runs(root: Path) -> list[Path]:
    """Run folders (config.json + weights) directly under ``root`` or one level deeper."""
    if not root.is_dir():
        return []
    cands = sorted({p.parent for pat in (f"*/{CONFIG}", f"*/*/{CONFIG}")
                    for p in root.glob(pat)})
    return [c for c in cands if (c / BEST).is_file()
            or (c / LAST).is_file()]


def _bench_runs(runs: Any) -> list[Path]:
    if runs is None:
        found = find_runs(Path("runs"))
        if not found:
            raise UserError("no runs found under runs/: train one first, e.g. `lkmseg train "
                            "--block 1x5 --time-budget 5m`, or run `lkmseg compare`")
        return found
    paths = [Path(os.fspath(r)) for r in ([runs] if isinstance(runs, (str, os.PathLike))
                                          else runs)]
    for r in paths:
        if not (r / CONFIG).is_file():
            raise UserError(f"{r}: not a run folder (no config.json); pass folders made by "
                            "`lkmseg train`")
    return paths


def bench(runs: Any = None, source: str | os.PathLike | None = None,
          engines: str | Sequence[str] = ENGINES, batch_sizes: str | Sequence[int] = (1, 8),
          size: Any = None, device: str = "auto", train: bool = True, reps: int = 30,
          rounds: int = 3, limit: int = 32, dice_tolerance: float = 0.005,
          out: str | os.PathLike | None = "bench", console: Any = None,
          tf32: bool = False) -> BenchReport:
    """Benchmark run folders (default: every run under runs/) on every engine x precision x
    batch size: latency, frames/s, Dice, agreement, sizes, training images/s (``tf32``: add
    torch TF32 rows on a CUDA GPU). Writes
    bench.json/csv/md + plots to ``out`` (None: write nothing) and returns them as data.

    >>> rep = lkmseg.bench(["runs/a", "runs/b"], engines="torch,onnxruntime", train=False)
    >>> [(r["model"], r["engine"], r["latency_ms_p50"]) for r in rep.rows]
    """
    from lkmseg.bench.report import save
    from lkmseg.bench.runner import BenchOptions
    from lkmseg.bench.runner import bench as run_bench
    from lkmseg.engines.factory import canonical_name

    names = [canonical_name(e) for e in _names(engines, "--engines")]
    if "auto" in names:
        raise UserError("--engines: name them (torch,onnxruntime,openvino,tensorrt); bench "
                        "measures each, so 'auto' means nothing here")
    opts = BenchOptions(engines=names, batch_sizes=_ints(batch_sizes, "--batch-sizes"),
                        size=size_of(size), device=device, train=train, reps=reps,
                        rounds=rounds, limit=limit, dice_tolerance=dice_tolerance, tf32=tf32)
    rows, ctx = run_bench(_bench_runs(runs), Path(source) if source else None, opts, console)
    files = save(rows, ctx, Path(out)) if out is not None else []
    return BenchReport(rows, ctx, files)


def compare(blocks: str | Sequence[str] = ("3x3", "5x5", "1x5"),
            data: str | os.PathLike | None = None, size: Any = 128,
            budget: float | str = "10m", batch_size: int = 8, lr: float = 3e-3, width: int = 8,
            depth: int = 6, device: str = "auto", engines: str | Sequence[str] = ENGINES,
            batch_sizes: str | Sequence[int] = (1, 8), seed: int = 0, bench_reps: int = 30,
            limit: int = 32, out: str | os.PathLike = "runs/compare",
            console: Any = None, arch: str = "unet",
            where: str = "all"):  # noqa: ANN201 — CompareResult, imported lazily
    """The seed study end to end: train every block for the same wall-clock ``budget``,
    export, bench, and write one report; returns a ``CompareResult`` (report path, bench rows,
    context, run folders). Re-running resumes or reuses the runs. ``arch``/``where``: ask it of
    an smp model (``"smp:Unet:resnet18"``) and the part of it the blocks replace.

    >>> res = lkmseg.compare("3x3,1x5", budget="2m", size=128)
    >>> res.report, [r["dice"] for r in res.rows]
    """
    from lkmseg.bench.study import CompareOptions, run_compare
    from lkmseg.engines.factory import canonical_name
    from lkmseg.models import ModelConfig

    names = [ModelConfig(block=b, arch=arch, where=where).block
             for b in _names(blocks, "--blocks")]
    if len(set(names)) != len(names):
        raise UserError(f"--blocks {blocks!r}: a block is listed twice")
    engs = [canonical_name(e) for e in _names(engines, "--engines")]
    if "auto" in engs:
        raise UserError("--engines: name them (torch,onnxruntime,openvino,tensorrt)")
    if data is not None and not Path(data).exists():
        raise UserError(f"{data}: data folder not found; check --data")
    budget_s = float(duration(budget, "--budget") or 0)
    o = CompareOptions(blocks=names, arch=arch, where=where,
                       data=Path(data) if data is not None else None,
                       size=size_of(size) or (128, 128), budget_s=budget_s,
                       out=Path(out), device=device, batch_size=batch_size, lr=lr,
                       width=width, depth=depth, seed=seed, engines=engs,
                       batch_sizes=_ints(batch_sizes, "--batch-sizes"), bench_reps=bench_reps,
                       limit=limit)
    return run_compare(o, console)
