"""Tucker-2 decomposition of ``nn.Conv2d`` (Kim et al. 2016): the kernel
W (O, I, kh, kw) ~ core x_0 U_out x_1 U_in with core (r_out, r_in, kh, kw)
becomes ``Conv 1x1 (I -> r_in)``, ``Conv kxk (r_in -> r_out)`` with the
original stride/padding/dilation, and ``Conv 1x1 (r_out -> O)`` with the bias.
The factors come from tensorly's ``partial_tucker`` (HOOI, SVD init); at full
ranks the replacement reproduces the convolution exactly."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

__all__ = ["tucker2_conv", "tucker2_factors", "check_decomposable_conv"]


def check_decomposable_conv(conv: nn.Conv2d) -> str | None:
    """None when ``conv`` can be decomposed, else the reason it cannot."""
    if not isinstance(conv, nn.Conv2d):
        return f"{type(conv).__name__} is not a Conv2d"
    if conv.groups != 1:
        return f"grouped convolution (groups={conv.groups})"
    if isinstance(conv.padding, str):
        return f"string padding {conv.padding!r}"
    if conv.padding_mode != "zeros":
        return f"padding_mode {conv.padding_mode!r}"
    return None


def tucker2_factors(weight: torch.Tensor, ranks: tuple[int, int], *, n_iter_max: int = 100):
    """(core, U_out, U_in) of the Tucker-2 decomposition, in float64 numpy."""
    from tensorly.decomposition import partial_tucker

    w = weight.detach().to(torch.float64).cpu().numpy()
    r_out, r_in = ranks
    (core, (u_out, u_in)), _ = partial_tucker(w, rank=[r_out, r_in], modes=[0, 1], init="svd",
                                              n_iter_max=n_iter_max, tol=1e-10)
    return np.asarray(core), np.asarray(u_out), np.asarray(u_in)


@torch.no_grad()
def tucker2_conv(conv: nn.Conv2d, ranks: tuple[int, int]) -> nn.Sequential:
    """Replace ``conv`` by ``nn.Sequential(Conv 1x1, Conv kxk core, Conv 1x1)``;
    ``ranks = (r_in, r_out)``."""
    reason = check_decomposable_conv(conv)
    if reason:
        raise ValueError(f"tucker2_conv: cannot decompose this layer: {reason}")
    o, i = conv.out_channels, conv.in_channels
    r_in, r_out = int(ranks[0]), int(ranks[1])
    if not (1 <= r_in <= i and 1 <= r_out <= o):
        raise ValueError(f"tucker2_conv: ranks (r_in, r_out) must be within (1..{i}, 1..{o}), got {ranks}")
    core, u_out, u_in = tucker2_factors(conv.weight, (r_out, r_in))
    dtype, device = conv.weight.dtype, conv.weight.device
    first = nn.Conv2d(i, r_in, 1, bias=False)
    middle = nn.Conv2d(r_in, r_out, conv.kernel_size, conv.stride, conv.padding, conv.dilation, bias=False)
    last = nn.Conv2d(r_out, o, 1, bias=conv.bias is not None)
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
    first.weight.copy_(t(u_in.T)[:, :, None, None])
    middle.weight.copy_(t(core))
    last.weight.copy_(t(u_out)[:, :, None, None])
    if conv.bias is not None:
        last.bias.copy_(conv.bias.detach())
    return nn.Sequential(first, middle, last).to(device)
