"""Architectures by name, and the one model factory every command uses.

``unet`` is the seed study's U-Net (``lkmseg.models.unet``); ``smp:<Arch>:<encoder>`` is a
segmentation_models_pytorch model (the optional ``smp`` extra), e.g. ``smp:Unet:resnet34`` or
``smp:FPN:mobilenet_v2``, with one output channel. ``ModelConfig.block`` then names what
surgery (``lkmseg.models.surgery``) makes of its square convs in ``where``; ``KxK`` (every conv
keeps its kernel) is the model as smp builds it.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lkmseg.errors import UserError
from lkmseg.models.modelconfig import ARCHS, NATIVE, ModelConfig, parse_arch
from lkmseg.models.surgery import separable
from lkmseg.models.unet import UNet

__all__ = ["ARCHS", "PaddedSegmenter", "build_model", "parse_arch", "smp_available"]


def _import_smp():
    try:
        import segmentation_models_pytorch as smp
    except (ImportError, OSError, RuntimeError) as e:  # missing, or a torchvision built for
        # another torch (its compiled operators then fail to load or register)
        raise UserError(f"--arch smp:... needs segmentation-models-pytorch and a torchvision "
                        f"built for this torch {torch.__version__} ({e}); install them with "
                        "pip install 'lkmseg[smp]' (and the matching torch/torchvision pair)") \
            from None
    return smp


def smp_available() -> str | None:
    """None when smp imports here, else why not (for tests to skip with)."""
    try:
        _import_smp()
    except UserError as e:
        return str(e)
    return None


class PaddedSegmenter(nn.Module):
    """A model that needs sides divisible by ``multiple`` made to take any size: zero-pad the
    input up to the multiple, crop the logits back (as the seed U-Net does)."""

    surgery_parts = {"encoder": ("net.encoder",), "decoder": ("net.decoder",)}

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net, self.multiple = net, multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 1, H, W) logits
        h, w = x.shape[-2], x.shape[-1]
        pad_h = (self.multiple - h % self.multiple) % self.multiple
        pad_w = (self.multiple - w % self.multiple) % self.multiple
        return self.net(F.pad(x, (0, pad_w, 0, pad_h)))[..., :h, :w]


def _weights_help(smp, encoder: str, weights: str, err: Exception) -> UserError:
    settings = smp.encoders.encoders[encoder]["pretrained_settings"][weights]
    hub = os.environ.get("HF_HUB_CACHE") or Path(os.environ.get(
        "HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    return UserError(f"--encoder-weights {weights}: could not get {settings['repo_id']} "
                     f"(revision {settings['revision']}; {type(err).__name__}); on a machine "
                     f"online run `huggingface-cli download {settings['repo_id']} --revision "
                     f"{settings['revision']}` and copy the Hugging Face cache into {hub}, or "
                     "use --encoder-weights none")


def build_smp(arch: str, encoder: str, in_channels: int = 3,
              weights: str | None = None) -> PaddedSegmenter:
    """An smp model with one output channel, padded to take any input size."""
    smp = _import_smp()
    if arch.lower() not in smp.MODEL_ARCHITECTURES_MAPPING:
        raise UserError(f"unknown smp architecture {arch!r}: choose from "
                        f"{', '.join(sorted(smp.MODEL_ARCHITECTURES_MAPPING))}")
    names = smp.encoders.get_encoder_names()
    if encoder not in names:
        raise UserError(f"unknown smp encoder {encoder!r}: choose from {', '.join(names)}")
    known = list(smp.encoders.encoders[encoder]["pretrained_settings"])
    if weights is not None and weights not in known:
        raise UserError(f"--encoder-weights {weights}: {encoder} has {', '.join(known)} "
                        "(or none)")
    try:
        net = smp.create_model(arch, encoder_name=encoder, encoder_weights=weights,
                               in_channels=in_channels, classes=1)
    except OSError as e:  # the weights are neither cached nor downloadable
        raise _weights_help(smp, encoder, weights, e) from e
    net.requires_divisible_input_shape = False  # PaddedSegmenter pads every input
    return PaddedSegmenter(net, int(net.encoder.output_stride))


def build_model(cfg: ModelConfig | dict | str, pretrained: bool = False) -> nn.Module:
    """Build the model a ModelConfig (or its dict form in config.json, or a block name)
    describes: the architecture, then the surgery its block/where/rank name. ``pretrained``:
    load the encoder weights it names (only when a training run starts)."""
    if isinstance(cfg, str):
        cfg = ModelConfig(block=cfg)
    elif isinstance(cfg, dict):
        cfg = ModelConfig(**cfg)
    arch = parse_arch(cfg.arch)
    if arch is None:
        if cfg.base is None:
            return UNet(cfg)
        model = UNet(replace(cfg, block=cfg.base, base=None, where="all", rank=None))
    else:
        model = build_smp(arch[1], arch[2], cfg.in_channels,
                          cfg.encoder_weights if pretrained else None)
        if cfg.block == NATIVE:
            return model
    return separable(model, cfg.block, cfg.where, rank=cfg.rank, flops=False)[0]
