"""The study per precision: training images/s of each block in each precision the machine
runs natively (and each layout), measured interleaved in one process, and the separable vs
square speed-up within each precision."""

from __future__ import annotations

from lkmseg import hw
from lkmseg.bench.throughput import Throughput, Variant, measure_training
from lkmseg.models import ModelConfig
from lkmseg.models.surgery import parse_form
from lkmseg.train.runtime import resolve_device

AMP_OF = {"fp32": "off", "bf16": "bf16", "fp16": "fp16"}  # precision -> --amp


def variant_name(model: str, precision: str, layout: str) -> str:
    return f"{model}|{precision}|{layout}"


def measure_per_precision(models: dict[str, ModelConfig], size: tuple[int, int], batch: int,
                          device: str = "auto", precisions: list[str] | None = None,
                          layouts: tuple[str, ...] = ("auto",), rounds: int = 4,
                          steps_per_round: int = 1,
                          progress=None) -> dict[str, Throughput]:
    """Throughput of every model x precision x layout ("auto" = the measured best layout for
    that precision), keyed by ``variant_name``. Default precisions: the native ones here."""
    dev = resolve_device(device)
    precisions = precisions or hw.native_precisions(dev)
    variants = {variant_name(m, p, lay): Variant(cfg, AMP_OF[p], lay)
                for m, cfg in models.items() for p in precisions for lay in layouts}
    return measure_training(variants, size, batch, rounds=rounds,
                            steps_per_round=steps_per_round, warmup=1, device=device,
                            progress=progress)


def best_per_precision(res: dict[str, Throughput]) -> dict[str, dict[str, Throughput]]:
    """precision -> model -> its fastest layout's Throughput."""
    out: dict[str, dict[str, Throughput]] = {}
    for key, t in res.items():
        model, prec, _ = key.rsplit("|", 2)
        cur = out.setdefault(prec, {}).get(model)
        if cur is None or t.images_per_s > cur.images_per_s:
            out[prec][model] = t
    return out


def pair_ratios(ips: dict[str, float], blocks: dict[str, str]) -> dict[str, float]:
    """'1x5/5x5' -> images/s ratio, for every separable or GCN model and the square model of
    the same K (3x3 for K = 3). ``blocks``: model name -> block name."""
    specs = {m: parse_form(b) for m, b in blocks.items() if m in ips}  # KxK: kernel None
    square = {s.kernel: m for m, s in specs.items() if s.family == "square" and s.kernel}
    return {f"{m}/{square[s.kernel]}": ips[m] / ips[square[s.kernel]]
            for m, s in specs.items()
            if s.family in ("separable", "gcn") and s.kernel in square}


def ratios_per_precision(best: dict[str, dict[str, Throughput]],
                         blocks: dict[str, str]) -> dict[str, dict[str, float]]:
    """precision -> pair -> speed-up (each model in its best layout for that precision)."""
    return {p: pair_ratios({m: t.images_per_s for m, t in by.items()}, blocks)
            for p, by in best.items()}


def report_lines(best: dict[str, dict[str, Throughput]], blocks: dict[str, str]) -> list[str]:
    """A markdown table (block x precision, img/s and layout) and the ratios per precision."""
    precs = list(best)
    models = list(next(iter(best.values()), {}))
    lines = ["| model | " + " | ".join(f"{p} img/s" for p in precs) + " |",
             "|" + "---|" * (len(precs) + 1)]
    for m in models:
        cells = []
        for p in precs:
            t = best[p].get(m)
            cells.append("-" if t is None else
                         f"{t.images_per_s:.1f} ({'channels_last' if t.channels_last else 'NCHW'})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    rs = ratios_per_precision(best, blocks)
    pairs = sorted({k for r in rs.values() for k in r})
    lines.append("")
    for pair in pairs:
        lines.append(f"- {pair} training speed-up: " + ", ".join(
            f"{p} {rs[p][pair]:.2f}×" for p in precs if pair in rs[p]))
    return lines
