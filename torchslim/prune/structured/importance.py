"""Importance of the channels of a dependency group (higher = keep).

- ``"l1"`` / ``"l2"``: norm of every weight the channel owns across the group
  (producer filters/rows, consumer columns, BatchNorm/LayerNorm affine), as in
  DepGraph's group magnitude.
- ``"taylor"``: first-order Taylor estimate of the loss change when the channel
  is removed, ``|sum(w * dL/dw)|`` over the channel's weights, accumulated over
  calibration batches (Molchanov et al. 2019).
- ``"activation"``: mean absolute input activation seen by the layers that read
  the channel, on calibration data.
- ``"apoz"``: 1 - average percentage of zeros of those activations (Hu et al. 2016).
- ``"bn_scale"``: |gamma| of the BatchNorm on the channel (network slimming,
  Liu et al. 2017; train with ``torchslim.prune.SlimmingPenalty`` first).

Criteria that need data fall back to ``"l2"`` for groups they cannot observe
(attention heads inside a kept-whole layer, groups without BatchNorm), and say so.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...core.errors import ConfigError
from ...graph.deps import Group, Member

__all__ = ["group_importance", "IMPORTANCE_CRITERIA", "calib_batches"]

IMPORTANCE_CRITERIA = ("l1", "l2", "taylor", "activation", "apoz", "bn_scale")


def _per_channel(t: torch.Tensor, g: Group, m: Member) -> torch.Tensor:
    """Sum of ``t`` (already reduced to one value per position on the member's
    axis) over each channel's positions."""
    return t[m.offset:m.offset + g.size * m.repeat].reshape(g.size, m.repeat).sum(1)


def _axis_reduce(t: torch.Tensor, axis: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    return fn(t.detach().transpose(0, axis).reshape(t.shape[axis], -1)).float()


def _magnitude(model: nn.Module, g: Group, p: int) -> torch.Tensor:
    score = torch.zeros(g.size)
    for m in g.members:
        mod = model.get_submodule(m.module)
        if m.tensor not in mod._parameters:
            continue  # running statistics are not weights
        t = getattr(mod, m.tensor)
        score += _per_channel(_axis_reduce(t, m.axis, lambda x: x.abs().pow(p).sum(1)), g, m)
    return score.sqrt() if p == 2 else score


def _bn_scale(model: nn.Module, g: Group) -> torch.Tensor | None:
    score, found = torch.zeros(g.size), False
    for m in g.members:
        mod = model.get_submodule(m.module)
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and m.tensor == "weight":
            score += _per_channel(mod.weight.detach().abs(), g, m)
            found = True
    return score if found else None


def calib_batches(data, batches: int, batch_size: int = 64) -> Iterable[tuple[tuple, torch.Tensor | None]]:
    """(inputs tuple, labels or None) from an ArrayDataset (``.x``/``.y``), a
    tensor, or an iterable of batches (a tensor or a tuple of model inputs)."""
    if hasattr(data, "x"):
        n = min(len(data.x), batches * batch_size)
        for i in range(0, n, batch_size):
            yield (data.x[i:i + batch_size],), (data.y[i:i + batch_size] if getattr(data, "y", None) is not None else None)
        return
    if isinstance(data, torch.Tensor):
        data = [data]
    for i, b in enumerate(data):
        if i >= batches:
            break
        yield (tuple(b) if isinstance(b, (tuple, list)) else (b,)), None


def _taylor(model, groups, data, batches, loss_fn) -> dict[int, torch.Tensor]:
    params = {n: p for n, p in model.named_parameters()}
    acc = {g.id: torch.zeros(g.size) for g in groups}
    was = model.training
    model.eval()  # BatchNorm statistics untouched
    seen = 0
    try:
        for inputs, y in calib_batches(data, batches):
            if y is None and loss_fn is None:
                raise ConfigError("importance='taylor' needs labelled calibration data (an ArrayDataset with y) "
                                  "or a loss_fn; use 'l2' or 'activation' otherwise")
            model.zero_grad(set_to_none=True)
            if loss_fn is not None:
                out = loss_fn(model, inputs[0] if len(inputs) == 1 else inputs, y)
                loss = out[0] if isinstance(out, tuple) else out
            else:
                loss = F.cross_entropy(model(*inputs), y)
            loss.backward()
            for g in groups:
                for m in g.members:
                    p = params.get(f"{m.module}.{m.tensor}" if m.module else m.tensor)
                    if p is None or p.grad is None:
                        continue
                    wg = _axis_reduce(p * p.grad, m.axis, lambda x: x.sum(1))
                    acc[g.id] += _per_channel(wg, g, m).abs()
            seen += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was)
    if seen == 0:
        raise ConfigError("importance='taylor' got no calibration batches; pass calib_data")
    return acc


