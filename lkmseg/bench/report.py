"""Bench results as a terminal table, bench.json / bench.csv / bench.md, ratios and plots."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from lkmseg.bench.fastest import fastest_gated
from lkmseg.bench.pareto import pareto_figure
from lkmseg.files.layout import BENCH_CSV, BENCH_JSON, BENCH_MD
from lkmseg.fsutil import write_json, write_text
from lkmseg.plots import savefig

COLUMNS = ["model", "block", "kernel", "engine", "status", "params", "gflops", "file_mb",
           "dice", "latency_ms_p50", "latency_ms_p99", "fps", "train_images_per_s",
           "precision", "batch", "latency_ms_p90", "dice_kind", "agreement", "mem_mb",
           "gflops_per_s", "peak_gflops", "frac_of_peak", "device", "size", "reps",
           "safetensors_mb", "onnx_mb", "onnx_fp16_mb", "onnx_int8_mb", "engine_mb",
           "engine_detail", "family"]
SHOWN = [("model", "model"), ("engine", "engine"), ("precision", "prec"), ("batch", "bs"),
         ("params", "params M"), ("gflops", "GFLOP/img"), ("file_mb", "file MB"),
         ("dice", "dice"), ("agreement", "vs torch"), ("latency_ms_p50", "p50 ms"),
         ("latency_ms_p99", "p99 ms"),
         ("fps", "img/s"), ("frac_of_peak", "of peak"), ("mem_mb", "mem MB"),
         ("train_images_per_s", "train img/s"), ("status", "status")]


def _fmt(key: str, v) -> str:
    if v is None:
        return "-"
    if key == "params":
        return f"{v / 1e6:.2f}"
    if key in ("dice", "agreement"):
        return f"{v:.4f}"
    if key == "frac_of_peak":
        return f"{100 * v:.0f}%"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    s = str(v)
    return s if len(s) < 60 else s[:57] + "…"


def ratios(rows: list[dict]) -> list[dict]:
    """Separable (1xK) and GCN (gcnK) vs the square block of the same K (3x3 for K=3)."""
    from lkmseg.models.surgery import parse_form  # also names blocks of other archs (KxK)

    ok = [{**r, "family": parse_form(r["block"]).family} for r in rows if r["status"] == "ok"]
    by_model: dict[str, dict] = {}
    for r in ok:
        by_model.setdefault(r["model"], r)
    square = {r["kernel"]: r for r in by_model.values() if r["family"] in ("square", "double3")}
    out = []
    for r in by_model.values():
        if r["family"] not in ("separable", "gcn") or r["kernel"] not in square:
            continue
        sq = square[r["kernel"]]
        item = {"pair": f"{r['model']} vs {sq['model']}", "size_ratio": r["params"] / sq["params"],
                "gflops_ratio": r["gflops"] / sq["gflops"]}
        if r.get("train_images_per_s") and sq.get("train_images_per_s"):
            item["train_speedup"] = r["train_images_per_s"] / sq["train_images_per_s"]
        for a in ok:
            if a["model"] != r["model"]:
                continue
            b = next((x for x in ok if x["model"] == sq["model"] and x["engine"] == a["engine"]
                      and x["precision"] == a["precision"] and x["batch"] == a["batch"]), None)
            if b and a.get("latency_ms_p50") and b.get("latency_ms_p50"):
                k = f"{a['engine']} {a['precision']} bs{a['batch']}"
                item[f"speedup {k}"] = b["latency_ms_p50"] / a["latency_ms_p50"]
                if a.get("dice") is not None and b.get("dice") is not None:
                    item.setdefault("dice_diff", a["dice"] - b["dice"])
        out.append(item)
    return out


def ratio_lines(rs: list[dict]) -> list[str]:
    lines = []
    for r in rs:
        parts = [f"size ×{r['size_ratio']:.3f}", f"GFLOPs ×{r['gflops_ratio']:.3f}"]
        if "train_speedup" in r:
            parts.append(f"training {r['train_speedup']:.2f}× faster")
        parts += [f"{k[8:]} {v:.2f}×" for k, v in r.items() if k.startswith("speedup ")]
        if "dice_diff" in r:
            parts.append(f"Dice {r['dice_diff']:+.4f}")
        lines.append(f"{r['pair']}: " + ", ".join(parts))
    return lines


def print_table(rows: list[dict], ctx: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"lkmseg bench — {ctx['device']}, inputs: {ctx['inputs']}, "
                    f"dice = {ctx['dice_kind']}")
    for _, head in SHOWN:
        t.add_column(head, overflow="fold")
    for r in rows:
        t.add_row(*[_fmt(k, r.get(k)) for k, _ in SHOWN])
    console.print(t)
    console.print(f"matmul peaks measured in this run ({ctx['device']}): {_peaks(ctx)}")
    for line in ratio_lines(ratios(rows)):
        console.print(line)


def markdown(rows: list[dict], ctx: dict, verdict: bool = True) -> str:
    head = "| " + " | ".join(h for _, h in SHOWN) + " |"
    sep = "|" + "---|" * len(SHOWN)
    body = ["| " + " | ".join(_fmt(k, r.get(k)).replace("|", "/") for k, _ in SHOWN) + " |"
            for r in rows]
    lines = [f"Device: {ctx['device']}{' (' + ctx['gpu'] + ')' if ctx.get('gpu') else ''}, "
             f"torch {ctx['torch']}, {ctx['threads']} threads, {ctx['date']}. "
             f"Inputs: {ctx['inputs']}; dice = {ctx['dice_kind']}, 'vs torch' = mask Dice "
             f"against torch fp32. Matmul peaks: {_peaks(ctx)}.",
             *([f"CPU: {ctx['cpu']} ({ctx.get('cpu_flags')}); load average before/after: "
                f"{ctx.get('load_before')} / {ctx.get('load_after')}."] if ctx.get("cpu")
               else []),
             "", head, sep, *body, "", "**Separable vs square**", ""]
    lines += [f"- {x}" for x in ratio_lines(ratios(rows))] or ["- (no separable/square pair)"]
    if verdict:
        from lkmseg.bench.verdict import separable_table

        lines += ["", *separable_table(rows)]
    lines += ["", *fastest_gated(rows)]
    return "\n".join(lines) + "\n"


def _peaks(ctx: dict) -> str:
    peaks = ctx.get("peaks") or {"fp32": ctx.get("peak_gflops")}
    return ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items() if v)


def save(rows: list[dict], ctx: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / BENCH_JSON, [{k: r.get(k) for k in COLUMNS} for r in rows])
    write_json(out / "bench_context.json", {**ctx, "ratios": ratios(rows)})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(out / BENCH_CSV, buf.getvalue())
    write_text(out / BENCH_MD, markdown(rows, ctx))
    return [out / BENCH_JSON, out / BENCH_CSV, out / BENCH_MD, *plots(rows, out)]


def plots(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok" and r.get("latency_ms_p50")]
    made = []
    pareto = pareto_figure(rows, out / "dice_vs_latency.png")
    if pareto:
        made.append(pareto)
    # 2. training images/s per block
    models = {r["model"]: r for r in rows if r.get("train_images_per_s")}
    if models:
        fig, ax = plt.subplots(figsize=(7, 4))
        names = list(models)
        ax.bar(names, [models[n]["train_images_per_s"] for n in names], color="tab:blue")
        ax.set(ylabel="training images/s", title="Training throughput (interleaved)")
        for i, n in enumerate(names):
            ax.text(i, models[n]["train_images_per_s"], f"{models[n]['train_images_per_s']:.1f}",
                    ha="center", va="bottom", fontsize=8)
        made.append(savefig(fig, out / "train_throughput.png"))
    # 3. latency per engine, grouped by model
    combos = sorted({(r["engine"], r["precision"], r["batch"]) for r in ok})
    if combos:
        fig, ax = plt.subplots(figsize=(max(7, 1.2 * len({r['model'] for r in ok})), 4))
        names = list(dict.fromkeys(r["model"] for r in ok))
        wdt = 0.8 / len(combos)
        for j, c in enumerate(combos):
            vals = [next((r["latency_ms_p50"] for r in ok if r["model"] == n and
                          (r["engine"], r["precision"], r["batch"]) == c), 0) for n in names]
            ax.bar([i + j * wdt for i in range(len(names))], vals, wdt,
                   label=f"{c[0]} {c[1]} bs{c[2]}")
        ax.set_xticks([i + 0.4 - wdt / 2 for i in range(len(names))], names)
        ax.set(ylabel="latency p50 (ms, log)", yscale="log", title="Latency per engine")
        ax.legend(fontsize=7)
        made.append(savefig(fig, out / "latency_per_engine.png"))
    return made



def load_rows(path: Path) -> list[dict]:
    return json.loads(Path(path).read_text())
