"""One training step — forward with the BCE-Dice loss, backward, optimizer update — as
``train`` runs it; autotune and bench time the same step."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from lkmseg.train.losses import bce_dice_loss

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` in the chosen memory layout, whatever its strides were."""
    return x.contiguous(memory_format=torch.channels_last if channels_last
                        else torch.contiguous_format)


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def forward_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 dtype: torch.dtype | None) -> torch.Tensor:
    """(B, 3, H, W) images, (B, 1, H, W) masks -> the loss, under autocast to ``dtype``."""
    with autocast(x.device, dtype):
        logits = net(x)
    return bce_dice_loss(logits, y)


def update(loss: torch.Tensor, opt: torch.optim.Optimizer,
           scaler: torch.amp.GradScaler) -> None:
    """Backward and optimizer step (gradients already zeroed)."""
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()


def optimizer(model: nn.Module, lr: float, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def timed_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str,
               channels_last: bool, compile_: bool = False) -> Callable[[], None]:
    """One training step on a fixed batch, on a copy of ``model``: what timing measures."""
    m = copy.deepcopy(model).to(x.device).train()
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    x = layout(x, channels_last)
    net = torch.compile(m) if compile_ else m
    opt = optimizer(m, 1e-4)
    scaler = torch.amp.GradScaler(x.device.type, enabled=precision == "fp16")
    dtype = DTYPES[precision]

    def step() -> None:
        loss = forward_loss(net, x, y, dtype)
        opt.zero_grad(set_to_none=True)
        update(loss, opt, scaler)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    return step
