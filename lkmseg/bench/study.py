"""The seed study end to end (`lkmseg compare`) — train every block for the same wall-clock
budget, export, bench, and write one report (report.md + plots)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lkmseg.bench.report import markdown, ratio_lines, ratios, save
from lkmseg.bench.runner import BenchOptions, bench
from lkmseg.config import RunConfig, TrainConfig
from lkmseg.files.layout import CONFIG, STATE, SUMMARY
from lkmseg.files.run_folder import read_summary
from lkmseg.fsutil import write_text
from lkmseg.models import ModelConfig
from lkmseg.plots import curves_figure, kernel_sweep_figure


@dataclass
class CompareOptions:
    blocks: list[str] = field(default_factory=lambda: ["3x3", "5x5", "1x5"])
    arch: str = "unet"
    where: str = "all"
    data: Path | None = None
    size: tuple[int, int] = (128, 128)
    budget_s: float = 600.0
    out: Path = Path("runs/compare")
    device: str = "auto"
    batch_size: int = 8
    lr: float = 3e-3
    width: int = 8
    depth: int = 6
    seed: int = 0
    engines: list[str] = field(default_factory=lambda: ["torch", "onnxruntime", "openvino",
                                                        "tensorrt"])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    bench_reps: int = 30
    limit: int = 32


def _run_config(o: CompareOptions, block: str) -> RunConfig:
    model = ModelConfig(block=block, width=o.width, depth=o.depth, arch=o.arch, where=o.where)
    return RunConfig(model=model, size=o.size,
                     train=TrainConfig(batch_size=o.batch_size, lr=o.lr,
                                       time_budget_s=o.budget_s, seed=o.seed))


def _mismatches(o: CompareOptions, cfg: RunConfig, want: RunConfig) -> list[str]:
    """The requested options that a run folder's config.json was not trained with."""
    have_data = cfg.data.get("source") if cfg.data.get("layout") != "synthetic" else None
    want_data = str(Path(o.data).resolve()) if o.data is not None else None
    if have_data is not None:
        have_data = str(Path(have_data).resolve())
    pairs = [("--arch", cfg.model.arch, want.model.arch), ("--where", cfg.model.where,
                                                            want.model.where),
             ("--size", list(cfg.size), list(want.size)),
             ("--width", cfg.model.width, want.model.width),
             ("--depth", cfg.model.depth, want.model.depth),
             ("--budget", cfg.train.time_budget_s, want.train.time_budget_s),
             ("--batch-size", cfg.train.batch_size, want.train.batch_size),
             ("--lr", cfg.train.lr, want.train.lr), ("--seed", cfg.train.seed, want.train.seed),
             ("--data", have_data or "embedded synthetic", want_data or "embedded synthetic")]
    return [f"{opt} {h} (now {w})" for opt, h, w in pairs if h != w]


def _reusable(o: CompareOptions, run: Path, want: RunConfig) -> RunConfig | None:
    """The run's config when it was made with the requested options; UserError otherwise
    (never silently mix runs made with other settings into one report)."""
    from lkmseg.config import load_config
    from lkmseg.errors import UserError

    if not (run / CONFIG).is_file():
        return None
    cfg = load_config(run)
    diff = _mismatches(o, cfg, want)
    if diff:
        raise UserError(f"{run} was trained with {', '.join(diff)}; pass another --out for "
                        "these options, or delete that run folder to retrain it")
    return cfg


def _train_all(o: CompareOptions, console) -> list[Path]:
    """Train each block for the budget; a finished run made with the same options is reused,
    a stopped one resumed."""
    from lkmseg.train.loop import train_run

    runs = []
    for b in o.blocks:
        cfg = _run_config(o, b)
        run = o.out / "runs" / cfg.model.block
        have = _reusable(o, run, cfg)
        summary = run / SUMMARY
        if have is not None and summary.is_file() and \
                read_summary(run).get("status") == "complete":
            if console:
                console.print(f"[green]{run}: already trained with these options, reused[/]")
            runs.append(run)
            continue
        resume = run if have is not None and (run / STATE).is_file() else None
        if resume is not None:
            cfg = have
        if console:
            console.rule(f"training {cfg.model.block} for {o.budget_s:.0f} s")
        run_dir, s = train_run(cfg, o.data, o.out / "runs", cfg.model.block, o.device, resume,
                               console)
        if s["status"] != "complete":
            from lkmseg.errors import UserError

            raise UserError(f"compare stopped while training {b}; run the same command again "
                            "to resume it")
        runs.append(run_dir)
    return runs


