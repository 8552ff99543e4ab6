"""Surgery on any PyTorch model: square k x k convolutions become KxK, 1xK then Kx1, or GCN.

``separable(model, "1x5")`` replaces every plain ``nn.Conv2d`` with a square kernel k >= 3 (in
the part ``where`` names) and keeps what the layer does to shapes: channels, stride (a strided
conv becomes 1xK with stride (1, s) then Kx1 with stride (s, 1)), dilation, padding and its
mode, groups (a depthwise conv becomes a depthwise pair) and bias. 1x1 convs, non-square convs
and subclasses of ``nn.Conv2d`` (their forward may differ) are left alone. ``init="svd"`` fits
the new layers to the trained kernels (``lkmseg.models.svd``); afterwards re-estimate the
BatchNorm statistics (``recalibrate_bn``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from lkmseg.errors import UserError
from lkmseg.models.blocks import parse_block
from lkmseg.models.surgery_report import Change, SurgeryReport, conv_flops, describe_conv
from lkmseg.models.svd import compose, fit_kernel, separable_factors

FORMS = "KxK (e.g. 5x5), 1xK (e.g. 1x5), gcnK (e.g. gcn15); a literal K keeps each conv's k"
INITS = ("scratch", "svd")
WHERE = "all, encoder, decoder or a regular expression on layer names"

__all__ = ["FORMS", "Form", "GCNConv2d", "SeparableConv2d", "SurgeryReport", "parse_form",
           "recalibrate_bn", "separable", "square_convs"]


@dataclass(frozen=True)
class Form:
    """What a square conv becomes: ``family`` square | separable | gcn; ``kernel`` None keeps
    each conv's own k."""

    family: str
    kernel: int | None

    def k_for(self, k: int) -> int:
        return self.kernel or k

    @property
    def name(self) -> str:
        k = str(self.kernel) if self.kernel else "K"
        return {"square": f"{k}x{k}", "separable": f"1x{k}", "gcn": f"gcn{k}"}[self.family]


