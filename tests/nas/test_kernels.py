"""Elastic kernels: the centre crop (through OFA's transform) against a hand
computation; a grown kernel keeps the trained function."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from torchslim.core.errors import ModelError
from torchslim.nas import ChannelGroup, DynamicConv2d


def _depthwise(k: int, c: int = 3) -> nn.Conv2d:
    conv = nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(c * k * k, dtype=torch.float32).reshape(c, 1, k, k))
    return conv


def _hand_conv(x: torch.Tensor, w: torch.Tensor, i: int, j: int, ch: int) -> float:
    """One output pixel of a depthwise 'same' convolution, summed by hand."""
    k = w.shape[-1]
    r = k // 2
    total = 0.0
    for a in range(k):
        for b in range(k):
            y, z = i + a - r, j + b - r
            if 0 <= y < x.shape[2] and 0 <= z < x.shape[3]:
                total += float(x[0, ch, y, z]) * float(w[ch, 0, a, b])
    return total


def test_centre_crop_matches_hand_computation():
    g = ChannelGroup("g", 3)
    conv = DynamicConv2d(_depthwise(5), in_group=g, out_group=g, kernel_sizes=(1, 3, 5), where="dw")
    x = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    full = conv.weight.detach()
    conv.active_kernel = 3
    w3 = conv.active_weight().detach()
    # identity transform: the plain centre crop, e.g. channel 0 holds 0..24 row-major, centre 3x3 = 6,7,8,11,...
    assert torch.equal(w3, full[:, :, 1:4, 1:4])
    assert w3[0, 0].tolist() == [[6, 7, 8], [11, 12, 13], [16, 17, 18]]
    with torch.no_grad():
        y = conv(x)
    for (i, j, ch) in [(0, 0, 0), (2, 3, 1), (5, 5, 2), (3, 1, 0)]:
        assert y[0, ch, i, j].item() == pytest.approx(_hand_conv(x, w3, i, j, ch), abs=1e-4)
    conv.active_kernel = 1
    assert conv.active_weight()[:, 0, 0, 0].tolist() == [12.0, 37.0, 62.0]  # the centre taps


def test_learned_transform_is_applied_to_the_crop():
    g = ChannelGroup("g", 2)
    conv = DynamicConv2d(_depthwise(5, 2), in_group=g, out_group=g, kernel_sizes=(3, 5))
    m = torch.randn(9, 9, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        conv.transforms["5to3"].copy_(m)
    conv.active_kernel = 3
    crop = conv.weight.detach()[:, :, 1:4, 1:4]
    for ch in range(2):
        want = (m @ crop[ch, 0].reshape(9)).reshape(3, 3)  # hand: w' = M vec(crop)
        torch.testing.assert_close(conv.active_weight()[ch, 0].detach(), want)
    plain = conv.to_plain()
    assert plain.kernel_size == (3, 3) and plain.padding == (1, 1) and plain.groups == 2
    x = torch.randn(2, 2, 7, 7)
    torch.testing.assert_close(plain(x), conv(x).detach())


def test_grown_kernel_keeps_the_function():
    src = _depthwise(3)
    g = ChannelGroup("g", 3)
    conv = DynamicConv2d(src, in_group=g, out_group=g, kernel_sizes=(3, 5, 7))
    assert conv.weight.shape[-1] == 7 and conv.active_kernel == 7
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), src(x), rtol=0, atol=1e-4)
        # 7 -> 5 -> 3 through identity transforms: the trained 3x3 itself
        conv.active_kernel = 3
        assert torch.equal(conv.active_weight(), src.weight)


def test_elastic_width_slices_leading_channels():
    gi, go = ChannelGroup("in", 4, (2, 4)), ChannelGroup("out", 6, (3, 6))
    src = nn.Conv2d(4, 6, 3, padding=1, bias=True)
    conv = DynamicConv2d(src, in_group=gi, out_group=go)
    gi.active, go.active = 2, 3
    x = torch.randn(1, 2, 5, 5)
    want = F.conv2d(x, src.weight[:3, :2], src.bias[:3], padding=1)
    torch.testing.assert_close(conv(x), want)


def test_kernel_errors_name_the_layer():
    g = ChannelGroup("g", 3)
    with pytest.raises(ModelError, match="'dw'.*odd"):
        DynamicConv2d(_depthwise(3), in_group=g, out_group=g, kernel_sizes=(2, 3), where="dw")
    with pytest.raises(ModelError, match="'full'.*depthwise"):
        DynamicConv2d(nn.Conv2d(3, 4, 3, padding=1), in_group=None, out_group=None, kernel_sizes=(1, 3), where="full")
