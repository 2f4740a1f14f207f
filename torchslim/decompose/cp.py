"""CP decomposition of ``nn.Conv2d`` (Lebedev et al. 2015): the kernel
W (O, I, kh, kw) ~ sum_r A_o[:, r] A_i[:, r] A_h[:, r] A_w[:, r] becomes four
convolutions: ``1x1 (I -> R)``, depthwise ``kh x 1`` and ``1 x kw`` (R
channels; stride, padding, dilation split by axis), ``1x1 (R -> O)`` with the
bias. Factors from tensorly's ``parafac`` (ALS)."""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn

from .tucker import check_decomposable_conv

__all__ = ["cp_conv", "cp_factors"]


def cp_factors(weight: torch.Tensor, rank: int, *, n_iter_max: int = 300, seed: int = 0):
    """(A_out, A_in, A_h, A_w) with the CP weights folded into A_out (float64 numpy)."""
    import tensorly as tl
    from tensorly.decomposition import parafac

    w = weight.detach().to(torch.float64).cpu().numpy()
    with warnings.catch_warnings():  # tensorly warns when a mode is smaller than the rank (harmless)
        warnings.simplefilter("ignore", UserWarning)
        cp = parafac(tl.tensor(w), rank, init="svd", n_iter_max=n_iter_max, tol=1e-10, random_state=seed,
                     normalize_factors=False)
    a_out, a_in, a_h, a_w = (np.asarray(f) for f in cp.factors)
    return a_out * np.asarray(cp.weights)[None, :], a_in, a_h, a_w


@torch.no_grad()
def cp_conv(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    reason = check_decomposable_conv(conv)
    if reason:
        raise ValueError(f"cp_conv: cannot decompose this layer: {reason}")
    if rank < 1:
        raise ValueError(f"cp_conv: rank must be >= 1, got {rank}")
    o, i = conv.out_channels, conv.in_channels
    kh, kw = conv.kernel_size
    a_out, a_in, a_h, a_w = cp_factors(conv.weight, rank)
    dtype, device = conv.weight.dtype, conv.weight.device
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
    first = nn.Conv2d(i, rank, 1, bias=False)
    vert = nn.Conv2d(rank, rank, (kh, 1), (conv.stride[0], 1), (conv.padding[0], 0), (conv.dilation[0], 1),
                     groups=rank, bias=False)
    horiz = nn.Conv2d(rank, rank, (1, kw), (1, conv.stride[1]), (0, conv.padding[1]), (1, conv.dilation[1]),
                      groups=rank, bias=False)
    last = nn.Conv2d(rank, o, 1, bias=conv.bias is not None)
    first.weight.copy_(t(a_in.T)[:, :, None, None])
    vert.weight.copy_(t(a_h.T)[:, None, :, None])
    horiz.weight.copy_(t(a_w.T)[:, None, None, :])
    last.weight.copy_(t(a_out)[:, :, None, None])
    if conv.bias is not None:
        last.bias.copy_(conv.bias.detach())
    return nn.Sequential(first, vert, horiz, last).to(device)
