"""Unused units: after unstructured pruning, a neuron (Linear output) or
channel (Conv output) whose every outgoing weight in the next layer is pruned
contributes nothing to the model's output, yet its incoming weights and bias
are still stored (and still take a share of the sparsity budget). Deep
Compression's LeNet-5 at 8% fc1 density leaves ~60 of fc1's 500 neurons so.

``prune_unused_units(model)`` masks the incoming weights of every such unit
(and zeroes its bias), repeating until nothing changes (a unit becoming unused
can leave the units feeding it unused). The model's output is unchanged bit
for bit: the removed values only ever met exactly-zero weights.

Which layer reads which is found by ``torch.fx`` tracing: a prunable layer
``A`` is linked to ``B`` when ``A``'s output reaches ``B`` and nothing else,
through operations that keep channels apart (element-wise activations,
dropout, pooling, batch norm, flatten into a Linear). Any other use of
``A``'s output (a residual add, a concatenation, two readers) leaves ``A``
untouched. Models that cannot be traced are left untouched as well.
"""
from __future__ import annotations

import logging
import operator

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import masks as M

__all__ = ["unit_links", "unused_units", "prune_unused_units"]

log = logging.getLogger("torchslim.prune")

_PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)
# modules/functions whose output channel c depends on input channel c only
_PER_CHANNEL_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardtanh,
                        nn.Hardswish, nn.Identity, nn.Dropout, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d,
                        nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
                        nn.BatchNorm1d, nn.BatchNorm2d)
_PER_CHANNEL_FUNCS = {F.relu, torch.relu, F.gelu, F.silu, torch.sigmoid, torch.tanh, F.max_pool2d, F.avg_pool2d,
                      F.dropout, F.leaky_relu}


def _channels_in(layer: nn.Module) -> int:
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


def unit_links(model: nn.Module) -> dict[str, tuple[str, int]]:
    """{A: (B, k)}: the outputs of prunable layer ``A`` are read by ``B`` alone,
    unit ``j`` of ``A`` through ``B``'s input columns ``j*k .. j*k+k-1`` (k > 1
    when a conv's channel is flattened into a Linear). Empty if tracing fails."""
    import torch.fx as fx

    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # dynamic control flow, unsupported ops
        log.info("unused units: %s cannot be traced (%s); nothing is linked", type(model).__name__, e)
        return {}
    mods = dict(gm.named_modules())
    links = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), _PRUNABLE):
            continue
        a = mods[node.target]
        if isinstance(a, (nn.Conv1d, nn.Conv2d)) and a.groups != 1:
            continue
        units = a.out_features if isinstance(a, nn.Linear) else a.out_channels
        cur, flattened = node, False
        while True:
            users = list(cur.users)
            if len(users) != 1:
                break
            nxt = users[0]
            if nxt.args[:1] != (cur,) or any(cur is x for x in list(nxt.args[1:]) + list(nxt.kwargs.values())):
                break  # our tensor must be the (only) data input
            m = mods.get(nxt.target) if nxt.op == "call_module" else None
            if isinstance(m, _PRUNABLE):
                if flattened and not isinstance(m, nn.Linear):
                    break
                if not flattened and isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups != 1:
                    break
                n_in = _channels_in(m)
                if n_in % units == 0 and (flattened or n_in == units):
                    links[node.target] = (nxt.target, n_in // units)
                break
            if isinstance(m, _PER_CHANNEL_MODULES) or (nxt.op == "call_function" and nxt.target in _PER_CHANNEL_FUNCS):
                cur = nxt
                continue
            flat = (isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1) or (
                nxt.op == "call_function" and nxt.target is torch.flatten and nxt.args[1:] == (1,) and not nxt.kwargs)
            if flat and not isinstance(a, nn.Linear):
                flattened = True
                cur = nxt
                continue
            break
    return links


def _weight(layer: nn.Module) -> torch.Tensor:
    return layer.weight_orig * layer.weight_mask if M.is_masked(layer) else layer.weight


@torch.no_grad()
def unused_units(model: nn.Module, links: dict[str, tuple[str, int]] | None = None) -> dict[str, torch.Tensor]:
    """{A: bool tensor over A's units}: True where every weight reading the
    unit in the next layer is zero (pruned)."""
    links = unit_links(model) if links is None else links
    mods = dict(model.named_modules())
    out = {}
    for a, (b, k) in links.items():
        wb = _weight(mods[b])
        cols = wb.transpose(0, 1).reshape(wb.shape[1] // k, -1)  # unit j's columns of B, all of them
        out[a] = (cols == 0).all(dim=1)
    return out


@torch.no_grad()
def prune_unused_units(model: nn.Module, links: dict[str, tuple[str, int]] | None = None) -> dict[str, int]:
    """Mask the incoming weights (and zero the bias) of every unused unit,
    until a fixed point. Returns {layer: units newly removed}. Layers without a
    mask get one (reversible, like every pruning step)."""
    links = unit_links(model) if links is None else links
    mods = dict(model.named_modules())
    removed: dict[str, int] = {}
    for _ in range(len(links) + 1):
        changed = False
        for a, dead in unused_units(model, links).items():
            layer = mods[a]
            w = _weight(layer)
            rows = w.reshape(w.shape[0], -1)
            bias = layer.bias if isinstance(getattr(layer, "bias", None), torch.Tensor) else None
            todo = dead & ((rows != 0).any(dim=1) | (bias != 0 if bias is not None else torch.zeros_like(dead)))
            if not bool(todo.any()):
                continue
            mask = M.get_mask(layer)
            mask = torch.ones_like(w) if mask is None else mask.clone()
            mask[todo] = 0
            M.attach_mask(layer, mask)
            if bias is not None:
                bias[todo] = 0
            removed[a] = removed.get(a, 0) + int(todo.sum())
            changed = True
        if not changed:
            break
    return removed