def _export_all(runs: list[Path], console) -> dict[str, dict]:
    from lkmseg.export.pipeline import ExportOptions, export_run

    out = {}
    for r in runs:
        if console:
            console.print(f"exporting {r.name} (ONNX fp32 + fp16, parity check)…")
        res = export_run(r, ExportOptions(fp16=True, trt=False), strict=False)
        out[r.name] = {"problems": res.problems,
                       "report": str(res.report_path)}
        for p in res.problems:
            if console:
                console.print(f"[yellow]warning: export {r.name}: {p}[/]")
    return out



def _precision_of(s: dict) -> str:
    """'bf16 channels_last' from a summary (older runs: parsed from its device line)."""
    if "precision" in s:
        return f"{s['precision']} {'channels_last' if s.get('channels_last') else 'NCHW'}"
    parts = [p.strip() for p in str(s.get("device", "")).split(",")]
    return next((p for p in parts if p in ("fp32", "bf16", "fp16")), "?")


def _training_table(runs: list[Path]) -> list[str]:
    lines = ["| block | size | batch | budget s | params M | precision | steps | images seen | "
             "train img/s | loader img/s | best val Dice | full-res Dice | train s | device |",
             "|" + "---|" * 14]
    for r in runs:
        s = read_summary(r)
        c = json.loads((r / CONFIG).read_text())
        full = s.get("val_dice_full_res")
        budget = c["train"].get("time_budget_s")
        lines.append(f"| {s['block']} | {c['size'][0]}x{c['size'][1]} | "
                     f"{c['train']['batch_size']} | {'-' if budget is None else f'{budget:.0f}'} | "
                     f"{s['params'] / 1e6:.2f} | {_precision_of(s)} | {s['steps']} | "
                     f"{s['images_seen']} | {s['images_per_s']:.1f} | "
                     f"{s['loader_images_per_s']:.0f} | {s['best_val_dice']:.4f} | "
                     f"{'-' if full is None else f'{full:.4f}'} | {s['train_seconds']:.0f} | "
                     f"{s.get('device', '?')} |")
    return lines


def _curves_precision(runs: list[Path]) -> str:
    """Names the precision the Dice curves were trained in (chosen by --amp)."""
    used: dict[str, list[str]] = {}
    for r in runs:
        s = read_summary(r)
        used.setdefault(_precision_of(s), []).append(s["block"])
    if len(used) == 1:
        return f"The Dice curves were trained in **{next(iter(used))}** (every block)."
    return "The Dice curves were trained in: " + "; ".join(
        f"**{p}** ({', '.join(b)})" for p, b in used.items()) + "."


def _speed_section(o: CompareOptions, runs: list[Path], speeds: dict | None) -> list[str]:
    if not speeds:
        return []
    from lkmseg.bench.train_speed import report_lines

    blocks = {r.name: read_summary(r)["block"] for r in runs}
    machine = speeds.get("machine", {})
    return ["## Training speed per precision", "",
            f"Training images/s of each block in each precision this machine runs natively, "
            f"each in its fastest memory layout, measured interleaved after training at "
            f"{o.size[0]}x{o.size[1]}, batch {o.batch_size} ({machine.get('cpu', '?')}, "
            f"flags {' '.join(machine.get('cpu_flags', [])) or '-'}, "
            f"torch {machine.get('torch', '?')}, {machine.get('threads', '?')} threads).", "",
            *report_lines(speeds["best"], blocks), ""]


def train_speed_per_precision(o: CompareOptions, runs: list[Path], console) -> dict:
    """Each run's model in each native precision (best layout each), interleaved; saved as
    train_speed_per_precision.json beside the report."""
    from lkmseg import hw
    from lkmseg.bench.train_speed import best_per_precision, measure_per_precision
    from lkmseg.config import load_config
    from lkmseg.fsutil import write_json
    from lkmseg.train.runtime import resolve_device

    cfgs = {r.name: load_config(r) for r in runs}
    dev = str(resolve_device(o.device))
    if console:
        console.print(f"measuring training speed per precision "
                      f"({', '.join(hw.native_precisions(dev))}), interleaved…")
    res = measure_per_precision({k: c.model for k, c in cfgs.items()}, o.size, o.batch_size,
                                device=dev)
    best = best_per_precision(res)
    out = {"machine": hw.machine_info(dev), "size": list(o.size), "batch": o.batch_size,
           "best": best, "all": {k: vars(t) for k, t in res.items()}}
    write_json(o.out / "train_speed_per_precision.json",
               {**out, "best": {p: {m: vars(t) for m, t in by.items()}
                                for p, by in best.items()}})
    return out


