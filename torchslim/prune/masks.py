"""Reversible weight masks in PyTorch's own idiom (``torch.nn.utils.prune``):
a masked layer holds the trainable ``weight_orig`` and a ``weight_mask``
buffer, and a forward pre-hook sets ``weight = weight_orig * weight_mask``.
Gradients of masked weights are therefore exactly zero, so fine-tuning never
revives them; ``remove(model)`` makes the masks permanent (plain ``weight``).

Masks are updated in place (``set_mask``), so repeated pruning steps keep a
single mask per layer instead of torch's stacked PruningContainer.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import prune as torch_prune

from ..core.errors import ModelError

__all__ = ["attach_mask", "set_mask", "get_mask", "is_masked", "masked_modules", "remove", "sparsity_report",
           "masks_of", "load_masks", "refresh"]


def is_masked(module: nn.Module, name: str = "weight") -> bool:
    return hasattr(module, name + "_orig") and hasattr(module, name + "_mask")


def attach_mask(module: nn.Module, mask: torch.Tensor | None = None, *, name: str = "weight") -> torch.Tensor:
    """Give ``module`` a reversible mask on ``name`` (all ones if ``mask`` is
    None); if it has one already, replace its values. Returns the mask buffer."""
    if mask is None:
        mask = torch.ones_like(getattr(module, name if not is_masked(module, name) else name + "_orig"))
    if is_masked(module, name):
        return set_mask(module, mask, name=name)
    w = getattr(module, name, None)
    if not isinstance(w, torch.Tensor):
        raise ModelError(f"{type(module).__name__} has no tensor {name!r} to mask")
    if mask.shape != w.shape:
        raise ModelError(f"mask shape {tuple(mask.shape)} does not match {name} shape {tuple(w.shape)} "
                         f"of {type(module).__name__}")
    torch_prune.custom_from_mask(module, name, mask.to(device=w.device, dtype=w.dtype))
    return getattr(module, name + "_mask")


def set_mask(module: nn.Module, mask: torch.Tensor, *, name: str = "weight") -> torch.Tensor:
    buf = getattr(module, name + "_mask")
    if mask.shape != buf.shape:
        raise ModelError(f"mask shape {tuple(mask.shape)} does not match {name}_mask {tuple(buf.shape)}")
    with torch.no_grad():
        buf.copy_(mask.to(buf.dtype))
        # keep the visible weight in step with the mask before the next forward
        setattr(module, name, getattr(module, name + "_orig") * buf)
    return buf


def get_mask(module: nn.Module, *, name: str = "weight") -> torch.Tensor | None:
    return getattr(module, name + "_mask", None) if is_masked(module, name) else None


def masked_modules(model: nn.Module, *, name: str = "weight") -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if is_masked(m, name)}


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every layer's weight mask, by layer name (bool tensors)."""
    return {n: m.weight_mask.detach().bool().clone() for n, m in masked_modules(model).items()}


def load_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Attach (or overwrite) masks by layer name, e.g. from ``masks_of``."""
    for n, mask in masks.items():
        try:
            module = model.get_submodule(n)
        except AttributeError:
            raise ModelError(f"the model has no layer named {n!r} to take a mask") from None
        attach_mask(module, mask.float())
    return model


def refresh(model: nn.Module, *, name: str = "weight") -> nn.Module:
    """Recompute every masked layer's visible ``weight`` without autograd
    history. After a training forward it is a non-leaf tensor, which
    ``copy.deepcopy(model)`` refuses; call this before copying (every verb of
    torchslim.prune does before it returns)."""
    with torch.no_grad():
        for m in masked_modules(model, name=name).values():
            setattr(m, name, getattr(m, name + "_orig") * getattr(m, name + "_mask"))
    return model


def remove(model: nn.Module, *, name: str = "weight") -> nn.Module:
    """Make every mask in ``model`` permanent: ``weight`` becomes a plain
    parameter holding ``weight_orig * weight_mask`` (like torch's
    ``prune.remove``, for the whole model). Returns the model."""
    for _, m in masked_modules(model, name=name).items():
        torch_prune.remove(m, name)
    return model


def _weight_of(m: nn.Module) -> torch.Tensor:
    if is_masked(m):
        return (m.weight_orig * m.weight_mask).detach()
    return m.weight.detach()


def sparsity_report(model: nn.Module, modules: dict[str, nn.Module] | None = None) -> dict:
    """Zeros per layer and overall for the weights of ``modules`` (default:
    every Linear/Conv layer): ``{"layers": {name: {"params", "zeros",
    "sparsity"}}, "params", "zeros", "sparsity"}``."""
    if modules is None:
        modules = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))}
    layers, total, zeros = {}, 0, 0
    for n, m in modules.items():
        w = _weight_of(m)
        z = int((w == 0).sum())
        layers[n] = {"params": w.numel(), "zeros": z, "sparsity": z / max(1, w.numel())}
        total += w.numel()
        zeros += z
    return {"layers": layers, "params": total, "zeros": zeros, "sparsity": zeros / max(1, total)}
