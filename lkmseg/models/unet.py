"""The seed study's U-Net, with a pluggable block.

Defaults: base width 8, six 2x2 max-poolings (widths 8..256), a 512-channel center block,
encoder features concatenated into the decoder, parameter-free nearest upsampling, and a
1x1 head with one logit channel. Inputs of any size are zero-padded up to a multiple of
2**depth and the logits cropped back, with no Python-side branching on shapes (exportable).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lkmseg.models.blocks import make_block
from lkmseg.models.modelconfig import ModelConfig


class UNet(nn.Module):
    surgery_parts = {"encoder": ("down", "center"), "decoder": ("up",)}  # for `where`

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        spec = cfg.spec
        widths = [cfg.width * 2**i for i in range(cfg.depth)]  # 8, 16, ..., 256
        center = cfg.center or cfg.width * 2**cfg.depth
        self.multiple = 2**cfg.depth
        self.down = nn.ModuleList()
        cin = cfg.in_channels
        for w in widths:
            self.down.append(make_block(spec, cin, w))
            cin = w
        self.center = make_block(spec, cin, center)
        self.up = nn.ModuleList()
        cin = center
        for w in reversed(widths):
            self.up.append(make_block(spec, cin + w, w))
            cin = w
        self.head = nn.Conv2d(cin, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 1, H, W) logits
        h, w = x.shape[-2], x.shape[-1]
        pad_h = (self.multiple - h % self.multiple) % self.multiple
        pad_w = (self.multiple - w % self.multiple) % self.multiple
        x = F.pad(x, (0, pad_w, 0, pad_h))
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.center(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)[..., :h, :w]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
