"""Physical surgery: slice every tensor axis a channel group touches, then fix
the layer's structural attributes. A table maps a layer type to its slicing
function; register one for a custom layer with ``register_surgery``.

A slicing function receives ``keeps = {tensor name: {axis: kept indices}}``
and must leave an ordinary module of the smaller size (parameters replaced by
new ``nn.Parameter``s, attributes such as ``out_channels`` updated)."""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

import torch
import torch.nn as nn

from ..core.errors import ModelError
from .deps import Group

__all__ = ["register_surgery", "register_fixup", "slice_tensors", "prune_groups"]

Keeps = dict[str, dict[int, torch.Tensor]]
_SURGERY: dict[type, Callable[[nn.Module, Keeps], None]] = {}
_FIXUPS: dict[type, Callable[[nn.Module], None]] = {}


def register_surgery(cls: type, fn: Callable[[nn.Module, Keeps], None]) -> None:
    _SURGERY[cls] = fn


def register_fixup(cls: type, fn: Callable[[nn.Module], None]) -> None:
    """``fn(module)`` runs after every surgery on modules of ``cls``: for blocks
    whose attributes derive from their (sliced) children, such as a head count."""
    _FIXUPS[cls] = fn


def slice_tensors(module: nn.Module, keeps: Keeps) -> None:
    """Index-select each listed parameter/buffer along each listed axis."""
    for tname, axes in keeps.items():
        if tname in module._parameters:
            old = module._parameters[tname]
            t = old.detach()
            for axis, idx in axes.items():
                t = t.index_select(axis, idx)
            module._parameters[tname] = nn.Parameter(t.clone(), requires_grad=old.requires_grad)
        elif tname in module._buffers:
            t = module._buffers[tname]
            for axis, idx in axes.items():
                t = t.index_select(axis, idx)
            module._buffers[tname] = t.clone()
        else:
            raise ModelError(f"{type(module).__name__} has no parameter or buffer {tname!r} to slice")


def _conv(m: nn.modules.conv._ConvNd, keeps: Keeps) -> None:
    depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
    slice_tensors(m, keeps)
    m.out_channels = m.weight.shape[0]
    if depthwise:
        m.groups = m.in_channels = m.out_channels
    else:
        m.in_channels = m.weight.shape[1] * m.groups


def _linear(m: nn.Linear, keeps: Keeps) -> None:
    slice_tensors(m, keeps)
    m.out_features, m.in_features = m.weight.shape


def _bn(m: nn.modules.batchnorm._BatchNorm, keeps: Keeps) -> None:
    slice_tensors(m, keeps)
    ref = m.weight if m.weight is not None else m.running_mean
    m.num_features = ref.shape[0]


def _ln(m: nn.LayerNorm, keeps: Keeps) -> None:
    slice_tensors(m, keeps)
    m.normalized_shape = (m.weight.shape[0],)


for _c in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_surgery(_c, _conv)
register_surgery(nn.Linear, _linear)
for _c in (nn.BatchNorm1d, nn.BatchNorm2d):
    register_surgery(_c, _bn)
register_surgery(nn.LayerNorm, _ln)


def _surgery_for(m: nn.Module) -> Callable[[nn.Module, Keeps], None]:
    for klass in type(m).__mro__:
        if klass in _SURGERY:
            return _SURGERY[klass]
    return slice_tensors  # bare parameters read directly by a forward (e.g. a position embedding)


def prune_groups(model: nn.Module, groups: list[Group], remove: dict[int, torch.Tensor]) -> nn.Module:
    """Remove channels ``remove[group.id]`` (indices into the group) from
    ``model`` in place, slicing every coupled tensor once."""
    removed_pos: dict[tuple[str, str, int], list[torch.Tensor]] = defaultdict(list)
    for g in groups:
        rem = remove.get(g.id)
        if rem is None or len(rem) == 0:
            continue
        if g.frozen:
            raise ModelError(f"channel group {g.name} cannot be pruned: {'; '.join(g.frozen)}")
        rem = torch.as_tensor(rem, dtype=torch.long)
        if len(rem) >= g.size:
            raise ModelError(f"channel group {g.name}: cannot remove all {g.size} channels; keep at least one")
        for mem in g.members:
            removed_pos[(mem.module, mem.tensor, mem.axis)].append(g.indices(mem, rem))
    keeps: dict[str, Keeps] = defaultdict(dict)
    for (mod, tname, axis), pos in removed_pos.items():
        t = getattr(model.get_submodule(mod), tname)
        mask = torch.ones(t.shape[axis], dtype=torch.bool)
        mask[torch.cat(pos)] = False
        keeps[mod].setdefault(tname, {})[axis] = mask.nonzero().squeeze(1)
    for mod, k in keeps.items():
        m = model.get_submodule(mod)
        _surgery_for(m)(m, k)
    for m in model.modules():
        fix = _FIXUPS.get(type(m))
        if fix is not None:
            fix(m)
    return model
