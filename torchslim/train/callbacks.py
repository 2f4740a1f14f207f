"""Hooks into the training loop. Methods that train (pruning schedules,
distillation, QAT, weight sharing) plug in here instead of copying the loop.

Order within a step: ``on_batch_start`` -> forward + loss -> ``extra_loss``
(added to the loss) -> backward -> ``on_after_backward`` (edit gradients) ->
optimizer step -> ``on_batch_end`` (e.g. re-apply masks, advance a schedule).
A callback with state implements ``state_dict``/``load_state_dict`` so that a
resumed run continues exactly.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch


@dataclasses.dataclass
class TrainState:
    model: torch.nn.Module  # the bare model (never the DDP wrapper)
    optimizer: torch.optim.Optimizer
    config: Any
    epoch: int = 0  # the epoch being run (0-based)
    batch_in_epoch: int = 0  # batches finished in this epoch
    global_step: int = 0
    steps_per_epoch: int = 0
    total_steps: int = 0
    rank: int = 0
    world_size: int = 1
    last_loss: float = float("nan")
    history: list = dataclasses.field(default_factory=list)

    @property
    def progress(self) -> float:
        """Fraction of all training steps done, in [0, 1]."""
        return self.global_step / max(1, self.total_steps)


class Callback:
    def on_fit_start(self, state: TrainState) -> None: ...
    def on_epoch_start(self, state: TrainState) -> None: ...
    def on_batch_start(self, state: TrainState) -> None: ...
    def extra_loss(self, state: TrainState) -> torch.Tensor | None: return None
    def on_after_backward(self, state: TrainState) -> None: ...
    def on_batch_end(self, state: TrainState) -> None: ...
    def on_epoch_end(self, state: TrainState, metrics: dict) -> None: ...
    def on_fit_end(self, state: TrainState) -> None: ...
    def state_dict(self) -> dict: return {}
    def load_state_dict(self, state: dict) -> None: ...
