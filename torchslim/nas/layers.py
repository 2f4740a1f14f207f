"""Elastic layers of a once-for-all supernet: drop-in replacements for
``Conv2d`` / ``BatchNorm2d`` / ``Linear`` that hold the largest layer's
weights and compute with a leading slice of them, and a block wrapper that
can be skipped (elastic depth).

Channel counts live in ``ChannelGroup`` objects shared by every layer whose
tensors touch the same channels (a convolution's outputs, its BatchNorm, the
next layer's inputs, a residual sum), so setting one group's ``active`` count
keeps the whole network consistent. Weight sharing is by *leading* channels:
the supernet sorts every group by importance once, before training
(``supernet.py``), so the first channels are the ones worth keeping.

Elastic kernels (depthwise convolutions): the weights are kept at the largest
kernel size; a smaller kernel is the centre crop of the next larger one passed
through a learned ``k*k x k*k`` linear transform shared by the layer's
channels (Cai et al., once-for-all, 2020), initialised to the identity so that
a fresh supernet's smaller kernels are the plain crops.

Each layer's ``to_plain()`` returns the standard ``nn`` layer of the active
configuration with its own copy of the weights, which ``supernet.extract``
assembles into a plain model.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import ModelError

__all__ = ["ChannelGroup", "DynamicConv2d", "DynamicBatchNorm2d", "DynamicLinear", "ElasticBlock"]


class ChannelGroup:
    """Channels coupled across layers. ``size`` is the largest count,
    ``choices`` the counts a subnet may use (ascending, the last = ``size``),
    ``active`` the count in use now."""

    def __init__(self, name: str, size: int, choices: tuple[int, ...] | None = None):
        self.name, self.size = name, int(size)
        self.choices = tuple(sorted(set(int(c) for c in (choices or (size,)))))
        if self.choices[-1] != self.size or self.choices[0] < 1:
            raise ModelError(f"channel group {name!r}: choices {self.choices} must lie in [1, {size}] and include "
                             f"{size}")
        self.active = self.size

    def __repr__(self) -> str:
        return f"ChannelGroup({self.name!r}, active={self.active}/{self.size}, choices={self.choices})"


def _count(group: ChannelGroup | None, full: int) -> int:
    return full if group is None else group.active


class DynamicConv2d(nn.Module):
    """A ``Conv2d`` computing with its first ``out_group.active`` filters over
    the first ``in_group.active`` input channels. Depthwise (``groups ==
    channels``): one group for inputs and outputs, and optionally elastic
    kernel sizes (``kernel_sizes``, odd, "same" padding)."""

    def __init__(self, conv: nn.Conv2d, *, in_group: ChannelGroup | None, out_group: ChannelGroup | None,
                 kernel_sizes: tuple[int, ...] | None = None, where: str = "conv"):
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ModelError(f"layer {where!r}: elastic convolutions need numeric zero padding, got "
                             f"padding={conv.padding!r}, padding_mode={conv.padding_mode!r}")
        self.depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
        if conv.groups > 1 and not self.depthwise:
            raise ModelError(f"layer {where!r}: grouped convolutions other than depthwise are not elastic "
                             f"(groups={conv.groups})")
        if self.depthwise and in_group is not out_group:
            raise ModelError(f"layer {where!r}: a depthwise convolution's inputs and outputs must be one channel group")
        self.in_group, self.out_group = in_group, out_group
        self.stride, self.dilation = tuple(conv.stride), tuple(conv.dilation)
        k = conv.kernel_size[0]
        self.kernel_sizes = tuple(sorted(set(kernel_sizes or (k,))))
        self.elastic_kernel = self.kernel_sizes != (k,)
        if self.elastic_kernel:
            if not self.depthwise or conv.kernel_size[0] != conv.kernel_size[1] or k % 2 == 0:
                raise ModelError(f"layer {where!r}: elastic kernel sizes are for depthwise convolutions with an odd "
                                 f"square kernel, got kernel {tuple(conv.kernel_size)}, groups={conv.groups}")
            if any(s % 2 == 0 or s < 1 for s in self.kernel_sizes) or self.kernel_sizes[-1] < k:
                raise ModelError(f"layer {where!r}: kernel_sizes must be odd positive sizes, the largest at least the "
                                 f"trained kernel {k}, got {self.kernel_sizes}")
            if tuple(conv.padding) != (k // 2 * conv.dilation[0],) * 2:
                raise ModelError(f"layer {where!r}: elastic kernels need 'same' padding (k // 2), got {conv.padding}")
        self.max_kernel = self.kernel_sizes[-1]
        self.grown = self.max_kernel > k  # the largest kernel is the trained one in a zero border
        self.fixed_padding = tuple(conv.padding)
        w = conv.weight.detach().clone()
        if self.max_kernel > k:  # grow: the trained kernel in the centre of a zero border (the same function)
            p = (self.max_kernel - k) // 2
            w = F.pad(w, (p, p, p, p))
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(conv.bias.detach().clone()) if conv.bias is not None else None
        # OFA's kernel transforms: centre crop of size s of the next larger kernel -> s*s x s*s linear map
        self.transforms = nn.ParameterDict({
            f"{big}to{small}": nn.Parameter(torch.eye(small * small))
            for small, big in zip(self.kernel_sizes[:-1], self.kernel_sizes[1:])})
        self.active_kernel = self.max_kernel

    def kernel_weight(self, size: int) -> torch.Tensor:
        """The full-width weight at kernel ``size``: centre crops of ever
        smaller kernels, each passed through its transform."""
        w = self.weight
        for small, big in zip(reversed(self.kernel_sizes[:-1]), reversed(self.kernel_sizes[1:])):
            if big <= size:
                break
            s = (big - small) // 2
            crop = w[:, :, s:s + small, s:s + small]
            m = self.transforms[f"{big}to{small}"]
            w = (crop.reshape(-1, small * small) @ m.t()).reshape(crop.shape)
        return w

    def active_weight(self) -> torch.Tensor:
        out = _count(self.out_group, self.weight.shape[0])
        w = self.kernel_weight(self.active_kernel) if self.active_kernel != self.max_kernel else self.weight
        if self.depthwise:
            return w[:out]
        return w[:out, :_count(self.in_group, self.weight.shape[1])]

    def padding(self) -> tuple[int, int]:
        """The source layer's own padding when the kernel is not elastic, else
        "same" padding for the active kernel."""
        if not self.elastic_kernel:
            return self.fixed_padding
        return (self.active_kernel // 2 * self.dilation[0],) * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.active_weight()
        b = None if self.bias is None else self.bias[:w.shape[0]]
        return F.conv2d(x, w, b, self.stride, self.padding(), self.dilation, w.shape[0] if self.depthwise else 1)

    @torch.no_grad()
    def to_plain(self) -> nn.Conv2d:
        w = self.active_weight().detach()
        out = w.shape[0]
        cin = out if self.depthwise else w.shape[1]
        conv = nn.Conv2d(cin, out, w.shape[-1], self.stride, self.padding(), self.dilation,
                         groups=out if self.depthwise else 1, bias=self.bias is not None)
        conv.weight.copy_(w)
        if self.bias is not None:
            conv.bias.copy_(self.bias[:out])
        return conv


class DynamicBatchNorm2d(nn.Module):
    """A ``BatchNorm2d`` over the first channels of its group (as many as the
    input has). The running statistics are shared slices: they mix every
    subnet trained, so a subnet's are re-estimated before it is judged
    (``torchslim.prune.recalibrate_bn`` on the extracted model)."""

    def __init__(self, bn: nn.BatchNorm2d, *, group: ChannelGroup | None):
        super().__init__()
        self.group = group
        self.eps, self.momentum = bn.eps, bn.momentum
        self.affine, self.track_running_stats = bn.affine, bn.track_running_stats
        self.weight = nn.Parameter(bn.weight.detach().clone()) if bn.affine else None
        self.bias = nn.Parameter(bn.bias.detach().clone()) if bn.affine else None
        if bn.track_running_stats:
            self.register_buffer("running_mean", bn.running_mean.detach().clone())
            self.register_buffer("running_var", bn.running_var.detach().clone())
            self.register_buffer("num_batches_tracked", bn.num_batches_tracked.detach().clone())
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            x, self.running_mean[:c] if track and self.running_mean is not None else None,
            self.running_var[:c] if track and self.running_var is not None else None,
            None if self.weight is None else self.weight[:c], None if self.bias is None else self.bias[:c],
            use_batch, momentum, self.eps)

    @torch.no_grad()
    def to_plain(self) -> nn.BatchNorm2d:
        c = _count(self.group, (self.weight if self.weight is not None else self.running_mean).shape[0])
        bn = nn.BatchNorm2d(c, eps=self.eps, momentum=self.momentum, affine=self.affine,
                            track_running_stats=self.track_running_stats)
        if self.affine:
            bn.weight.copy_(self.weight[:c])
            bn.bias.copy_(self.bias[:c])
        if self.track_running_stats:
            bn.running_mean.copy_(self.running_mean[:c])
            bn.running_var.copy_(self.running_var[:c])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn.train(self.training)


class DynamicLinear(nn.Module):
    """A ``Linear`` over the first ``in_group.active`` input features (the
    outputs, e.g. the classes, are fixed)."""

    def __init__(self, linear: nn.Linear, *, in_group: ChannelGroup | None):
        super().__init__()
        self.in_group = in_group
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = nn.Parameter(linear.bias.detach().clone()) if linear.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, :x.shape[-1]], self.bias)

    @torch.no_grad()
    def to_plain(self) -> nn.Linear:
        cin = _count(self.in_group, self.weight.shape[1])
        lin = nn.Linear(cin, self.weight.shape[0], bias=self.bias is not None)
        lin.weight.copy_(self.weight[:, :cin])
        if self.bias is not None:
            lin.bias.copy_(self.bias)
        return lin


class ElasticBlock(nn.Module):
    """A residual block that maps its input to the same shape (identity
    shortcut), so it can be skipped: ``active = False`` returns the input."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block
        self.active = True

    def forward(self, x):
        return self.block(x) if self.active else x
