"""BatchNorm folding: ``conv -> bn`` becomes one conv with
``w' = w * gamma / sqrt(var + eps)`` (per output channel) and
``b' = (b - mean) * gamma / sqrt(var + eps) + beta``; the BatchNorm becomes
``Identity``. Pairs are found on the executed graph when example inputs are
given (``torchslim.graph.links.bn_pairs``, the trace the dependency analysis
uses), else with torch.fx (a BN whose only input is the output of a
Conv/Linear used nowhere else); models neither can trace fall back to
adjacent pairs inside ``nn.Sequential`` containers."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..artifact.specs import set_submodule

__all__ = ["fold_batchnorm", "find_bn_pairs", "fold_bn_into"]

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d)


def find_bn_pairs(model: nn.Module, example_inputs=None) -> list[tuple[str, str]]:
    """(layer name, batchnorm name) pairs that can be folded."""
    if example_inputs is not None:
        from ..graph.links import bn_pairs
        from ..graph.trace import TraceError

        try:
            return [(a, b) for a, b in bn_pairs(model, example_inputs)
                    if isinstance(model.get_submodule(a), _LAYERS) and isinstance(model.get_submodule(b), _BNS)]
        except TraceError:
            pass
    try:
        import torch.fx as fx

        gm = fx.symbolic_trace(model)
    except Exception:
        return _sequential_pairs(model)
    mods = dict(model.named_modules())
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), _BNS):
            continue
        src = node.args[0] if node.args else None
        if (getattr(src, "op", None) == "call_module" and isinstance(mods.get(src.target), _LAYERS)
                and len(src.users) == 1):
            pairs.append((src.target, node.target))
    return pairs


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Sequential):
            items = list(m.named_children())
            for (n1, a), (n2, b) in zip(items, items[1:]):
                if isinstance(a, _LAYERS) and isinstance(b, _BNS):
                    prefix = f"{name}." if name else ""
                    pairs.append((prefix + n1, prefix + n2))
    return pairs


@torch.no_grad()
def fold_bn_into(layer: nn.Module, bn: nn.Module) -> None:
    """Fold ``bn`` (eval statistics) into ``layer`` in place."""
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.affine else torch.ones_like(std)
    beta = bn.bias if bn.affine else torch.zeros_like(std)
    factor = gamma / std
    w = layer.weight
    if isinstance(layer, nn.Linear):
        shape = (-1, 1)
    elif getattr(layer, "transposed", False):
        raise ValueError("transposed convolutions are not folded")
    else:
        shape = (-1,) + (1,) * (w.dim() - 1)
    w.mul_(factor.reshape(shape))
    b = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
    new_b = (b - bn.running_mean) * factor + beta
    layer.bias = nn.Parameter(new_b.detach().clone())


def fold_batchnorm(model: nn.Module, example_inputs=None) -> list[tuple[str, str]]:
    """Fold every foldable BatchNorm of ``model`` in place; returns the pairs
    folded. With ``example_inputs`` the pairs come from the executed graph
    (any model torch.export runs, Hugging Face CNNs included)."""
    pairs = find_bn_pairs(model, example_inputs)
    for layer_name, bn_name in pairs:
        layer, bn = model.get_submodule(layer_name), model.get_submodule(bn_name)
        if bn.running_mean is None:
            continue
        fold_bn_into(layer, bn)
        set_submodule(model, bn_name, nn.Identity())
    return pairs
