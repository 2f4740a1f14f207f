"""What a search needs to know about the model before the first trial: its
channel groups (by first producing layer), its Linear/Conv layers and its
removable residual blocks, as plain JSON data (saved once per search)."""
from __future__ import annotations

import warnings

import torch.nn as nn

__all__: list[str] = []  # internal: import from the module


def model_info(model: nn.Module, example_inputs: tuple) -> dict:
    """``{"groups": {key: {"size", "kind"}}, "layers": {name: {"type",
    "params"}}, "blocks": [names], "params": total}``. Groups and blocks are
    empty for models the dependency analysis cannot follow."""
    from ..prune.structured.blocks import residual_blocks
    from ..prune.structured.plan import structured_plan
    from .stages import group_key

    inputs = tuple(example_inputs)
    groups: dict = {}
    blocks: list = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            plan = structured_plan(model, inputs)
            groups = {group_key(g): {"size": int(g.size), "kind": g.kind} for g in plan.groups}
        except Exception:  # noqa: BLE001 - a model structured pruning cannot handle: no groups to search
            groups = {}
        try:
            blocks = list(residual_blocks(model, inputs))
        except Exception:  # noqa: BLE001
            blocks = []
    layers = {name: {"type": type(m).__name__, "params": int(m.weight.numel())}
              for name, m in model.named_modules()
              if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) and getattr(m, "weight", None) is not None}
    return {"groups": groups, "layers": layers, "blocks": blocks,
            "params": int(sum(p.numel() for p in model.parameters()))}
