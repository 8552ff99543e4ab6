"""``ModelConfig``: the ``model`` part of config.json, everything needed to rebuild a model."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from lkmseg.errors import UserError
from lkmseg.models.blocks import BlockSpec, parse_block
from lkmseg.models.surgery import parse_form

ARCHS = "unet or smp:<Arch>:<encoder> (e.g. smp:Unet:resnet34, smp:FPN:mobilenet_v2)"
NATIVE = "KxK"  # surgery's "every square conv keeps its kernel": a model as its library builds it


def parse_arch(name: str) -> tuple[str, str, str] | None:
    """``unet`` -> None; ``smp:Unet:resnet34`` -> ("smp", "Unet", "resnet34")."""
    if name == "unet":
        return None
    m = re.fullmatch(r"smp:([A-Za-z0-9_+]+):([A-Za-z0-9_.\-]+)", str(name))
    if not m:
        raise UserError(f"unknown arch {name!r}: choose {ARCHS}")
    return "smp", m.group(1), m.group(2)


@dataclass
class ModelConfig:
    # unet: its block (default 3x3). Other archs: what surgery makes of their square convs
    # (default KxK: each keeps its kernel, the model as built).
    block: str | None = None
    width: int = 8  # unet only, like depth and center
    depth: int = 6
    in_channels: int = 3
    center: int | None = None  # defaults to width * 2**depth (512 for the seed)
    arch: str = "unet"
    where: str = "all"  # the part surgery changes: all, encoder, decoder or a regex on names
    rank: int | float | None = None  # intermediate channels of surgery's pairs (None: out ch.)
    base: str | None = None  # unet: the block built before surgery (None: `block` itself)
    encoder_weights: str | None = None  # smp: pretrained encoder weights a training starts from

    def __post_init__(self) -> None:
        unet = parse_arch(self.arch) is None
        if self.block is None:
            self.block = "3x3" if unet else NATIVE
        if not isinstance(self.where, str) or not self.where:
            raise UserError(f"where {self.where!r}: choose all, encoder, decoder or a regular "
                            "expression on layer names")
        if not unet:
            if self.base is not None:
                raise UserError(f"model.base {self.base!r} applies to --arch unet only")
            self.block = parse_form(self.block).name
            return
        if self.encoder_weights is not None:
            raise UserError("--encoder-weights applies to --arch smp:... only")
        if self.base is None and self.where != "all":  # the rest stays square, same kernel
            k = parse_block(self.block).kernel
            self.base = "3x3" if k == 3 else f"{k}x{k}"
        if self.base is None:
            self.block = parse_block(self.block).name
        else:
            self.base = parse_block(self.base).name
            self.block = parse_form(self.block).name

    @property
    def spec(self) -> BlockSpec:
        """The block's name, family and kernel (0: each conv keeps its own)."""
        if parse_arch(self.arch) is None and self.base is None:
            return parse_block(self.block)
        form = parse_form(self.block)
        return BlockSpec(name=form.name, family=form.family, kernel=form.kernel or 0)

    def to_dict(self) -> dict:
        return asdict(self)
