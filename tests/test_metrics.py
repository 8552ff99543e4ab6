"""lkmseg.metrics: the one Dice/IoU every part of the toolkit uses."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lkmseg import metrics

PKG = Path(__file__).resolve().parents[1] / "lkmseg"


def test_dice_and_iou_values():
    a = np.zeros((4, 4), np.uint8)
    b = np.zeros((4, 4), np.uint8)
    a[:2] = 1  # 8 pixels
    b[1:3] = 1  # 8 pixels, 4 shared
    assert metrics.dice(a, b) == pytest.approx(2 * 4 / 16)
    assert metrics.iou(a, b) == pytest.approx(4 / 12)
    assert metrics.dice(a, a) == 1.0 and metrics.iou(a, 1 - a) == 0.0
    empty = np.zeros((3, 3), bool)
    assert metrics.dice(empty, empty) == 1.0 and metrics.iou(empty, empty) == 1.0
    assert metrics.dice(a * 255, b) == metrics.dice(a, b)  # any non-zero is foreground


def test_pooled_worst_and_mean():
    big = np.ones((10, 10), bool)
    tiny_a = np.zeros((10, 10), bool)
    tiny_a[0, 0] = True
    tiny_b = np.zeros((10, 10), bool)
    tiny_b[0, 1] = True
    pooled, worst = metrics.agreement([big, tiny_a], [big, tiny_b])
    assert pooled == pytest.approx(200 / 202) and worst == 0.0
    assert metrics.pooled_dice([big, tiny_a], [big, tiny_b]) == pooled
    assert metrics.mean_dice([big, tiny_a], [big, tiny_b]) == pytest.approx(0.5)
    # missing or mismatched targets are skipped; none at all -> None
    assert metrics.mean_dice([big, tiny_a], [None, np.ones((2, 2))]) is None
    assert metrics.mean_dice([big, tiny_a], [big, None]) == 1.0


def test_torch_form_matches_numpy():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(5, 1, 16, 16, generator=g) > 0.5
    t = torch.rand(5, 1, 16, 16, generator=g) > 0.3
    p[4] = False
    t[4] = False
    got = metrics.dice_per_image(p, t).tolist()
    want = [metrics.dice(p[i].numpy(), t[i].numpy()) for i in range(5)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[4] == 1.0


def test_dice_is_computed_only_in_metrics():
    """No other module computes an overlap of masks (a second Dice or IoU definition)."""
    pattern = re.compile(r"logical_and|2(\.0)? \* inter|inter(section)? / (union|total)")
    hits = [f"{p.relative_to(PKG)}:{i} {line.strip()}"
            for p in PKG.rglob("*.py") if p.name != "metrics.py"
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits
    assert pattern.search((PKG / "metrics.py").read_text())  # the check itself sees a Dice
