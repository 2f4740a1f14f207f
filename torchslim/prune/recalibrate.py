"""BatchNorm recalibration: after channels or whole blocks are removed, the
running mean and variance a BatchNorm layer kept describe activations the
smaller model no longer produces (a removed block shifts everything after it),
so its eval-mode output is off before any fine-tuning. ``recalibrate_bn``
re-estimates them: the statistics are reset, the model runs forward (no
gradients, every other module in eval mode, so dropout is off) on a few
batches of unlabelled data with only the BatchNorm layers in training mode and
a cumulative average (``momentum=None``), and every layer's mode and momentum
is restored. The weights are not changed.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..core.errors import ConfigError, DataError

__all__ = ["recalibrate_bn"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _batches(data, batches: int, batch_size: int):
    if hasattr(data, "x"):  # an ArrayDataset: its inputs, in order
        x = data.x
        for i in range(min(batches, -(-len(x) // batch_size))):
            yield (x[i * batch_size:(i + 1) * batch_size],)
        return
    for i, b in enumerate(data):  # an iterable of batches: tensors, (x, ...) tuples or (x, y) pairs
        if i >= batches:
            return
        yield (b,) if isinstance(b, torch.Tensor) else (b[0],)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data, *, batches: int = 20, batch_size: int = 128) -> nn.Module:
    """Re-estimate the running statistics of every BatchNorm layer of ``model``
    (in place; also returned) from up to ``batches`` batches of ``data`` (an
    ArrayDataset, whose labels are not used, or an iterable of input batches).
    A model without BatchNorm is returned unchanged."""
    if batches < 1 or batch_size < 1:
        raise ConfigError(f"recalibrate_bn: batches and batch_size must be positive, got {batches}, {batch_size}")
    bns = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]
    if not bns:
        return model
    inputs = list(_batches(data, batches, batch_size))
    if not inputs:
        raise DataError("recalibrate_bn: the data gave no batch; pass an ArrayDataset or an iterable of input batches")
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in bns}
    try:
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for b in inputs:
            model(*b)
    finally:
        for m, mode in modes.items():
            m.train(mode)
        for m, mom in momenta.items():
            m.momentum = mom
    return model
