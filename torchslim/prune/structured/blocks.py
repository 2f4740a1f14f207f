"""Whole-block pruning: remove residual blocks (``y = x + f(x)``, possibly
several branches in a chain, optionally followed by an activation) by
replacing them with the identity (or with their trailing activation module).

A block qualifies when torch.fx shows its output is its input plus branches
(a block whose skip path has its own layer, such as a downsampling
convolution, does not). Blocks are ranked by how much the model's output moves
when the block alone is replaced (relative L2 change on calibration data or the
example inputs); the least important go first. Models torch.fx cannot trace
(Hugging Face) are not supported here; remove their layers with the model's own
config (e.g. ``build_model("minilm", num_layers=4)``).
"""
from __future__ import annotations

import copy
import operator

import torch
import torch.fx as fx
import torch.nn as nn

from ...core.errors import ConfigError, ModelError
from ...core.scope import Scope
from ...graph.deps import leaf_types
from ...graph.trace import TraceError, trace
from .importance import calib_batches

__all__ = ["residual_blocks", "remove_blocks"]

_ADDS = (operator.add, torch.add, "add", operator.iadd)
_ACTS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Identity)


def _replacement(block: nn.Module, example: torch.Tensor) -> nn.Module | None:
    """What the block becomes without its branches, or None if it is not a
    pure residual block."""
    try:
        gm = trace(block, (example,), leaf_types())
    except TraceError:
        return None
    nodes = list(gm.graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        return None
    out = next(n for n in nodes if n.op == "output").args[0]
    if not isinstance(out, fx.Node):
        return None
    act: nn.Module = nn.Identity()
    if out.op == "call_module" and isinstance(block.get_submodule(out.target), _ACTS):
        act = copy.deepcopy(block.get_submodule(out.target))
        out = out.args[0]

    def trunk(n) -> bool:
        if n is inputs[0]:
            return True
        if isinstance(n, fx.Node) and n.op in ("call_function", "call_method") and n.target in _ADDS:
            return any(trunk(a) for a in n.args[:2])
        return False

    if out is inputs[0] or not trunk(out):
        return None
    return act


def residual_blocks(model: nn.Module, example_inputs: tuple, *, scope: Scope | None = None) -> dict[str, nn.Module]:
    """{qualified name: replacement} of every removable residual block in scope
    (outermost first; a block inside a removable block is not listed)."""
    scope = scope or Scope()
    seen_inputs: dict[str, torch.Tensor] = {}
    hooks = []
    for name, m in model.named_modules():
        if name and not isinstance(m, (nn.Sequential, nn.ModuleList)) and list(m.children()):
            hooks.append(m.register_forward_pre_hook(
                (lambda n: lambda mod, args: seen_inputs.setdefault(n, args[0] if args else None))(name)))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    found: dict[str, nn.Module] = {}
    for name, x in seen_inputs.items():
        if not isinstance(x, torch.Tensor) or any(name.startswith(f + ".") for f in found):
            continue
        m = model.get_submodule(name)
        if not scope.matches(name, m):
            continue
        rep = _replacement(m, x)
        if rep is not None:
            found[name] = rep
    return found


def _set(model: nn.Module, path: str, new: nn.Module) -> None:
    from ...artifact.specs import set_submodule

    set_submodule(model, path, new)


def remove_blocks(model: nn.Module, example_inputs, *, count: int = 1, calib_data=None,
                  scope: Scope | None = None) -> nn.Module:
    """Return a copy of ``model`` with its ``count`` least important residual
    blocks replaced by the identity (or their trailing activation)."""
    example_inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if count < 0:
        raise ConfigError(f"count must be >= 0, got {count}")
    work = copy.deepcopy(model).eval()
    blocks = residual_blocks(work, example_inputs, scope=scope)
    if count > len(blocks):
        raise ModelError(f"asked to remove {count} residual blocks but the model has {len(blocks)} removable ones "
                         f"({sorted(blocks)}); blocks whose skip path has its own layer cannot be removed")
    batches = [b for b, _ in calib_batches(calib_data, 4)] if calib_data is not None else [example_inputs]
    with torch.no_grad():
        refs = [work(*b) for b in batches]
        scores = {}
        for name, rep in blocks.items():
            orig = work.get_submodule(name)
            _set(work, name, rep)
            diff = sum(float((work(*b) - r).norm() / r.norm().clamp_min(1e-12)) for b, r in zip(batches, refs))
            _set(work, name, orig)
            scores[name] = diff / len(batches)
    for name in sorted(scores, key=scores.get)[:count]:
        _set(work, name, blocks[name])
    work.torchslim_blocks = {"removed": sorted(scores, key=scores.get)[:count], "scores": scores}
    return work
