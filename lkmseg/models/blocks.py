"""Convolution blocks, chosen by name.

Names (k odd, 1 < k <= 31):
  ``3x3``   two (3x3 conv, BN, ReLU)                      — the seed's square baseline
  ``KxK``   one (KxK conv, BN, ReLU), e.g. ``5x5``, ``7x7``
  ``1xK``   1xK conv then Kx1 conv, then BN, ReLU          — separable
  ``gcnK``  (Kx1 -> 1xK) + (1xK -> Kx1), summed, then BN, ReLU  — "Large Kernel Matters" GCN
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from lkmseg.errors import UserError

VALID_FORMS = "3x3, 5x5, 1x5, KxK, 1xK, gcnK (K odd, 3..31)"
_MAX_K = 31


@dataclass(frozen=True)
class BlockSpec:
    """A parsed block name: ``family`` is one of double3, square, separable, gcn."""

    name: str
    family: str
    kernel: int


def parse_block(name: str, kernel: int | None = None) -> BlockSpec:
    """Parse ``3x3`` / ``KxK`` / ``1xK`` / ``gcnK``; ``kernel`` fills a literal ``K``.

    >>> parse_block("1x5")
    BlockSpec(name='1x5', family='separable', kernel=5)
    """
    raw = str(name).strip().lower()
    if kernel is not None:
        raw = raw.replace("k", str(int(kernel))) if raw in ("kxk", "1xk", "gcnk") else raw
    m_sq = re.fullmatch(r"(\d+)x(\d+)", raw)
    m_gcn = re.fullmatch(r"gcn(\d+)", raw)
    if m_sq and m_sq.group(1) == "1":
        family, k = "separable", int(m_sq.group(2))
    elif m_sq and m_sq.group(1) == m_sq.group(2):
        k = int(m_sq.group(1))
        family = "double3" if k == 3 else "square"
    elif m_gcn:
        family, k = "gcn", int(m_gcn.group(1))
    else:
        raise UserError(f"unknown block '{name}': choose from {VALID_FORMS}")
    if k % 2 == 0 or not 1 < k <= _MAX_K:
        raise UserError(f"block '{name}': kernel must be odd and between 3 and {_MAX_K}")
    if kernel is not None and k != int(kernel):
        raise UserError(f"block '{name}' has kernel {k} but --kernel {kernel} was given: "
                        f"use --block {family_name(family, int(kernel))}")
    return BlockSpec(name=family_name(family, k), family=family, kernel=k)


def family_name(family: str, k: int) -> str:
    return {"double3": "3x3", "square": f"{k}x{k}", "separable": f"1x{k}",
            "gcn": f"gcn{k}"}[family]


def _conv(cin: int, cout: int, kh: int, kw: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, (kh, kw), padding=(kh // 2, kw // 2), bias=bias)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__(_conv(cin, cout, k, k), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DoubleConv3(nn.Sequential):
    """The seed's ``3x3`` block: two (3x3 conv, BN, ReLU)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(ConvBNReLU(cin, cout, 3), ConvBNReLU(cout, cout, 3))


class SeparableBlock(nn.Sequential):
    """``1xK``: 1xK conv (cin->cout), Kx1 conv (cout->cout), then BN, ReLU."""

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__(_conv(cin, cout, 1, k), _conv(cout, cout, k, 1),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class GCNBlock(nn.Module):
    """Global Convolutional Network module (Peng et al. 2017), followed by BN, ReLU.

    Two branches, (Kx1 -> 1xK) and (1xK -> Kx1), summed; no nonlinearity inside.
    """

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.left = nn.Sequential(_conv(cin, cout, k, 1), _conv(cout, cout, 1, k))
        self.right = nn.Sequential(_conv(cin, cout, 1, k), _conv(cout, cout, k, 1))
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, cin, H, W) -> (B, cout, H, W)
        return self.act(self.bn(self.left(x) + self.right(x)))


def make_block(spec: BlockSpec | str, cin: int, cout: int) -> nn.Module:
    """Build the block ``spec`` mapping ``cin`` to ``cout`` channels, same spatial size."""
    spec = parse_block(spec) if isinstance(spec, str) else spec
    if spec.family == "double3":
        return DoubleConv3(cin, cout)
    if spec.family == "square":
        return ConvBNReLU(cin, cout, spec.kernel)
    if spec.family == "separable":
        return SeparableBlock(cin, cout, spec.kernel)
    return GCNBlock(cin, cout, spec.kernel)
