"""The separable-vs-square verdict per runtime x precision, the Pareto front, and the status
rules of bench rows (pure functions on made-up rows: no timing)."""

from __future__ import annotations

from lkmseg.bench import rows as rowlib
from lkmseg.bench.fastest import fastest_gated
from lkmseg.bench.pareto import front
from lkmseg.bench.verdict import judge, separable_table, verdicts


def _row(block: str, family: str, engine: str, prec: str, ms: float, dice: float,
         batch: int = 1, status: str = "ok") -> dict:
    return {"model": block, "block": block, "kernel": 5, "family": family, "engine": engine,
            "precision": prec, "batch": batch, "latency_ms_p50": ms, "dice": dice,
            "status": status}


def test_verdict_wins_ties_loses():
    sq = _row("5x5", "square", "openvino", "int8", 10.0, 0.97)
    assert judge(_row("1x5", "separable", "openvino", "int8", 5.0, 0.97), sq) == "wins"
    assert judge(_row("1x5", "separable", "openvino", "int8", 9.8, 0.97), sq) == "ties"
    assert judge(_row("1x5", "separable", "openvino", "int8", 12.0, 0.97), sq) == "loses"
    assert judge(_row("1x5", "separable", "openvino", "int8", 5.0, 0.95), sq).startswith(
        "loses (faster but less accurate")


def test_separable_table_pairs_same_runtime_precision_and_batch():
    rows = [_row("5x5", "square", "torch", "fp32", 20, 0.97),
            _row("1x5", "separable", "torch", "fp32", 10, 0.975),
            _row("5x5", "square", "openvino", "int8", 4.0, 0.97),
            _row("1x5", "separable", "openvino", "int8", 3.9, 0.971),
            _row("5x5", "square", "openvino", "int8", 30, 0.97, batch=8),  # other batch
            _row("1x5", "separable", "openvino", "bf16", 5, 0.97),  # no square partner
            _row("5x5", "square", "onnxruntime", "int8", 1, 0.9, status="skipped: x")]
    vs = {(v["engine"], v["precision"]): v for v in verdicts(rows)}
    assert set(vs) == {("torch", "fp32"), ("openvino", "int8")}
    assert vs[("torch", "fp32")]["verdict"] == "wins" and vs[("torch", "fp32")]["speedup"] == 2
    assert vs[("openvino", "int8")]["verdict"] == "ties"
    text = "\n".join(separable_table(rows))
    assert "| 1x5 vs 5x5 | openvino | int8 | 3.90 | 4.00 | 1.03x |" in text
    assert "wins 1, ties 1 and loses 0 of 2" in text


def test_pareto_front():
    pts = [{"latency_ms_p50": 10, "dice": 0.97}, {"latency_ms_p50": 4, "dice": 0.96},
           {"latency_ms_p50": 5, "dice": 0.95}, {"latency_ms_p50": 20, "dice": 0.975}]
    assert [p["latency_ms_p50"] for p in front(pts)] == [4, 10, 20]


def test_dice_gate_rule():
    assert rowlib.dice_gate(0.970, 0.972, "int8", 0.005).ok
    bad = rowlib.dice_gate(0.960, 0.972, "int8", 0.005)
    assert bad.status.startswith("failed: accuracy gate") and bad.kind == "gate"
    assert rowlib.dice_gate(0.5, 0.972, "fp32", 0.005).ok  # fp32 is the reference
    assert rowlib.dice_gate(None, 0.972, "bf16", 0.005).ok  # no ground truth: export decides
    assert rowlib.combos(["onnxruntime", "torch"], "cpu")[0] == ("torch", "fp32")
    assert ("torch", "fp16") not in rowlib.combos(["torch"], "cpu")


def test_fastest_gated_row_per_model():
    rows = [_row("5x5", "square", "torch", "fp32", 30.0, 0.9250),
            _row("5x5", "square", "openvino", "int8", 4.0, 0.9259),
            _row("5x5", "square", "onnxruntime", "int8", 1.0, 0.90, status="failed: gate"),
            _row("5x5", "square", "openvino", "bf16", 3.0, 0.92, batch=8),  # other batch
            _row("1x5", "separable", "torch", "fp32", 16.0, 0.9671),
            _row("1x5", "separable", "openvino", "bf16", 5.0, 0.9669),
            _row("1x5", "separable", "onnxruntime", "int8", 6.0, 0.9670),
            _row("3x3", "double3", "onnxruntime", "fp32", 9.0, 0.98)]  # no torch fp32 row
    lines = fastest_gated(rows)
    assert lines[0] == "**Fastest inside the accuracy gate** (batch 1, p50)"
    assert lines[4] == ("| 5x5 | 30.00 | openvino int8 | 4.00 | 7.50× | 0.9250 | 0.9259 | "
                        "openvino +0.0009, onnxruntime -0.0250 |")
    assert lines[5] == ("| 1x5 | 16.00 | openvino bf16 | 5.00 | 3.20× | 0.9671 | 0.9669 | "
                        "onnxruntime -0.0001 |")
    assert len(lines) == 6  # title, blank, head, rule, 5x5, 1x5 (3x3 has no reference)
    skipped = _row("5x5", "square", "torch", "fp32", 1, 0.9, status="skipped: x")
    assert fastest_gated([skipped]) == []
