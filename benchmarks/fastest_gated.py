"""Summarise a bench.json: per model and batch size, torch fp32 latency, the fastest row that
passed its accuracy gate (status "ok"), its speed-up, and every INT8 row's Dice against the
model's fp32 Dice — the figures issue 8's done-criteria ask for.

    python benchmarks/fastest_gated.py benchmarks/results/<run>/bench.json [--batch 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def summarise(rows: list[dict], batch: int) -> list[str]:
    lines = ["| block | torch fp32 p50 ms | fastest gated | its p50 ms | speed-up | Dice fp32 "
             "| Dice fastest | INT8 rows: Dice − fp32 |", "|" + "---|" * 8]
    models = list(dict.fromkeys(r["model"] for r in rows))
    for m in models:
        mine = [r for r in rows if r["model"] == m and r["batch"] == batch]
        ok = [r for r in mine if r["status"] == "ok" and r.get("latency_ms_p50")]
        ref = next((r for r in ok if r["engine"] == "torch" and r["precision"] == "fp32"), None)
        if ref is None or not ok:
            continue
        best = min(ok, key=lambda r: r["latency_ms_p50"])
        int8 = [f"{r['engine']} {r['dice'] - ref['dice']:+.4f}" for r in mine
                if r["precision"] == "int8" and r.get("dice") is not None]
        lines.append(f"| {ref['block']} | {ref['latency_ms_p50']:.2f} | {best['engine']} "
                     f"{best['precision']} | {best['latency_ms_p50']:.2f} | "
                     f"{ref['latency_ms_p50'] / best['latency_ms_p50']:.2f}x | "
                     f"{ref['dice']:.4f} | {best['dice']:.4f} | {', '.join(int8) or '-'} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench_json", type=Path)
    ap.add_argument("--batch", type=int, default=1)
    a = ap.parse_args()
    print("\n".join(summarise(json.loads(a.bench_json.read_text()), a.batch)))


if __name__ == "__main__":
    main()
