"""Unused units: after unstructured pruning, a neuron (Linear output) or
channel (Conv output) whose every outgoing weight in the next layer is pruned
contributes nothing to the model's output, yet its incoming weights and bias
are still stored (and still take a share of the sparsity budget). Deep
Compression's LeNet-5 at 8% fc1 density leaves ~60 of fc1's 500 neurons so.

``prune_unused_units(model)`` masks the incoming weights of every such unit
(and zeroes its bias), repeating until nothing changes (a unit becoming unused
can leave the units feeding it unused). The model's output is unchanged bit
for bit: the removed values only ever met exactly-zero weights.

Which layer reads which is found on the executed graph when example inputs
are given (``torchslim.graph.links``, the trace the dependency analysis
uses), else by ``torch.fx`` tracing: a prunable layer ``A`` is linked to
``B`` when ``A``'s output reaches ``B`` and nothing else, through operations
that keep channels apart (element-wise activations, dropout, pooling, batch
norm, flatten into a Linear). Any other use of ``A``'s output (a residual
add, a concatenation, two readers) leaves ``A`` untouched. Models that cannot
be traced are left untouched as well.

``remove_dead_units(model, example_inputs)`` goes further and removes units
physically: a unit whose incoming weights are all zero outputs a constant
(``act(bias)``); that constant is folded into the reader's bias (for a Linear
reader ``bias += W[:, cols].sum(1) * c``, over the ``k`` columns of a conv
channel flattened into it; for a conv reader without padding ``bias +=
W[:, j].sum((1, 2)) * c``). Then every unit with no incoming or no outgoing
weights left is sliced out of its layer (output rows, bias) and of the reader
(input columns), so the artifact records the smaller shapes and
``torchslim.load`` rebuilds them. The output equals the model's before, up to
float rounding of the folded sums.
"""
from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import masks as M

__all__ = ["unit_links", "unused_units", "prune_unused_units", "remove_dead_units"]

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


def unit_links(model: nn.Module, example_inputs=None) -> dict[str, tuple[str, int]]:
    """{A: (B, k)}: the outputs of prunable layer ``A`` are read by ``B`` alone,
    unit ``j`` of ``A`` through ``B``'s input columns ``j*k .. j*k+k-1`` (k > 1
    when a conv's channel is flattened into a Linear). Empty if tracing fails."""
    return {a: (b, k) for a, (b, k, _) in _links_with_path(model, example_inputs).items()}


