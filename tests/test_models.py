import pytest
import torch

from lkmseg.errors import UserError
from lkmseg.models import ModelConfig, build_model, count_params, parse_block
from lkmseg.models.blocks import GCNBlock, SeparableBlock


def test_seed_parameter_ratios():
    p3 = count_params(build_model("3x3"))
    assert abs(count_params(build_model("5x5")) / p3 - 1.389) <= 0.005
    assert abs(count_params(build_model("1x5")) / p3 - 0.556) <= 0.005
    # seed file sizes: 3x3 30.9 MB, 5x5 43.8 MB, 1x5 17.2 MB (fp32) -> within 4 %
    assert abs(count_params(build_model("5x5")) * 4 / 1e6 - 43.8) < 0.04 * 43.8


@pytest.mark.parametrize("name,family,k", [("3x3", "double3", 3), ("5x5", "square", 5),
                                           ("1x5", "separable", 5), ("7x7", "square", 7),
                                           ("1x15", "separable", 15), ("gcn15", "gcn", 15),
                                           ("GCN7", "gcn", 7)])
def test_parse_block(name, family, k):
    spec = parse_block(name)
    assert (spec.family, spec.kernel) == (family, k)


def test_parse_block_with_kernel_option():
    assert parse_block("1xK", kernel=7).name == "1x7"
    assert parse_block("gcnk", kernel=11).name == "gcn11"
    with pytest.raises(UserError, match="--kernel"):
        parse_block("1x5", kernel=7)


@pytest.mark.parametrize("bad", ["x5", "5x3", "1x4", "gcn", "2x2", "1x33", "abc", ""])
def test_unknown_block_lists_valid_forms(bad):
    with pytest.raises(UserError) as e:
        parse_block(bad)
    assert "3x3" in str(e.value) or "odd" in str(e.value)


def test_separable_and_gcn_structure():
    sep = SeparableBlock(4, 6, 7)
    assert [tuple(c.kernel_size) for c in sep if isinstance(c, torch.nn.Conv2d)] == [(1, 7), (7, 1)]
    g = GCNBlock(4, 6, 9)
    assert [tuple(c.kernel_size) for c in g.left] == [(9, 1), (1, 9)]
    assert [tuple(c.kernel_size) for c in g.right] == [(1, 9), (9, 1)]
    # no nonlinearity inside the branches: the module is linear before BN+ReLU
    x, y = torch.randn(1, 4, 12, 12), torch.randn(1, 4, 12, 12)
    lin = lambda t: g.left(t) + g.right(t)  # noqa: E731
    assert torch.allclose(lin(x + y), lin(x) + lin(y), atol=1e-5)


@pytest.mark.parametrize("block", ["3x3", "5x5", "1x5", "7x7", "1x7", "gcn7"])
@pytest.mark.parametrize("hw", [(37, 53), (64, 64), (1, 17)])
def test_forward_backward_odd_sizes(block, hw):
    m = build_model(ModelConfig(block=block, width=4, depth=3)).train()
    x = torch.randn(2, 3, *hw, requires_grad=True)
    out = m(x)
    assert out.shape == (2, 1, *hw)
    out.mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in m.parameters())


def test_padding_is_cropped_not_misaligned():
    """A size that is not a multiple of 2**depth gives the same logits as the padded input
    cropped back (zero padding at the bottom/right only, nothing shifted)."""
    m = build_model(ModelConfig(block="1x5", width=4, depth=3)).eval()
    x = torch.randn(1, 3, 21, 30)
    padded = torch.nn.functional.pad(x, (0, 2, 0, 3))  # to 24x32
    with torch.no_grad():
        assert torch.allclose(m(x), m(padded)[..., :21, :30], atol=1e-5)


def test_full_carvana_size_pads_to_1920():
    m = build_model(ModelConfig(block="1x5", width=2, depth=6)).eval()
    with torch.no_grad():
        assert m(torch.zeros(1, 3, 1280, 1918)).shape == (1, 1, 1280, 1918)
