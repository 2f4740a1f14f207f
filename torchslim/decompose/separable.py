"""Lightweight structure: replace a standard convolution by a depthwise-
separable one (depthwise kxk with ``depth_multiplier`` filters per input
channel, then pointwise 1x1) or by a grouped convolution, initialised from
the original weights.

Separable init: for each input channel i the slice W[:, i] (O x kh*kw) is
approximated by its best rank-m factorisation (SVD): the m right singular
vectors become channel i's depthwise kernels, the scaled left ones the
pointwise weights. The replacement is exact when every slice has rank <= m.
Grouped init keeps the block-diagonal part of W (exact when W is block-diagonal).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .tucker import check_decomposable_conv

__all__ = ["separable_conv", "grouped_conv"]


@torch.no_grad()
def separable_conv(conv: nn.Conv2d, depth_multiplier: int = 1) -> nn.Sequential:
    reason = check_decomposable_conv(conv)
    if reason:
        raise ValueError(f"separable_conv: cannot replace this layer: {reason}")
    o, i = conv.out_channels, conv.in_channels
    kh, kw = conv.kernel_size
    m = int(depth_multiplier)
    if not 1 <= m <= min(o, kh * kw):
        raise ValueError(f"separable_conv: depth_multiplier must be in 1..{min(o, kh * kw)}, got {m}")
    w = conv.weight.detach().to(torch.float64).reshape(o, i, kh * kw).permute(1, 0, 2)  # (I, O, k*k)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)  # (I, O, r), (I, r), (I, r, k*k)
    root = s[:, :m].sqrt()
    dw = (root[:, :, None] * vh[:, :m, :]).reshape(i * m, 1, kh, kw)  # channel i*m + j
    pw = (u[:, :, :m] * root[:, None, :]).permute(1, 0, 2).reshape(o, i * m, 1, 1)
    dtype, device = conv.weight.dtype, conv.weight.device
    depthwise = nn.Conv2d(i, i * m, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups=i, bias=False)
    pointwise = nn.Conv2d(i * m, o, 1, bias=conv.bias is not None)
    depthwise.weight.copy_(dw.to(dtype))
    pointwise.weight.copy_(pw.to(dtype))
    if conv.bias is not None:
        pointwise.bias.copy_(conv.bias.detach())
    return nn.Sequential(depthwise, pointwise).to(device)


@torch.no_grad()
def grouped_conv(conv: nn.Conv2d, groups: int) -> nn.Conv2d:
    reason = check_decomposable_conv(conv)
    if reason:
        raise ValueError(f"grouped_conv: cannot replace this layer: {reason}")
    o, i = conv.out_channels, conv.in_channels
    if groups < 1 or o % groups or i % groups:
        raise ValueError(f"grouped_conv: groups={groups} must divide in_channels {i} and out_channels {o}")
    new = nn.Conv2d(i, o, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups=groups,
                    bias=conv.bias is not None)
    og, ig = o // groups, i // groups
    for g in range(groups):
        new.weight[g * og:(g + 1) * og] = conv.weight[g * og:(g + 1) * og, g * ig:(g + 1) * ig]
    if conv.bias is not None:
        new.bias.copy_(conv.bias)
    return new.to(conv.weight.device)
