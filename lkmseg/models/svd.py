"""Low-rank fits of trained square kernels: a k x k conv as a 1xK then Kx1 pair (or a GCN).

Jaderberg, Vedaldi & Zisserman 2014 ("Speeding up Convolutional Neural Networks with Low Rank
Expansions"), scheme 2: W[o,i,y,x] ~ sum_m V[o,m,y] * H[m,i,x], the truncated SVD of W
reshaped to (i*K) x (o*K); optimal in the Frobenius norm for the given rank m. Per group for
grouped (and depthwise) convs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_kernel(w: torch.Tensor, k: int) -> torch.Tensor:
    """``w`` (o, i, kh, kw) centred in a k x k kernel: zero-padded when larger, cropped when
    smaller (the centre tap stays the centre tap)."""
    kh, kw = w.shape[-2:]
    dh, dw = (k - kh) // 2, (k - kw) // 2
    if dh >= 0 and dw >= 0:
        return F.pad(w, (dw, dw, dh, dh))
    return w[..., -dh:kh + dh, -dw:kw + dw]


def _factor(m: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """m (a, b) ~ left (a, rank) @ right (rank, b): the top singular triplets, each factor
    scaled by sqrt(s); extra rank beyond min(a, b) is zero. Returns (left, right, kept)."""
    u, s, vh = torch.linalg.svd(m.double(), full_matrices=False)
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    left = torch.zeros(m.shape[0], rank, dtype=torch.float64)
    right = torch.zeros(rank, m.shape[1], dtype=torch.float64)
    left[:, :r] = u[:, :r] * root
    right[:r] = vh[:r] * root[:, None]
    return left, right, float((s[:r] ** 2).sum())


def separable_factors(w: torch.Tensor, mid: int, groups: int = 1,
                      first: str = "1xK") -> tuple[torch.Tensor, torch.Tensor, float]:
    """Factor a square kernel ``w`` (o, i/groups, K, K) into two convs with ``mid``
    intermediate channels: ``first="1xK"`` gives weights (mid, i/g, 1, K) then (o, mid/g, K, 1)
    (lkmseg's 1xK block); ``"Kx1"`` gives (mid, i/g, K, 1) then (o, mid/g, 1, K).
    Returns (first weight, second weight, squared norm kept)."""
    o, ig, k, _ = w.shape
    og, mg = o // groups, mid // groups
    a = torch.zeros(mid, ig, k, dtype=torch.float64)
    b = torch.zeros(o, mg, k, dtype=torch.float64)
    kept = 0.0
    for g in range(groups):
        wg = w[g * og:(g + 1) * og].double()  # (og, ig, y, x)
        # rows: (input channel, tap of the first conv), columns: (output channel, tap of the
        # second): 1xK first -> rows (i, x), columns (o, y); Kx1 first -> rows (i, y), (o, x)
        wg = wg.permute(1, 3, 0, 2) if first == "1xK" else wg.permute(1, 2, 0, 3)
        left, right, e = _factor(wg.reshape(ig * k, og * k), mg)
        a[g * mg:(g + 1) * mg] = left.T.reshape(mg, ig, k)
        b[g * og:(g + 1) * og] = right.reshape(mg, og, k).permute(1, 0, 2)
        kept += e
    if first == "1xK":
        return a[:, :, None, :], b[:, :, :, None], kept
    return a[:, :, :, None], b[:, :, None, :], kept


def compose(first: torch.Tensor, second: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """The K x K kernel (o, i/g, K, K) that two stacked convs compute together: weights
    ``first`` (mid, i/g, 1, K) then ``second`` (o, mid/g, K, 1), or the Kx1-first pair."""
    o, mid = second.shape[0], first.shape[0]
    og, mg = o // groups, mid // groups
    spec = "mihw,omyx->oiyw" if first.shape[2] == 1 else "mihw,omyx->oihx"
    out = [torch.einsum(spec, first[g * mg:(g + 1) * mg].double(),
                        second[g * og:(g + 1) * og].double()) for g in range(groups)]
    return torch.cat(out).to(first.dtype)