def write_report(o: CompareOptions, runs: list[Path], rows: list[dict], ctx: dict,
                 exports: dict, figures: list[Path], speeds: dict | None = None) -> Path:
    first = json.loads((runs[0] / CONFIG).read_text())
    data = first["data"]
    rs = ratios(rows)
    lines = ["# lkmseg compare: square vs separable kernels", "",
             f"Data: `{data.get('source')}` ({data.get('layout')}), {data.get('n_train')} train / "
             f"{data.get('n_val')} validation images, split by group "
             f"(validation groups: {', '.join(data.get('val_groups', [])[:8])}"
             f"{'…' if len(data.get('val_groups', [])) > 8 else ''}).",
             f"Each block trained for the same wall-clock budget of {o.budget_s:.0f} s at "
             f"{o.size[0]}x{o.size[1]}, batch {o.batch_size}, on {ctx['device']} "
             f"(runs trained one after another; a busy machine during one run penalises it).",
             "", "## Training", "", *_training_table(runs), "",
             _curves_precision(runs), "",
             "![Dice vs images seen and wall time](curves.png)", "",
             *_speed_section(o, runs, speeds),
             "## Headline ratios (separable vs square, same K)", ""]
    lines += [f"- {x}" for x in ratio_lines(rs)] or ["- no separable/square pair among the blocks"]
    from lkmseg.bench.verdict import separable_table

    lines += ["", "## Separable vs square, per runtime x precision", "",
              *separable_table(rows), "", "## Benchmark", "", markdown(rows, ctx, False), ""]
    lines += [f"![{f.stem}]({f.name})" for f in figures if f.name != "curves.png"]
    lines += ["", "## Export parity (ONNX Runtime vs PyTorch)", ""]
    for name, e in exports.items():
        rep = json.loads(Path(e["report"]).read_text()) if Path(e["report"]).is_file() else {}
        parts = []
        for fmt, v in rep.get("formats", {}).items():
            if isinstance(v, dict) and v.get("max_abs_logit_diff") is not None:
                parts.append(f"{fmt}: max |Δlogit| {v['max_abs_logit_diff']:.1e}, mask Dice vs "
                             f"torch {v.get('mask_dice_vs_torch', float('nan')):.5f}, Dice vs "
                             f"ground truth {v.get('dice_vs_gt') or float('nan'):.4f}")
        status = "ok" if not e["problems"] else "PROBLEMS: " + "; ".join(e["problems"])
        lines.append(f"- {name}: {status}" + (f" ({'; '.join(parts)})" if parts else ""))
    path = o.out / "report.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


@dataclass
class CompareResult:
    """What ``compare`` made: report.md, the bench rows and context, the run folders."""

    report: Path
    rows: list[dict]
    context: dict
    runs: list[Path]


def run_compare(o: CompareOptions, console=None) -> CompareResult:
    o.out.mkdir(parents=True, exist_ok=True)
    runs = _train_all(o, console)
    exports = _export_all(runs, console)
    opts = BenchOptions(engines=o.engines, batch_sizes=o.batch_sizes, device=o.device,
                        train=True, reps=o.bench_reps, limit=o.limit, export_missing=False)
    rows, ctx = bench(runs, None, opts, console)
    speeds = train_speed_per_precision(o, runs, console)
    figures = save(rows, ctx, o.out)
    figures = [f for f in figures if f.suffix == ".png"]
    figures.append(curves_figure(runs, o.out / "curves.png"))
    sweep = kernel_sweep_figure(ratios(rows), o.out / "kernel_sweep.png")
    if sweep:
        figures.append(sweep)
    report = write_report(o, runs, rows, ctx, exports, figures, speeds)
    if console:
        from lkmseg.bench.report import print_table

        print_table(rows, ctx, console)
    return CompareResult(report, rows, ctx, runs)