def parse_form(block: str) -> Form:
    """``1x5`` / ``7x7`` / ``gcn15``, or ``1xK`` / ``KxK`` / ``gcnK`` (each conv keeps its k)."""
    raw = str(block).strip().lower()
    literal = {"kxk": "square", "1xk": "separable", "gcnk": "gcn"}
    if raw in literal:
        return Form(literal[raw], None)
    try:
        spec = parse_block(raw)
    except UserError:
        raise UserError(f"unknown block '{block}': choose {FORMS}") from None
    return Form("square" if spec.family == "double3" else spec.family, spec.kernel)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class SeparableConv2d(nn.Sequential):
    """1xK (cin -> mid) then Kx1 (mid -> cout), no nonlinearity: a drop-in for a KxK conv.
    ``stride``, ``padding``, ``dilation`` are (height, width); each conv takes its axis."""

    def __init__(self, cin: int, cout: int, k: int, mid: int | None = None, stride=1,
                 padding=0, dilation=1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device=None, dtype=None) -> None:
        mid = mid or cout
        (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
        ph, pw = (padding, padding) if isinstance(padding, str) else _pair(padding)
        kw = {"groups": groups, "padding_mode": padding_mode, "device": device, "dtype": dtype}
        super().__init__(
            nn.Conv2d(cin, mid, (1, k), (1, sw), pw if isinstance(pw, str) else (0, pw),
                      (1, dw), bias=False, **kw),
            nn.Conv2d(mid, cout, (k, 1), (sh, 1), ph if isinstance(ph, str) else (ph, 0),
                      (dh, 1), bias=bias, **kw))


class GCNConv2d(nn.Module):
    """The GCN of "Large Kernel Matters" as a drop-in conv: (Kx1 -> 1xK) + (1xK -> Kx1)."""

    def __init__(self, cin: int, cout: int, k: int, mid: int | None = None, stride=1,
                 padding=0, dilation=1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device=None, dtype=None) -> None:
        super().__init__()
        mid = mid or cout
        (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
        ph, pw = (padding, padding) if isinstance(padding, str) else _pair(padding)
        kw = {"groups": groups, "padding_mode": padding_mode, "device": device, "dtype": dtype}
        self.left = nn.Sequential(
            nn.Conv2d(cin, mid, (k, 1), (sh, 1), ph if isinstance(ph, str) else (ph, 0),
                      (dh, 1), bias=False, **kw),
            nn.Conv2d(mid, cout, (1, k), (1, sw), pw if isinstance(pw, str) else (0, pw),
                      (1, dw), bias=False, **kw))
        self.right = SeparableConv2d(cin, cout, k, mid, stride, padding, dilation, groups, bias,
                                     padding_mode, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, cin, H, W) -> (B, cout, H', W')
        return self.left(x) + self.right(x)


def _new_padding(conv: nn.Conv2d, k_new: int) -> tuple[object, str | None]:
    """Padding that keeps the output shape and sampling grid with a k_new kernel, or
    (None, why not)."""
    k, d = conv.kernel_size[0], conv.dilation
    if conv.padding == "same" or k_new == k:
        return conv.padding, None
    if (k_new - k) % 2:
        return None, f"kernel {k} cannot be centred in {k_new} (use a literal K)"
    p = (0, 0) if conv.padding == "valid" else conv.padding
    new = tuple(int(p[a]) + d[a] * (k_new - k) // 2 for a in range(2))
    if min(new) < 0:
        return None, f"padding {tuple(p)} is too small for a {k_new}x{k_new} kernel"
    return new, None


def _mid(conv: nn.Conv2d, rank: int | float | None) -> int:
    """Intermediate channels: out channels by default, ``rank`` channels (int) or that
    fraction of out channels (float <= 1), rounded up to a multiple of groups."""
    g = conv.groups
    if rank is None:
        m = conv.out_channels
    elif isinstance(rank, float):
        m = max(1, round(rank * conv.out_channels))
    else:
        m = int(rank)
    return -(-m // g) * g


def _replacement(conv: nn.Conv2d, form: Form, rank, padding) -> nn.Module:
    k = form.k_for(conv.kernel_size[0])
    kw = {"stride": conv.stride, "padding": padding, "dilation": conv.dilation,
          "groups": conv.groups, "bias": conv.bias is not None,
          "padding_mode": conv.padding_mode, "device": conv.weight.device,
          "dtype": conv.weight.dtype}
    if form.family == "square":
        return nn.Conv2d(conv.in_channels, conv.out_channels, k, **kw)
    cls = SeparableConv2d if form.family == "separable" else GCNConv2d
    return cls(conv.in_channels, conv.out_channels, k, _mid(conv, rank), **kw)


@torch.no_grad()
def _svd_init(conv: nn.Conv2d, new: nn.Module, form: Form) -> float:
    """Fit ``new``'s weights to ``conv``'s; returns the fraction of the kernel's energy kept."""
    w = conv.weight.detach()
    total = float((w.double() ** 2).sum()) or 1.0
    target = fit_kernel(w, form.k_for(w.shape[-1])).double()
    g = conv.groups
    if form.family == "square":
        new.weight.copy_(target)
        fitted = target
    else:
        pair = new if form.family == "separable" else new.right
        a, b, _ = separable_factors(target, pair[0].out_channels, g, "1xK")
        pair[0].weight.copy_(a)
        pair[1].weight.copy_(b)
        fitted = compose(a, b, g)
        if form.family == "gcn":  # the other branch fits what the first one missed
            a, b, _ = separable_factors(target - fitted, new.left[0].out_channels, g, "Kx1")
            new.left[0].weight.copy_(a)
            new.left[1].weight.copy_(b)
            fitted = fitted + compose(a, b, g)
    if conv.bias is not None:
        last = new if form.family == "square" else (new[1] if form.family == "separable"
                                                     else new.right[1])
        last.bias.copy_(conv.bias)
    # what is lost: the taps cropped away (a smaller K) plus the misfit of the rest
    lost = total - float((target ** 2).sum()) + float(((fitted - target) ** 2).sum())
    return 1.0 - lost / total


def _parts(model: nn.Module) -> dict[str, tuple[str, ...]] | None:
    """Name prefixes of the encoder and decoder: ``.encoder``/``.decoder`` children (smp and
    most encoder-decoder models), or a model's own ``surgery_parts``."""
    if isinstance(getattr(model, "encoder", None), nn.Module) and \
            isinstance(getattr(model, "decoder", None), nn.Module):
        return {"encoder": ("encoder",), "decoder": ("decoder",)}
    return getattr(model, "surgery_parts", None)


def square_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """(name, conv) of every square k x k conv with k >= 3, in module order."""
    return [(n, m) for n, m in model.named_modules(remove_duplicate=False)
            if isinstance(m, nn.Conv2d) and m.kernel_size[0] == m.kernel_size[1] >= 3]


def _selector(model: nn.Module, where: str) -> Callable[[str], bool]:
    if where == "all":
        return lambda name: True
    if where in ("encoder", "decoder"):
        parts = _parts(model)
        if parts is None:
            raise UserError(f"where={where!r}: {type(model).__name__} has no .encoder/.decoder "
                            f"children; choose all or a regular expression on layer names "
                            f"(e.g. {_examples(model)})")
        prefixes = parts[where]
        return lambda name: any(name == p or name.startswith(p + ".") for p in prefixes)
    try:
        pattern = re.compile(where)
    except re.error as e:
        raise UserError(f"where={where!r}: not a regular expression ({e}); choose {WHERE}") \
            from None
    return lambda name: pattern.search(name) is not None


def _examples(model: nn.Module) -> str:
    names = [n for n, _ in square_convs(model)]
    return ", ".join(names[:4]) + (", ..." if len(names) > 4 else "") if names else "none"


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def separable(model: nn.Module, block: str = "1x5", where: str = "all", init: str = "scratch",
              rank: int | float | None = None, example: torch.Tensor | tuple | None = None,
              flops: bool = True) -> tuple[nn.Module, SurgeryReport]:
    """Replace the square k x k convs (k >= 3) of ``model`` in place by ``block``'s form.

    block: ``1xK`` (1xK then Kx1), ``KxK`` (a square K, enlarged or shrunk) or ``gcnK``, with a
    number or a literal K (each conv keeps its k). where: all, encoder, decoder (the model's
    ``.encoder``/``.decoder`` children) or a regular expression searched in layer names.
    init: ``scratch`` (PyTorch's default init) or ``svd`` (fit to the trained kernel).
    rank: intermediate channels of 1xK/gcn pairs (default: the conv's out channels; an int,
    or a float <= 1 as a fraction of them). FLOPs are counted by torch's FlopCounterMode on
    ``example`` (a tensor or shape; default 1 x C x 256 x 256) unless ``flops=False``.
    Returns (model, report): the report's table lists every change."""
    form = parse_form(block)
    if init not in INITS:
        raise UserError(f"init={init!r}: choose {' or '.join(INITS)}")
    if rank is not None and not (isinstance(rank, int) and rank >= 1 or
                                 isinstance(rank, float) and 0 < rank <= 1):
        raise UserError(f"rank={rank!r}: give intermediate channels (an integer >= 1) or a "
                        "fraction of the out channels in (0, 1]")
    chosen = _selector(model, where)
    convs = [(n, c) for n, c in square_convs(model) if chosen(n)]
    if not convs:
        raise UserError(f"where={where!r} selects no square k x k conv (k >= 3) in "
                        f"{type(model).__name__} (its square convs: {_examples(model)}); "
                        f"choose {WHERE}")
    x = _example(model, example) if flops else None
    before, params = conv_flops(model, x), sum(p.numel() for p in model.parameters())
    done: dict[int, nn.Module] = {}
    changes = [_replace_one(model, name, conv, form, init, rank, done) for name, conv in convs]
    model = done.get(id(model), model)  # the model was itself a conv
    report = SurgeryReport(form.name, where, init, changes, params_before=params)
    report.finish(model, before, conv_flops(model, x))
    return model, report


def _replace_one(model, name, conv, form, init, rank, done) -> Change:
    before = describe_conv(conv)
    if type(conv) is not nn.Conv2d:
        return Change(name, before, "unchanged", note=f"{type(conv).__name__} is a subclass "
                      "of nn.Conv2d (its forward may differ)")
    if id(conv) in done:  # one conv used at several places: one replacement for all
        new = done[id(conv)]
    else:
        padding, why = _new_padding(conv, form.k_for(conv.kernel_size[0]))
        if why:
            return Change(name, before, "unchanged", note=why)
        new = done[id(conv)] = _replacement(conv, form, rank, padding)
        new.train(conv.training)
    energy = _svd_init(conv, new, form) if init == "svd" else None
    if name:
        _set(model, name, new)
    return Change(name, before, describe_conv(new), conv, new, energy)


def _example(model: nn.Module, example) -> torch.Tensor | None:
    if isinstance(example, torch.Tensor):
        return example
    p = next(iter(model.parameters()), None)
    if p is None or p.device.type == "meta":
        return None
    if example is None:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        example = (1, first.in_channels if first else 3, 256, 256)
    return torch.rand(*example, device=p.device, dtype=p.dtype)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate every BatchNorm's running statistics from scratch on ``batches`` (inputs
    as the model takes them): running averages reset, cumulative averaging (momentum=None),
    everything else in eval mode. Returns the number of images seen."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    was = model.training
    saved = [bn.momentum for bn in bns]
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    n = 0
    try:
        for x in batches:
            model(x)
            n += len(x)
    finally:
        for bn, m in zip(bns, saved):
            bn.momentum = m
        model.train(was)
    return n
