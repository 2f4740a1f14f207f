"""Per-layer facts for reports, read from the weights themselves: sparsity,
distinct non-zero values (a codebook after weight sharing), the index bits a
codebook of that size needs, and a histogram of the largest layer's weights."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ["layer_stats", "weight_histogram"]

_MAX_CODEBOOK = 256  # more distinct values than this: the layer is not weight-shared


def _weighted_layers(model: nn.Module):
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor) and w.dim() >= 2 and w.is_floating_point():
            yield name, m, w.detach()


def layer_stats(model: nn.Module) -> list[dict]:
    """One dict per layer with a weight matrix or kernel: ``name``, ``type``,
    ``shape``, ``params``, ``nonzero``, ``sparsity``, ``distinct`` (distinct
    non-zero values) and ``bits`` (index bits per non-zero weight: log2 of the
    codebook size when weights are shared, else the float width)."""
    rows = []
    for name, m, w in _weighted_layers(model):
        flat = w.reshape(-1)
        nz = flat[flat != 0]
        distinct = int(torch.unique(nz).numel()) if nz.numel() else 0
        if distinct <= _MAX_CODEBOOK:
            bits = max(1, math.ceil(math.log2(distinct))) if distinct > 1 else (1 if distinct else 0)
        else:
            bits = torch.finfo(w.dtype).bits
        rows.append({"name": name, "type": type(m).__name__, "shape": list(w.shape), "params": int(flat.numel()),
                     "nonzero": int(nz.numel()), "sparsity": 1.0 - nz.numel() / max(1, flat.numel()),
                     "distinct": distinct, "bits": bits})
    return rows


def weight_histogram(model: nn.Module, *, layer: str | None = None, bins: int = 80) -> dict | None:
    """Histogram of the non-zero weights of ``layer`` (default: the largest
    layer). With a small codebook the exact values and their counts are kept."""
    layers = list(_weighted_layers(model))
    if not layers:
        return None
    if layer is None:
        name, _, w = max(layers, key=lambda t: t[2].numel())
    else:
        found = [t for t in layers if t[0] == layer]
        if not found:
            return None
        name, _, w = found[0]
    nz = w.reshape(-1)[w.reshape(-1) != 0].float()
    out = {"layer": name, "params": int(w.numel()), "nonzero": int(nz.numel())}
    if nz.numel() == 0:
        return {**out, "edges": [], "counts": []}
    lo, hi = float(nz.min()), float(nz.max())
    if hi <= lo:
        hi = lo + 1e-12
    counts = torch.histc(nz, bins=bins, min=lo, max=hi)
    out["edges"] = torch.linspace(lo, hi, bins + 1).tolist()
    out["counts"] = [int(c) for c in counts.tolist()]
    values, vcounts = torch.unique(nz, return_counts=True)
    if values.numel() <= _MAX_CODEBOOK:
        out["values"] = values.tolist()
        out["value_counts"] = vcounts.tolist()
    return out
