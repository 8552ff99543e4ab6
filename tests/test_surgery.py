"""Surgery on models lkmseg never saw: square convs -> KxK / 1xK+Kx1 / GCN, SVD init, where."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lkmseg.config import RunConfig
from lkmseg.errors import UserError
from lkmseg.models import ModelConfig, build_model, count_params, recalibrate_bn, separable
from lkmseg.models.surgery import GCNConv2d, SeparableConv2d, square_convs
from lkmseg.models.svd import compose, separable_factors

# every kind of square conv a model may hold: (in, out, k, keyword arguments)
KINDS = {
    "plain": (4, 6, 3, {"padding": 1}),
    "strided": (4, 6, 3, {"stride": 2, "padding": 1}),
    "strided7": (3, 8, 7, {"stride": 2, "padding": 3}),
    "dilated": (4, 4, 3, {"padding": 2, "dilation": 2}),
    "depthwise": (6, 6, 3, {"padding": 1, "groups": 6}),
    "depthwise_x2": (4, 8, 5, {"padding": 2, "groups": 4}),
    "grouped": (6, 9, 3, {"padding": 1, "groups": 3}),
    "biased_valid": (4, 5, 3, {"bias": True, "padding": 0}),
    "reflect": (4, 6, 5, {"padding": 2, "padding_mode": "reflect", "bias": False}),
    "circular_strided": (4, 6, 3, {"padding": 1, "stride": (2, 1), "padding_mode": "circular"}),
    "same": (4, 6, 5, {"padding": "same"}),
}


class Probe(nn.Module):
    """One conv of a kind between a 1x1 and a non-square conv (both must stay)."""

    def __init__(self, cin, cout, k, **kw) -> None:
        super().__init__()
        self.pre = nn.Conv2d(cin, cin, 1)
        self.conv = nn.Conv2d(cin, cout, k, **kw)
        self.post = nn.Conv2d(cout, cout, (1, 3), padding=(0, 1))

    def forward(self, x):
        return self.post(self.conv(self.pre(x)))


def _probe(kind: str) -> Probe:
    cin, cout, k, kw = KINDS[kind]
    torch.manual_seed(0)
    return Probe(cin, cout, k, **kw).eval()


@pytest.mark.parametrize("block", ["1x5", "1xK", "5x5", "7x7", "KxK", "gcn7", "gcnK"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_output_shape_and_layer_kinds_are_kept(kind, block):
    m = _probe(kind)
    x = torch.rand(2, m.pre.in_channels, 19, 24)
    want = m(x).shape
    old = m.conv
    m, report = separable(m, block, flops=False)
    assert m(x).shape == want
    assert isinstance(m.pre, nn.Conv2d) and m.pre.kernel_size == (1, 1)  # 1x1 untouched
    assert m.post.kernel_size == (1, 3)  # non-square untouched
    assert report.replaced == 1 and report.changes[0].layer == "conv"
    new = m.conv
    convs = [c for c in new.modules() if isinstance(c, nn.Conv2d)]
    assert all(c.groups == old.groups and c.padding_mode == old.padding_mode for c in convs)
    assert convs[0].in_channels == old.in_channels and convs[-1].out_channels == old.out_channels
    assert sum(c.bias is not None for c in convs) == (old.bias is not None)
    if block.startswith("1x"):
        k = 5 if block == "1x5" else old.kernel_size[0]
        assert isinstance(new, SeparableConv2d)
        assert [c.kernel_size for c in new] == [(1, k), (k, 1)]
        assert new[0].stride == (1, old.stride[1]) and new[1].stride == (old.stride[0], 1)
        assert new[0].dilation == (1, old.dilation[1]) and new[1].dilation == (old.dilation[0], 1)
        assert new[0].out_channels == old.out_channels  # default rank: the out channels
    if block.startswith("gcn"):
        assert isinstance(new, GCNConv2d)


def _separable_kernel(o: int, ig: int, k: int, groups: int = 1) -> torch.Tensor:
    """W[o,i,y,x] = c[o,i] * v[o,y] * h[i,x]: rank 1 for every channel pair (per group)."""
    g = torch.Generator().manual_seed(1)
    c = torch.randn(o, ig, generator=g)
    v = torch.randn(o, k, generator=g)
    h = torch.randn(groups, ig, k, generator=g).repeat_interleave(o // groups, 0)  # (o, ig, k)
    return c[:, :, None, None] * v[:, None, :, None] * h[:, :, None, :]


@pytest.mark.parametrize("block", ["1xK", "1x7", "gcnK", "7x7"])
@pytest.mark.parametrize("kind", ["plain", "strided", "dilated", "depthwise", "grouped",
                                  "biased_valid", "reflect", "circular_strided", "same"])
def test_svd_init_is_exact_for_a_separable_kernel(kind, block):
    m = _probe(kind)
    c = m.conv
    with torch.no_grad():
        c.weight.copy_(_separable_kernel(c.out_channels, c.in_channels // c.groups,
                                         c.kernel_size[0], c.groups))
    x = torch.rand(2, m.pre.in_channels, 21, 18)
    want = m(x)
    m, report = separable(m, block, init="svd", flops=False)
    torch.testing.assert_close(m(x), want, atol=1e-5, rtol=1e-5)
    assert report.changes[0].energy == pytest.approx(1.0, abs=1e-6)


def test_svd_reports_the_energy_kept_of_a_general_kernel():
    torch.manual_seed(0)
    w = torch.randn(8, 6, 5, 5)
    a, b, kept = separable_factors(w, 4)
    residual = ((compose(a, b) - w.double()) ** 2).sum() / (w.double() ** 2).sum()
    assert kept / float((w.double() ** 2).sum()) == pytest.approx(1 - float(residual))
    conv = nn.Conv2d(6, 8, 5, padding=2)
    with torch.no_grad():
        conv.weight.copy_(w)
    energies = {}
    for block, rank in [("1x5", 4), ("1x5", None), ("gcn5", 4)]:
        _, rep = separable(nn.Sequential(conv), block, init="svd", rank=rank, flops=False)
        energies[(block, rank)] = rep.changes[0].energy
    assert energies[("1x5", 4)] == pytest.approx(1 - float(residual), abs=1e-6)
    # more intermediate channels, or the GCN's second branch, keep more (never all here)
    assert energies[("1x5", 4)] < energies[("1x5", None)] < 1.0
    assert energies[("1x5", 4)] < energies[("gcn5", 4)] < 1.0


def test_shrinking_a_kernel_crops_it_and_counts_the_loss():
    conv = nn.Conv2d(2, 2, 7, padding=3)
    total = float((conv.weight.double() ** 2).sum())
    centre = float((conv.weight[..., 2:5, 2:5].double() ** 2).sum())
    _, rep = separable(nn.Sequential(conv), "3x3", init="svd", flops=False)
    assert rep.changes[0].energy == pytest.approx(centre / total)


class EncDec(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                                     nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1))
        self.decoder = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(8, 8, 3, padding=1),
                                     nn.Conv2d(8, 4, 1))
        self.head = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.head(self.decoder(self.encoder(x)))


@pytest.mark.parametrize("where,changed", [
    ("all", {"encoder.0", "encoder.3", "decoder.1", "head"}),
    ("encoder", {"encoder.0", "encoder.3"}),
    ("decoder", {"decoder.1"}),
    (r"^(head|encoder\.3)$", {"encoder.3", "head"}),
])
def test_where_selects_the_part(where, changed):
    m, rep = separable(EncDec(), "1x5", where=where, flops=False)
    assert {c.layer for c in rep.changes} == changed
    left = {n for n, _ in square_convs(m)}
    assert not left & changed
    assert m(torch.rand(1, 3, 16, 16)).shape == (1, 1, 16, 16)


def test_where_errors_list_the_choices():
    with pytest.raises(UserError, match=r"no \.encoder/\.decoder.*all or a regular expression"):
        separable(nn.Sequential(nn.Conv2d(3, 3, 3)), "1x5", where="decoder")
    with pytest.raises(UserError, match=r"selects no square.*encoder\.0, encoder\.3"):
        separable(EncDec(), "1x5", where="nothing_like_this")
    with pytest.raises(UserError, match="not a regular expression"):
        separable(EncDec(), "1x5", where="(")
    with pytest.raises(UserError, match="unknown block 'x5'.*1xK"):
        separable(EncDec(), "x5")
    with pytest.raises(UserError, match="init='pca'"):
        separable(EncDec(), "1x5", init="pca")
    with pytest.raises(UserError, match="rank=0"):
        separable(EncDec(), "1x5", rank=0)


def test_report_counts_params_and_flops():
    m = EncDec().eval()
    x = torch.rand(1, 3, 32, 32)
    with FlopCounterMode(display=False) as fc:
        m(x)
    before = fc.get_total_flops()
    m, rep = separable(m, "1x3", example=x)
    with FlopCounterMode(display=False) as fc:
        m(x)
    assert (rep.flops_before, rep.flops_after) == (before, fc.get_total_flops())
    assert rep.params_after == count_params(m) < rep.params_before
    rows = rep.rows()
    assert sum(r["params_before"] - r["params_after"] for r in rows) == \
        rep.params_before - rep.params_after
    assert sum(r["flops_before"] - r["flops_after"] for r in rows) == before - rep.flops_after
    text = rep.table()
    assert "encoder.3" in text and "8->8 3x3 s2" in text and "4 replaced" in text


def test_what_is_left_alone_is_reported():
    class Custom(nn.Conv2d):
        pass

    shared = nn.Conv2d(4, 4, 3, padding=1)
    m = nn.Sequential(Custom(3, 4, 3, padding=1), nn.Conv2d(4, 4, 4, padding=0), shared, shared)
    m, rep = separable(m, "5x5", flops=False)
    notes = {c.layer: c.note for c in rep.changes}
    assert "subclass" in notes["0"] and "cannot be centred" in notes["1"]
    assert type(m[0]) is Custom and m[1].kernel_size == (4, 4)
    assert m[2] is m[3] and m[2].kernel_size == (5, 5)  # a shared conv stays shared
    m, rep = separable(nn.Conv2d(3, 3, 3, padding=1), "1x3", flops=False)  # a bare conv
    assert isinstance(m, SeparableConv2d)


def test_recalibrate_bn_estimates_from_scratch_and_restores_state():
    bn = nn.BatchNorm2d(3, momentum=0.3)
    model = nn.Sequential(bn, nn.Dropout(0.5)).train()
    batches = [torch.randn(4, 3, 5, 5) * (i + 1) + i for i in range(3)]
    n = recalibrate_bn(model, batches)
    allx = torch.cat(batches)
    assert n == 12 and model.training and bn.momentum == 0.3
    torch.testing.assert_close(bn.running_mean, allx.mean((0, 2, 3)))
    want_var = torch.stack([b.var((0, 2, 3), unbiased=True) for b in batches]).mean(0)
    torch.testing.assert_close(bn.running_var, want_var)


@pytest.mark.parametrize("block,where,base", [("1x5", "decoder", "5x5"), ("1x3", "all", None),
                                              ("gcn7", "encoder", "7x7")])
def test_unet_config_rebuilds_the_surgered_model(block, where, base):
    cfg = RunConfig(model=ModelConfig(block=block, width=2, depth=3, where=where))
    assert cfg.model.base == base
    back = RunConfig.from_dict(cfg.to_dict())
    a, b = build_model(cfg.model), build_model(back.model)
    assert [(k, v.shape) for k, v in a.state_dict().items()] == \
        [(k, v.shape) for k, v in b.state_dict().items()]
    kinds = {n.split(".")[0]: type(m).__name__ for n, m in a.named_modules()
             if isinstance(m, (SeparableConv2d, GCNConv2d))}
    parts = {"decoder": {"up"}, "encoder": {"down", "center"}, "all": set()}[where]
    assert set(kinds) == parts
    assert a.eval()(torch.rand(1, 3, 24, 20)).shape == (1, 1, 24, 20)


def test_model_config_errors():
    with pytest.raises(UserError, match="unknown arch 'resnet'"):
        ModelConfig(arch="resnet")
    with pytest.raises(UserError, match="applies to --arch smp"):
        ModelConfig(encoder_weights="imagenet")
    with pytest.raises(UserError, match="unknown block '1xK'"):
        ModelConfig(block="1xK")  # the seed U-Net needs a kernel
