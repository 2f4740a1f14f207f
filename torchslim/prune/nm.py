"""N:M semi-structured sparsity (2:4, 4:8): in every group of M consecutive
weights along the *input* dimension, at most N are non-zero (the pattern
sparse tensor cores accelerate).

Groups run along ``in_features`` of a Linear weight (out, in) and along the
input channels of a Conv weight (out, in, *k) at each kernel position, as
NVIDIA's ASP lays them out. When the input size is not a multiple of M, the
last, shorter group keeps at most N weights too (never more than N:M allows).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ..core.errors import ConfigError
from ..core.scope import Scope
from . import masks as M
from .importance import importance_scores
from .unstructured import select_layers

__all__ = ["nm_mask", "nm", "check_nm"]


def _groups_view(t: torch.Tensor) -> torch.Tensor:
    """(rows, in) view with the input dimension last: Linear (out, in) as is;
    Conv (out, in, *k) -> (out * prod(k), in)."""
    if t.dim() == 2:
        return t
    perm = (0,) + tuple(range(2, t.dim())) + (1,)
    return t.permute(perm).reshape(-1, t.shape[1])


def _from_groups_view(v: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    if len(shape) == 2:
        return v.reshape(shape)
    k = tuple(shape[2:])
    t = v.reshape(shape[0], *k, shape[1])
    perm = (0, t.dim() - 1) + tuple(range(1, t.dim() - 1))
    return t.permute(perm).contiguous()


def nm_mask(scores: torch.Tensor, n: int, m: int, *, current: torch.Tensor | None = None) -> torch.Tensor:
    """Keep-mask (bool) with the N highest scores of every M-group along the
    input dimension; entries already masked in ``current`` stay masked."""
    if not 0 < n <= m:
        raise ConfigError(f"N:M sparsity needs 0 < N <= M, got {n}:{m}")
    s = scores.detach().float().clone()
    if current is not None:
        s[current == 0] = float("-inf")
    v = _groups_view(s)
    rows, cols = v.shape
    pad = (-cols) % m
    if pad:
        v = torch.cat([v, torch.full((rows, pad), float("-inf"))], 1)
    g = v.reshape(rows, -1, m)
    idx = g.topk(n, dim=-1).indices
    keep = torch.zeros_like(g, dtype=torch.bool).scatter_(-1, idx, True)
    keep &= g > float("-inf")  # padding and already-masked entries are never kept
    keep = keep.reshape(rows, -1)[:, :cols]
    return _from_groups_view(keep, scores.shape)


def check_nm(weight: torch.Tensor, n: int, m: int) -> bool:
    """True when every M-group along the input dimension has at most N non-zeros."""
    v = _groups_view(weight.detach())
    rows, cols = v.shape
    pad = (-cols) % m
    if pad:
        v = torch.cat([v, torch.zeros(rows, pad, dtype=v.dtype)], 1)
    return bool(((v.reshape(rows, -1, m) != 0).sum(-1) <= n).all())


def nm(model: nn.Module, n: int = 2, m: int = 4, *, criterion: str = "l1", scope: Scope | None = None,
       data=None, loss_fn: Callable | None = None, batches: int = 4, seed: int = 0) -> nn.Module:
    """Apply N:M masks to every in-scope Linear/Conv layer (in place, reversible)."""
    layers = select_layers(model, scope)
    scores = importance_scores(model, layers, criterion, data=data, loss_fn=loss_fn, batches=batches, seed=seed)
    for name, layer in layers.items():
        mask = nm_mask(scores[name], n, m, current=M.get_mask(layer))
        M.attach_mask(layer, mask.float())
    return model
