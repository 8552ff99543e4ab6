"""The study's verdict per runtime: does the separable block (1xK) beat the square one (KxK)
on this machine, for every runtime x precision measured?

A pair is compared at batch 1 (else the smallest batch measured). The separable block
*wins* when it is more than ``TIE`` faster without losing more than the Dice tolerance,
*ties* when the latencies are within ``TIE`` of each other, and *loses* otherwise (slower, or
faster but less accurate).
"""

from __future__ import annotations

TIE = 0.05  # latencies within 5% of each other are a tie (run-to-run noise on a shared CPU)


def _pairs(rows: list[dict]) -> list[tuple[dict, dict]]:
    """(separable row, square row) of the same kernel, engine, precision and batch."""
    ok = [r for r in rows if r["status"] == "ok" and r.get("latency_ms_p50")]
    if not ok:
        return []
    batch = min(r["batch"] for r in ok)
    ok = [r for r in ok if r["batch"] == batch]
    square = {(r["kernel"], r["engine"], r["precision"]): r for r in ok
              if r.get("family") in ("square", "double3")}
    return [(r, square[(r["kernel"], r["engine"], r["precision"])]) for r in ok
            if r.get("family") == "separable" and (r["kernel"], r["engine"], r["precision"])
            in square]


def judge(sep: dict, sq: dict, dice_tol: float = 0.005) -> str:
    speedup = sq["latency_ms_p50"] / sep["latency_ms_p50"]
    worse = (sep.get("dice") is not None and sq.get("dice") is not None
             and sep["dice"] < sq["dice"] - dice_tol)
    if abs(speedup - 1) <= TIE:
        return "ties" + (" (and less accurate)" if worse else "")
    if speedup > 1:
        return "loses (faster but less accurate)" if worse else "wins"
    return "loses"


def verdicts(rows: list[dict]) -> list[dict]:
    out = []
    for sep, sq in _pairs(rows):
        out.append({"pair": f"{sep['block']} vs {sq['block']}", "engine": sep["engine"],
                    "precision": sep["precision"], "batch": sep["batch"],
                    "sep_ms": sep["latency_ms_p50"], "square_ms": sq["latency_ms_p50"],
                    "speedup": sq["latency_ms_p50"] / sep["latency_ms_p50"],
                    "sep_dice": sep.get("dice"), "square_dice": sq.get("dice"),
                    "verdict": judge(sep, sq)})
    return out


def _d(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def separable_table(rows: list[dict]) -> list[str]:
    """Markdown: one line per pair x runtime x precision, and a one-line summary."""
    vs = verdicts(rows)
    if not vs:
        return ["(no separable/square pair measured on a common runtime x precision)"]
    lines = ["**Separable vs square, per runtime x precision** (batch "
             f"{vs[0]['batch']}; wins = >{TIE:.0%} faster at equal Dice, ties = within "
             f"{TIE:.0%})", "",
             "| pair | runtime | precision | 1xK ms | KxK ms | speed-up | 1xK Dice | KxK Dice "
             "| verdict |", "|" + "---|" * 9]
    for v in vs:
        lines.append(f"| {v['pair']} | {v['engine']} | {v['precision']} | {v['sep_ms']:.2f} | "
                     f"{v['square_ms']:.2f} | {v['speedup']:.2f}x | {_d(v['sep_dice'])} | "
                     f"{_d(v['square_dice'])} | {v['verdict']} |")
    counts = {k: sum(v["verdict"].startswith(k) for v in vs) for k in ("wins", "ties", "loses")}
    lines += ["", f"On this machine the separable block wins {counts['wins']}, ties "
                  f"{counts['ties']} and loses {counts['loses']} of {len(vs)} runtime x "
                  "precision comparisons."]
    return lines
