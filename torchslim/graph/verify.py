"""After the surgery: the size attributes a model reads at run time, and the
check that a pruned model computes what the original computes with the
removed channels dead.

*Size attributes.* A traced size constant on a tracked axis (``Site``) was
read from somewhere: OPT views with ``self.num_heads``, GPT-2 splits its
fused QKV with ``self.split_size``, MobileViT reshapes with
``self.all_head_size``. The module whose code ran the op is searched for an
integer attribute of that value whose name says it is a size; it gets the
pruned value. Constants the code took from a tensor's own shape need nothing.
What was changed is kept on the module (``torchslim_attrs``) so the artifact
records it and ``torchslim.load`` sets it again.

*Dead-channel check.* Zero every column that reads a removed channel in a
copy of the original (so those channels cannot matter) and compare its
outputs with the pruned model's on the example inputs: any difference means
the pruned model computes something else (a size attribute nobody updated, a
coupling the analysis missed). It is exact up to float rounding for every
group without a norm over its channels (LayerNorm sees fewer channels).
"""
from __future__ import annotations

import copy
import re

import torch
import torch.nn as nn

from .deps import DependencyGraph, Group
from .export import output_tensors
from .sizes import is_size_attr


def has_surgery(m: nn.Module) -> bool:
    from .surgery import has_registered_surgery

    return has_registered_surgery(m)

__all__ = ["fix_size_attributes", "dead_reference", "outputs_match"]



def _kept(graph: DependencyGraph, groups: list[Group], remove: dict[int, torch.Tensor]) -> dict[int, int]:
    out = {}
    for g in groups:
        rem = remove.get(g.id)
        if rem is not None and len(rem):
            out[graph.find(g.root)] = g.size - len(rem)
    return out


# head-count attributes of an attention block, kept consistent even where the
# code reads the count from the tensor (``view(b, t, -1, d)``): users and
# other tools read them (num_attention_heads, num_key_value_heads, all_head_size)
HEAD_ATTR = re.compile(r"^(num_heads|num_attention_heads|n_heads|n_head|num_key_value_heads|num_kv_heads|"
                       r"all_head_size|inner_dim|num_q_heads)$")


def _owner(paths: list[str]) -> str:
    parts = [p.split(".") for p in paths]
    common = []
    for xs in zip(*parts):
        if len(set(xs)) != 1:
            break
        common.append(xs[0])
    if len(paths) == 1:  # a single (fused) projection: its parent is the attention block
        common = common[:-1]
    return ".".join(common)


def fix_size_attributes(model: nn.Module, graph: DependencyGraph, groups: list[Group],
                        remove: dict[int, torch.Tensor]) -> list[str]:
    """Update the size attributes behind ``graph.sites`` and the head counts
    of pruned attention blocks for the removal; returns ``module.attr: old ->
    new`` lines."""
    kept = _kept(graph, groups, remove)
    if not kept:
        return []
    changes: dict[tuple[str, str], tuple[int, int]] = {}
    for g in groups:
        r = graph.find(g.root)
        if g.kind != "heads" or r not in kept or not g.producers:
            continue
        path = _owner(g.producers)
        try:
            mod = model.get_submodule(path)
        except AttributeError:
            continue
        for name, v in list(vars(mod).items()):
            if type(v) is int and HEAD_ATTR.match(name) and v % g.size == 0:
                changes[(path, name)] = (v, v // g.size * kept[r])
    for site in graph.sites:
        new = 0
        touched = False
        for s in graph.current(site.segs):
            r = graph.find(s.space) if s.space is not None else None
            if r in kept:
                touched = True
                new += kept[r] * s.repeat
            else:
                new += s.count * s.repeat
        if not touched or new == site.value:
            continue
        try:
            mod = model.get_submodule(site.module)
        except AttributeError:
            continue
        if has_surgery(mod):
            continue  # a layer type with its own surgery keeps its own sizes right
        for name, v in list(vars(mod).items()):
            if type(v) is int and v == site.value and is_size_attr(name):
                changes[(site.module, name)] = (v, new)
    log = []
    for (path, name), (old, new) in changes.items():
        mod = model.get_submodule(path)
        setattr(mod, name, new)
        rec = dict(getattr(mod, "torchslim_attrs", {}))
        rec[name] = new
        mod.torchslim_attrs = rec
        log.append(f"{path or type(model).__name__}.{name}: {old} -> {new}")
    return log


def dead_reference(model: nn.Module, groups: list[Group], remove: dict[int, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` in which nothing reads the channels ``remove``
    names: every consumer column of them is zero."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for g in groups:
            rem = remove.get(g.id)
            if rem is None or len(rem) == 0:
                continue
            rem = torch.as_tensor(rem, dtype=torch.long)
            for m in g.members:
                if m.role != "in":
                    continue
                t = getattr(ref.get_submodule(m.module), m.tensor)
                t.index_fill_(m.axis, g.indices(m, rem), 0.0)
    return ref


def _run(model: nn.Module, inputs: tuple) -> list[torch.Tensor]:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return output_tensors(model(*inputs))
    finally:
        model.train(was)


def outputs_match(reference: nn.Module, pruned: nn.Module, inputs: tuple, *, rtol: float = 1e-4) -> str | None:
    """None if both models give the same outputs (to ``rtol`` of the largest
    magnitude), else what differs."""
    try:
        a = _run(reference, inputs)
    except Exception as e:  # pragma: no cover - the reference is the user's model
        return f"the reference model fails: {type(e).__name__}: {e}"
    try:
        b = _run(pruned, inputs)
    except Exception as e:
        return f"the pruned model fails to run: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    if len(a) != len(b):
        return f"{len(b)} outputs instead of {len(a)}"
    for i, (x, y) in enumerate(zip(a, b)):
        if x.shape != y.shape:
            return f"output {i} has shape {tuple(y.shape)} instead of {tuple(x.shape)}"
        if not x.is_floating_point():
            if not torch.equal(x, y):
                return f"output {i} differs"
            continue
        scale = float(x.abs().max()) if x.numel() else 0.0
        err = float((x - y).abs().max()) if x.numel() else 0.0
        if not err <= rtol * max(scale, 1e-3) + 1e-6:
            return f"output {i} differs by {err:.3g} (largest magnitude {scale:.3g})"
    return None
