"""Run a model once and keep what named layers receive."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
import torch.nn as nn

__all__ = ["layer_inputs"]


@torch.no_grad()
def layer_inputs(model: nn.Module, names: Iterable[str], example_inputs,
                 keep: Callable[[torch.Tensor], Any] = lambda x: x.detach().clone()) -> dict[str, Any]:
    """``{name: keep(first positional input)}`` of each named layer on one
    eval-mode forward pass of ``example_inputs`` (a tensor or a tuple); the
    model's mode is restored and the hooks are removed even if it raises."""
    modules = dict(model.named_modules())
    seen: dict[str, Any] = {}
    handles = [modules[n].register_forward_pre_hook(lambda m, args, n=n: seen.__setitem__(n, keep(args[0])))
               for n in names]
    was_training = model.training
    model.eval()
    try:
        model(*(example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return seen
