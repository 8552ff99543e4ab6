"""Reading ``RUN/export/report.json``: which engine x precision export found accurate enough.

Export writes, beside the parity figures of each format, an ``accuracy_gate`` section::

    "accuracy_gate": {
      "tolerance": 0.005, "images": 96, "origin": "val_items",
      "reference": {"engine": "torch", "precision": "fp32", "dice": 0.981},
      "candidates": {"openvino/int8": {"dice": 0.979, "delta": -0.002, "passed": true}, ...}
    }

Engines (``auto``) read the verdicts from here: they never import the export code.
"""

from __future__ import annotations

import json
from pathlib import Path

from lkmseg.files.layout import ONNX_FILES, REPORT

# precision -> the report's format key whose parity verdict covers it
PARITY_KEY = {"fp32": "onnx_fp32", "fp16": "onnx_fp16"}


def read_report(export_dir: str | Path) -> dict | None:
    """The export report in ``export_dir``, or None when there is none or it is unreadable
    (a missing verdict then counts as "not checked", never as "passed")."""
    p = Path(export_dir) / REPORT
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def candidate_key(engine: str, precision: str) -> str:
    return f"{engine}/{precision}"


def varies(report: dict | None, engine: str, precision: str) -> str | None:
    """Why ``engine``/``precision`` is not used on this machine when export found its answers
    changing from one load of the file to the next (any precision, fp32 included); None when
    they did not (or it was not checked: reports from before the check)."""
    gate = (report or {}).get("accuracy_gate") or {}
    entry = (gate.get("candidates") or {}).get(candidate_key(engine, precision)) or {}
    if entry.get("reproducible") is False:
        return entry.get("reason") or "answers vary between loads on this machine"
    return None


def gate_verdict(report: dict | None, engine: str, precision: str) -> tuple[bool, str]:
    """(True, why) when export checked ``engine``/``precision`` and it met its bar.

    fp32 is the reference (only its parity can fail it); fp16 has the parity bar; bf16 and
    int8 need a passed entry in ``accuracy_gate``."""
    why = varies(report, engine, precision)
    if why is not None:
        return False, why
    if precision in PARITY_KEY:
        fmt = (report or {}).get("formats", {}).get(PARITY_KEY[precision], {})
        if fmt.get("passed") is False:
            return False, f"{ONNX_FILES[precision]} failed export's parity check"
        if precision == "fp32" or fmt.get("passed"):
            return True, "parity passed" if fmt.get("passed") else "fp32 reference"
    gate = (report or {}).get("accuracy_gate") or {}
    entry = (gate.get("candidates") or {}).get(candidate_key(engine, precision))
    if entry is None:
        return False, (f"{engine} {precision} accuracy not checked by export; "
                       "re-export with `lkmseg export RUN`")
    tol = gate.get("tolerance")
    dice, delta = entry.get("dice"), entry.get("delta")
    figures = (f"Dice {dice:.4f} ({delta:+.4f} vs fp32, gate {tol})"
               if isinstance(dice, (int, float)) and isinstance(delta, (int, float)) else
               entry.get("reason", "no figures"))
    return bool(entry.get("passed")), figures
