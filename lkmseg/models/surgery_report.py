"""What a surgery changed: one row per layer (before -> after, parameters, FLOPs, energy kept)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import torch
from torch import nn


def _count(m: nn.Module | None) -> int:
    return sum(p.numel() for p in m.parameters()) if m is not None else 0


def _one(c: nn.Conv2d) -> str:
    kh, kw = c.kernel_size
    s = f"{c.in_channels}->{c.out_channels} {kh}x{kw}"
    if tuple(c.stride) != (1, 1):
        s += f" s{c.stride[0]}" if c.stride[0] == c.stride[1] else f" s{tuple(c.stride)}"
    if tuple(c.dilation) != (1, 1):
        s += f" d{max(c.dilation)}"
    if c.groups > 1:
        s += " dw" if c.groups == c.in_channels == c.out_channels else f" g{c.groups}"
    if c.padding_mode != "zeros":
        s += f" {c.padding_mode}"
    return s


def describe_conv(m: nn.Module) -> str:
    """``64->64 3x3 s2`` for a conv; ``a ; b`` for a pair; ``(a ; b) + (c ; d)`` for a GCN."""
    if isinstance(m, nn.Conv2d):
        return _one(m)
    if hasattr(m, "left") and hasattr(m, "right"):
        return f"({describe_conv(m.left)}) + ({describe_conv(m.right)})"
    return " ; ".join(_one(c) for c in m.children())


@torch.no_grad()
def conv_flops(model: nn.Module, x: torch.Tensor | None) -> dict[str, int] | str | None:
    """FLOPs per module name (torch's FlopCounterMode, one forward on ``x`` in eval mode), the
    reason they could not be counted, or None when not asked."""
    from torch.utils.flop_counter import FlopCounterMode

    if x is None:
        return None
    was = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model(x)
    except (RuntimeError, TypeError, ValueError) as e:  # the model wants another input
        return f"FLOPs not counted: forward on {tuple(x.shape)} failed ({type(e).__name__}); " \
               "pass example="
    finally:
        model.train(was)
    root = type(model).__name__
    out = {}
    for name, ops in counter.get_flop_counts().items():
        key = "" if name in (root, "Global") else name.removeprefix(root + ".")
        out[key] = int(sum(ops.values()))
    return out


@dataclass
class Change:
    layer: str
    before: str
    after: str
    old: nn.Module | None = None
    new: nn.Module | None = None
    energy: float | None = None  # fraction of the kernel's energy the SVD fit keeps
    note: str = ""
    flops_before: int | None = None
    flops_after: int | None = None

    @property
    def replaced(self) -> bool:
        return self.new is not None

    def row(self) -> dict:
        return {"layer": self.layer, "before": self.before, "after": self.after,
                "params_before": _count(self.old), "params_after": _count(self.new or self.old),
                "flops_before": self.flops_before, "flops_after": self.flops_after,
                "energy_kept": self.energy, "note": self.note}


@dataclass
class SurgeryReport:
    block: str
    where: str
    init: str
    changes: list[Change]
    params_before: int = 0
    params_after: int = 0
    flops_before: int | None = None
    flops_after: int | None = None
    flops_note: str = ""
    energies: list[float] = field(default_factory=list)

    def finish(self, model: nn.Module, before, after) -> None:
        self.params_after = _count(model)
        for c in self.changes:
            if isinstance(before, dict) and isinstance(after, dict):
                c.flops_before = before.get(c.layer)
                c.flops_after = after.get(c.layer)
        if isinstance(before, dict) and isinstance(after, dict):
            self.flops_before, self.flops_after = before.get(""), after.get("")
        elif isinstance(before, str):
            self.flops_note = before
        self.energies = [c.energy for c in self.changes if c.energy is not None]

    @property
    def replaced(self) -> int:
        return sum(c.replaced for c in self.changes)

    def rows(self) -> list[dict]:
        return [c.row() for c in self.changes]

    def summary(self) -> dict:
        e = self.energies
        return {"block": self.block, "where": self.where, "init": self.init,
                "replaced": self.replaced, "skipped": len(self.changes) - self.replaced,
                "params_before": self.params_before, "params_after": self.params_after,
                "flops_before": self.flops_before, "flops_after": self.flops_after,
                "energy_kept_median": statistics.median(e) if e else None,
                "energy_kept_min": min(e) if e else None}

    def table(self) -> str:
        """A plain-text table, one row per layer, then the totals."""
        head = ["layer", "before", "after", "params", "MFLOPs", "energy", "note"]
        body = [[r["layer"] or "(model)", r["before"], r["after"],
                 f"{r['params_before']:,} -> {r['params_after']:,}", _mflops(r),
                 "" if r["energy_kept"] is None else f"{r['energy_kept']:.3f}", r["note"]]
                for r in self.rows()]
        s = self.summary()
        body.append(["total", "", f"{s['replaced']} replaced, {s['skipped']} kept",
                     f"{s['params_before']:,} -> {s['params_after']:,}",
                     _mflops({"flops_before": s["flops_before"], "flops_after": s["flops_after"]}),
                     "" if s["energy_kept_median"] is None
                     else f"median {s['energy_kept_median']:.3f}", self.flops_note])
        widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
        return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
                         for r in [head, *body])

    def __str__(self) -> str:
        return self.table()


def _mflops(r: dict) -> str:
    a, b = r["flops_before"], r["flops_after"]
    return "" if a is None or b is None else f"{a / 1e6:,.1f} -> {b / 1e6:,.1f}"
