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
from ..core.layers import field_for, register_layer
from .deps import Group
from .sizes import is_size_attr

__all__ = ["register_surgery", "register_fixup", "slice_tensors", "prune_groups", "surgery_for"]

Keeps = dict[str, dict[int, torch.Tensor]]
_FIXUPS: dict[type, Callable[[nn.Module], None]] = {}


def register_surgery(cls: type, fn: Callable[[nn.Module, Keeps], None]) -> None:
    """The slicing function of ``cls`` layers (the ``slice`` field of its
    ``core.layers`` adapter)."""
    register_layer(cls, slice=fn)


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
    if keeps and "torchslim_attrs" not in vars(module):
        module.torchslim_attrs = {}  # the artifact records resized layers of unregistered types


def _conv(m: nn.modules.conv._ConvNd, keeps: Keeps) -> None:
    per_group_out = m.out_channels // m.groups
    slice_tensors(m, keeps)
    m.out_channels = m.weight.shape[0]
    if m.groups > 1:  # whole groups are removed (depthwise: one channel each)
        m.groups = m.out_channels // per_group_out
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


def _embedding(m: nn.Embedding, keeps: Keeps) -> None:
    slice_tensors(m, keeps)
    m.num_embeddings, m.embedding_dim = m.weight.shape


def _group_norm(m: nn.GroupNorm, keeps: Keeps) -> None:
    per_group = m.num_channels // m.num_groups
    slice_tensors(m, keeps)
    m.num_channels = m.weight.shape[0] if m.weight is not None else m.num_channels
    m.num_groups = m.num_channels // per_group


for _c in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_surgery(_c, _conv)
register_surgery(nn.Linear, _linear)
for _c in (nn.BatchNorm1d, nn.BatchNorm2d):
    register_surgery(_c, _bn)
register_surgery(nn.LayerNorm, _ln)
register_surgery(nn.Embedding, _embedding)
register_surgery(nn.GroupNorm, _group_norm)


def _generic(m: nn.Module, keeps: Keeps) -> None:
    """A layer type with no registered surgery: slice its tensors, update the
    integer size attributes that held a sliced axis' old length (``nf`` of a
    GPT-2 Conv1D), and mark it so the artifact records its new shapes."""
    old = {t: getattr(m, t).shape for t in keeps}
    slice_tensors(m, keeps)
    sizes: dict[int, set[int]] = defaultdict(set)
    for t, axes in keeps.items():
        for axis in axes:
            sizes[old[t][axis]].add(getattr(m, t).shape[axis])
    # only unambiguous ones: one new length per old length, and an old length no
    # unsliced axis also has (else which attribute holds which is a guess; the
    # dead-channel check then tells)
    unsliced = {n for t in old for a, n in enumerate(old[t]) if a not in keeps[t]}
    rec = dict(getattr(m, "torchslim_attrs", {}))
    for name, v in list(vars(m).items()):
        if (type(v) is int and len(sizes.get(v, ())) == 1 and v not in unsliced and is_size_attr(name)):
            new = next(iter(sizes[v]))
            setattr(m, name, new)
            rec[name] = new
    m.torchslim_attrs = rec


def _shared_tensors(model: nn.Module) -> list[list[tuple[str, str]]]:
    """Parameters held by several modules (tied input/output embeddings)."""
    owners: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for mname, m in model.named_modules(remove_duplicate=False):
        for pname, p in m._parameters.items():
            if p is not None:
                owners[id(p)].append((mname, pname))
    return [v for v in owners.values() if len({x[0] for x in v}) > 1]


def _retie(model: nn.Module, shared: list[list[tuple[str, str]]], keeps: dict) -> None:
    """Give every holder of a tied parameter the sliced one (and fix its sizes)."""
    for holders in shared:
        cut = [h for h in holders if h[1] in keeps.get(h[0], {})]
        if not cut:
            continue
        new = model.get_submodule(cut[0][0])._parameters[cut[0][1]]
        for mname, pname in holders:
            m = model.get_submodule(mname)
            if m._parameters[pname] is not new:
                m._parameters[pname] = new
                _surgery_for(m)(m, {})


def _surgery_for(m: nn.Module) -> Callable[[nn.Module, Keeps], None]:
    if type(m).__module__.startswith("transformers."):
        from . import hf

        hf._register_base()
    return field_for(m, "slice") or _generic  # bare parameters read directly by a forward (a position embedding), unknown layers


def surgery_for(m: nn.Module) -> Callable[[nn.Module, Keeps], None]:
    """The slicing function for ``m``'s layer type (registered, or the generic one)."""
    return _surgery_for(m)


def has_registered_surgery(m: nn.Module) -> bool:
    """Whether ``m``'s layer type has its own surgery (it keeps its sizes right)."""
    _surgery_for(m)  # registers the Hugging Face layer types on first sight
    return field_for(m, "slice") is not None


def prune_groups(model: nn.Module, groups: list[Group], remove: dict[int, torch.Tensor],
                 graph=None) -> nn.Module:
    """Remove channels ``remove[group.id]`` (indices into the group) from
    ``model`` in place, slicing every coupled tensor once; with the
    dependency ``graph``, also update the size attributes its code reads
    (``graph.verify.fix_size_attributes``)."""
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
    shared = _shared_tensors(model)
    keeps: dict[str, Keeps] = defaultdict(dict)
    for (mod, tname, axis), pos in removed_pos.items():
        t = getattr(model.get_submodule(mod), tname)
        mask = torch.ones(t.shape[axis], dtype=torch.bool)
        mask[torch.cat(pos)] = False
        keeps[mod].setdefault(tname, {})[axis] = mask.nonzero().squeeze(1)
    for mod, k in keeps.items():
        m = model.get_submodule(mod)
        _surgery_for(m)(m, k)
    _retie(model, shared, keeps)
    if graph is not None:
        from .verify import fix_size_attributes

        fix_size_attributes(model, graph, groups, remove)
    for m in model.modules():
        fix = _FIXUPS.get(type(m))
        if fix is not None:
            fix(m)
    return model
