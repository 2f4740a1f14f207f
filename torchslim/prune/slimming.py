"""Network slimming (Liu et al. 2017): train with an L1 penalty on BatchNorm
scales so unimportant channels' gammas shrink toward zero, then prune
structurally with ``importance="bn_scale"``. The penalty is a ``fit`` callback
(``extra_loss``), so it trains through the one training loop."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..core.errors import ConfigError
from ..core.scope import Scope
from ..train.callbacks import Callback, TrainState

__all__ = ["SlimmingPenalty"]


class SlimmingPenalty(Callback):
    """Adds ``strength * sum(|gamma|)`` over the BatchNorm layers in ``scope``
    to the training loss."""

    def __init__(self, model: nn.Module, strength: float = 1e-4, *, scope: Scope | None = None):
        if strength < 0:
            raise ConfigError(f"SlimmingPenalty strength must be >= 0, got {strength}")
        self.strength = strength
        scope = scope or Scope()
        self.names = [n for n, _ in scope.select(model, (nn.BatchNorm1d, nn.BatchNorm2d))]
        if not self.names:
            raise ConfigError("SlimmingPenalty: the model has no BatchNorm layer in scope; "
                              "network slimming needs BatchNorm scales")

    def extra_loss(self, state: TrainState) -> torch.Tensor | None:
        if self.strength == 0:
            return None
        total = sum(state.model.get_submodule(n).weight.abs().sum() for n in self.names)
        return self.strength * total