def _activation(model, groups, data, batches, apoz: bool) -> dict[int, torch.Tensor | None]:
    points: dict[tuple[str, int], list] = {}
    for g in groups:
        for (mod, dim, off, rep) in g.observe:
            points.setdefault((mod, dim), []).append((g, off, rep))
    stats: dict[tuple[str, int], list] = {k: [None, 0] for k in points}
    hooks = []

    def make_hook(key):
        mod_name, dim = key

        def hook(module, args):
            x = args[0].detach()
            flat = x.transpose(0, dim).reshape(x.shape[dim], -1).float()
            v = (flat != 0).float().mean(1) if apoz else flat.abs().mean(1)
            s = stats[key]
            s[0] = v if s[0] is None else s[0] + v
            s[1] += 1
        return hook

    for key in points:
        hooks.append(model.get_submodule(key[0]).register_forward_pre_hook(make_hook(key)))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            n = 0
            for inputs, _ in calib_batches(data, batches):
                model(*inputs)
                n += 1
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    if n == 0:
        raise ConfigError(f"importance={'apoz' if apoz else 'activation'!r} got no calibration batches; pass calib_data")
    out: dict[int, torch.Tensor | None] = {g.id: None for g in groups}
    counts: dict[int, int] = {g.id: 0 for g in groups}
    for key, users in points.items():
        total, k = stats[key]
        if total is None:
            continue
        mean = total / k
        for g, off, rep in users:
            v = mean[off:off + g.size * rep].reshape(g.size, rep).mean(1)
            out[g.id] = v if out[g.id] is None else out[g.id] + v
            counts[g.id] += 1
    return {gid: (v / counts[gid] if v is not None else None) for gid, v in out.items()}


def group_importance(model: nn.Module, groups: list[Group], criterion: str = "l2", *, calib_data=None,
                     batches: int = 8, loss_fn=None, notes: list[str] | None = None) -> dict[int, torch.Tensor]:
    """One score per channel for every group (a tensor of ``group.size``)."""
    if criterion not in IMPORTANCE_CRITERIA:
        raise ConfigError(f"importance {criterion!r} is unknown; use one of {list(IMPORTANCE_CRITERIA)}")
    notes = notes if notes is not None else []
    if criterion in ("l1", "l2"):
        return {g.id: _magnitude(model, g, 1 if criterion == "l1" else 2) for g in groups}
    if criterion in ("taylor", "activation", "apoz") and calib_data is None:
        raise ConfigError(f"importance={criterion!r} needs calibration data (calib_data=...); "
                          "use 'l1' or 'l2' to rank by weights alone")
    if criterion == "taylor":
        return _taylor(model, groups, calib_data, batches, loss_fn)
    if criterion == "bn_scale":
        found = {g.id: _bn_scale(model, g) for g in groups}
    else:
        found = _activation(model, groups, calib_data, batches, criterion == "apoz")
    out = {}
    for g in groups:
        if found[g.id] is None:
            notes.append(f"{g.name}: no {criterion} signal for this group; ranked by l2 weight norm")
            out[g.id] = _magnitude(model, g, 2)
        else:
            out[g.id] = found[g.id]
    return out
