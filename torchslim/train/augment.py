"""Batch augmentation used by ``fit``: random translation ("jitter").

Each sample is moved by an independent integer offset in ``[-shift, shift]``
along every spatial axis, the uncovered border filled with zeros (the
background of raw MNIST-like inputs; zoo models normalise inside). The offsets
come from a generator seeded by (seed, step, rank), so a resumed run sees
exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError

__all__ = ["random_shift"]


def random_shift(x: torch.Tensor, shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each sample of ``x`` (N, C, L) or (N, C, H, W) by up to ``shift``
    positions per spatial axis, zero filled. ``shift=0`` returns ``x`` itself."""
    if shift <= 0:
        return x
    if x.dim() not in (3, 4):
        raise ConfigError(
            f"TrainConfig.shift: random translation needs inputs shaped (N, C, L) or (N, C, H, W), got "
            f"{tuple(x.shape)}; set shift: 0 for this data"
        )
    n = x.shape[0]
    spatial = x.shape[2:]
    offs = torch.randint(0, 2 * shift + 1, (n, len(spatial)), generator=generator)
    pad = [shift] * (2 * len(spatial))
    xp = F.pad(x, pad)
    batch = torch.arange(n)
    if x.dim() == 3:
        idx = offs[:, 0:1] + torch.arange(spatial[0])  # (N, L)
        out = xp[batch[:, None], :, idx]  # (N, L, C)
        return out.permute(0, 2, 1).contiguous()
    h, w = spatial
    rows = offs[:, 0:1] + torch.arange(h)  # (N, H)
    cols = offs[:, 1:2] + torch.arange(w)  # (N, W)
    out = xp[batch[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()
