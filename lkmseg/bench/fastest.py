"""Per model: torch fp32's latency, the fastest row inside its accuracy gate (status "ok"), the
speed-up, and every INT8 row's Dice against fp32 — the deployment answer of a bench."""

from __future__ import annotations


def fastest_gated(rows: list[dict], batch: int | None = None) -> list[str]:
    """A markdown table at ``batch`` (default: the smallest measured); [] when nothing ran."""
    timed = [r for r in rows if r["status"] == "ok" and r.get("latency_ms_p50")]
    if not timed:
        return []
    batch = batch or min(r["batch"] for r in timed)
    lines = [f"**Fastest inside the accuracy gate** (batch {batch}, p50)", "",
             "| model | torch fp32 ms | fastest gated | its ms | speed-up | Dice fp32 | "
             "Dice fastest | INT8 rows: Dice − fp32 |", "|" + "---|" * 8]
    for m in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == m and r["batch"] == batch]
        ok = [r for r in timed if r["model"] == m and r["batch"] == batch]
        ref = next((r for r in ok if r["engine"] == "torch" and r["precision"] == "fp32"), None)
        if ref is None:
            continue
        best = min(ok, key=lambda r: r["latency_ms_p50"])
        int8 = [f"{r['engine']} {r['dice'] - ref['dice']:+.4f}" for r in mine
                if r["precision"] == "int8" and r.get("dice") is not None
                and ref.get("dice") is not None]
        lines.append(f"| {m} | {ref['latency_ms_p50']:.2f} | {best['engine']} "
                     f"{best['precision']} | {best['latency_ms_p50']:.2f} | "
                     f"{ref['latency_ms_p50'] / best['latency_ms_p50']:.2f}× | "
                     f"{_dice(ref)} | {_dice(best)} | {', '.join(int8) or '-'} |")
    return lines if len(lines) > 4 else []


def _dice(r: dict) -> str:
    return "-" if r.get("dice") is None else f"{r['dice']:.4f}"