def _links_with_path(model: nn.Module, example_inputs=None) -> dict[str, tuple[str, int, list[str]]]:
    """unit_links plus, per link, the names of the modules between A and B."""
    import torch.fx as fx

    if example_inputs is not None:
        from ..graph.links import unit_links_with_path
        from ..graph.trace import TraceError

        try:
            return {a: v for a, v in unit_links_with_path(model, example_inputs).items()
                    if isinstance(model.get_submodule(a), _PRUNABLE) and isinstance(model.get_submodule(v[0]), _PRUNABLE)}
        except TraceError as e:
            log.info("unused units: %s; falling back to torch.fx", e)

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
        cur, flattened, path = node, False, []
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
                    links[node.target] = (nxt.target, n_in // units, path)
                break
            if isinstance(m, _PER_CHANNEL_MODULES) or (nxt.op == "call_function" and nxt.target in _PER_CHANNEL_FUNCS):
                if m is not None:
                    path.append(nxt.target)
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


def _bias_of(layer: nn.Module) -> torch.Tensor | None:
    b = getattr(layer, "bias", None)
    return b if isinstance(b, torch.Tensor) else None


def _reader_inputs(model: nn.Module, readers: list[str], example_inputs) -> dict[str, torch.Tensor]:
    """The input each reader layer sees on ``example_inputs`` (eval mode)."""
    from ..core.hooks import layer_inputs

    return layer_inputs(model, readers, example_inputs)


def _constants(x: torch.Tensor, units: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(value, is_constant) per unit of A from the reader's input ``x``: unit j
    is constant when all its entries (batch, spatial, its k columns) are equal."""
    if x.dim() == 2:  # Linear reader: (N, units * k)
        v = x.reshape(x.shape[0], units, k).transpose(0, 1).reshape(units, -1)
    else:  # conv reader: (N, C, ...)
        v = x.transpose(0, 1).reshape(units, -1)
    first = v[:, 0]
    const = (v == first[:, None]).all(dim=1) & torch.isfinite(first)
    return first, const


@torch.no_grad()
def remove_dead_units(model: nn.Module, example_inputs) -> dict[str, dict[str, int]]:
    """Fold the units whose incoming weights are all zero into the next
    layer's bias and physically remove every unit with no incoming or no
    outgoing weights left, until a fixed point (in place; masks are made
    permanent first). ``example_inputs`` (one batch, any content) gives the
    constant each such unit feeds its reader (``act(bias)``, through the
    element-wise operations between the two layers). Returns
    {layer: {"folded": n, "removed": n}}.

    Links through a BatchNorm slice the BatchNorm with the channel but never
    fold (its batch statistics would change in training); a unit is folded
    only if its reader sees one value for it everywhere (a conv reader with
    padding sees zeros at the border, so its constant units are kept unless
    the constant is 0)."""
    from ..graph.surgery import surgery_for

    M.remove(model)
    paths = _links_with_path(model, example_inputs)
    out: dict[str, dict[str, int]] = {}
    for _ in range(4 * len(paths) + 2):
        changed = False
        for a, (b, k, path) in paths.items():
            mods = dict(model.named_modules())
            la, lb = mods[a], mods[b]
            between = [mods[n] for n in path]
            if any(not isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and
                   (any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)))
                   for m in between):
                continue  # a per-channel module with state we cannot slice
            has_bn = any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in between)
            wa, wb = la.weight, lb.weight
            units = wa.shape[0]
            if units <= 1:
                continue
            dead_in = (wa.reshape(units, -1) == 0).all(dim=1)
            cols = wb.transpose(0, 1).reshape(units, -1)
            dead_out = (cols == 0).all(dim=1)
            fold = dead_in & ~dead_out
            folded = 0
            if bool(fold.any()):
                if has_bn:
                    fold = torch.zeros_like(fold)
                else:
                    x = _reader_inputs(model, [b], example_inputs)[b]
                    value, const = _constants(x, units, k)
                    fold &= const
                    conv_pad = not isinstance(lb, nn.Linear) and (
                        isinstance(lb.padding, str) or any(p != 0 for p in lb.padding))
                    bias_b = _bias_of(lb)
                    needs = value != 0
                    if conv_pad or bias_b is None:
                        fold &= ~needs  # only constant zeros are exact to drop here
                    idx = torch.nonzero(fold & needs).flatten()
                    if idx.numel():
                        if isinstance(lb, nn.Linear):
                            w3 = wb.reshape(wb.shape[0], units, k)
                            contrib = (w3[:, idx, :].sum(dim=2).double() * value[idx].double()).sum(dim=1)
                        else:
                            w3 = wb[:, idx].reshape(wb.shape[0], idx.numel(), -1)
                            contrib = (w3.sum(dim=2).double() * value[idx].double()).sum(dim=1)
                        bias_b.add_(contrib.to(bias_b.dtype))
                    folded = int(fold.sum())
            gone = dead_out | fold
            if not bool(gone.any()):
                continue
            if bool(gone.all()):
                gone[0] = False  # keep one unit: zero-width layers do not build
                if not bool(gone.any()):
                    continue
            keep = torch.nonzero(~gone).flatten()
            ka = {"weight": {0: keep}}
            if _bias_of(la) is not None:
                ka["bias"] = {0: keep}
            surgery_for(la)(la, ka)
            for m in between:
                if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    kb = {t: {0: keep} for t in ("weight", "bias", "running_mean", "running_var")
                          if getattr(m, t, None) is not None}
                    surgery_for(m)(m, kb)
            cols_keep = (keep[:, None] * k + torch.arange(k)[None, :]).flatten()
            surgery_for(lb)(lb, {"weight": {1: cols_keep}})
            rec = out.setdefault(a, {"folded": 0, "removed": 0})
            rec["folded"] += folded
            rec["removed"] += int(gone.sum())
            changed = True
        if not changed:
            break
    if out:
        log.info("dead units removed: %s", out)
    return out
