"""Training configuration (plain data)."""
from __future__ import annotations

import dataclasses
from typing import Literal

from ..core.config import Config, bounded, register_config
from ..core.errors import ConfigError


@register_config("train")
@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    epochs: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    momentum: float = bounded(0.9, ge=0.0)
    nesterov: bool = False
    weight_decay: float = bounded(0.0, ge=0.0)
    scheduler: Literal["none", "cosine", "step", "onecycle"] = "cosine"
    step_size: int = bounded(10, ge=1)  # epochs, for scheduler="step"
    gamma: float = bounded(0.1, gt=0.0)
    warmup_steps: int = bounded(0, ge=0)
    label_smoothing: float = 0.0
    shift: int = 0  # random translation of each input by up to this many pixels per axis (0 = off)
    grad_clip: float | None = bounded(None, gt=0.0)
    seed: int = 0
    max_steps_per_epoch: int | None = None  # cap, for quick runs and tests
    checkpoint_every_steps: int | None = None  # mid-epoch checkpoints (epoch ends always checkpoint)
    eval_every: int = bounded(1, ge=0)  # epochs between evaluations on eval_data (0 = never)
    amp: Literal["none", "bf16", "fp16"] = "none"  # autocast mixed precision

    def validate(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"TrainConfig.epochs must be >= 0, got {self.epochs}")
        if self.batch_size <= 0:
            raise ConfigError(f"TrainConfig.batch_size must be positive, got {self.batch_size}")
        if self.lr <= 0:
            raise ConfigError(f"TrainConfig.lr must be positive, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.shift < 0:
            raise ConfigError(f"TrainConfig.shift must be >= 0 (pixels of random translation), got {self.shift}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch <= 0:
            raise ConfigError("TrainConfig.max_steps_per_epoch must be positive or null")
        if self.checkpoint_every_steps is not None and self.checkpoint_every_steps <= 0:
            raise ConfigError("TrainConfig.checkpoint_every_steps must be positive or null")
