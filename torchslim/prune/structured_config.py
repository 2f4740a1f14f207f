"""Config "prune.structured" and its handler (a recipe stage): structured
pruning with physical removal, optionally preceded by network-slimming
training (an L1 penalty on BatchNorm scales) and followed by fine-tuning, both
through ``fit`` with ``loss_fn=ctx.loss_fn`` and ``out_dir`` under
``ctx.stage_out`` (a killed stage resumes)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import torch.nn as nn

from ..core.config import Config, register_config, register_handler
from ..core.errors import ConfigError, DataError
from ..core.scope import Scope
from ..train import TrainConfig

__all__ = ["StructuredConfig"]


@register_config("prune.structured")
@dataclasses.dataclass(frozen=True)
class StructuredConfig(Config):
    """Remove ``ratio`` of the channels / params / MACs (``target``), ranking
    channels by ``importance``; ``blocks`` whole residual blocks are removed
    first (least output change on the calibration data); ``slimming`` trains with an L1 penalty of
    ``slimming_strength`` on BatchNorm scales first (use with importance
    "bn_scale")."""

    ratio: float = 0.5
    target: Literal["channels", "params", "macs"] = "macs"
    importance: Literal["l1", "l2", "taylor", "activation", "apoz", "bn_scale"] = "l2"
    scope: Scope = dataclasses.field(default_factory=Scope)
    round_to: int | None = None
    best_effort: bool = False
    blocks: int = 0
    slimming: TrainConfig | None = None
    slimming_strength: float = 1e-4
    finetune: TrainConfig | None = None

    def validate(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ConfigError(f"StructuredConfig.ratio must be in [0, 1), got {self.ratio}")
        if self.round_to is not None and self.round_to < 1:
            raise ConfigError(f"StructuredConfig.round_to must be a positive integer or null, got {self.round_to}")
        if self.blocks < 0:
            raise ConfigError(f"StructuredConfig.blocks must be >= 0, got {self.blocks}")
        if self.slimming_strength < 0:
            raise ConfigError(f"StructuredConfig.slimming_strength must be >= 0, got {self.slimming_strength}")


def _out(ctx, name: str) -> Path | None:
    base = getattr(ctx, "stage_out", None)
    if base is None:
        return None
    p = Path(base) / name
    p.mkdir(parents=True, exist_ok=True)
    return p


@register_handler(StructuredConfig)
def _apply_structured(model: nn.Module, cfg: StructuredConfig, ctx) -> nn.Module:
    from ..train import fit
    from ..zoo import example_inputs as zoo_inputs
    from .slimming import SlimmingPenalty
    from .structured_blocks import remove_blocks
    from .structured_prune import structured

    if (cfg.slimming or cfg.finetune) and (ctx is None or ctx.train_data is None):
        raise DataError("prune.structured: slimming/finetune need training data (ctx.train_data)")
    if cfg.slimming is not None:
        fit(model, ctx.train_data, cfg.slimming, loss_fn=ctx.loss_fn, out_dir=_out(ctx, "slimming"),
            callbacks=[SlimmingPenalty(model, cfg.slimming_strength, scope=cfg.scope)], progress=ctx.progress)
    inputs = (ctx.example_inputs if ctx is not None and ctx.example_inputs is not None
              else zoo_inputs(model, getattr(ctx, "dataset", None)))
    if cfg.blocks:
        model = remove_blocks(model, inputs, count=cfg.blocks, calib_data=getattr(ctx, "calib_data", None),
                              scope=cfg.scope)
    pruned = structured(model, inputs, ratio=cfg.ratio, target=cfg.target, importance=cfg.importance,
                        scope=cfg.scope, round_to=cfg.round_to, best_effort=cfg.best_effort,
                        calib_data=getattr(ctx, "calib_data", None))
    if ctx is not None and hasattr(ctx, "extras"):
        ctx.extras["structured"] = pruned.torchslim_structured
    if cfg.finetune is not None:
        fit(pruned, ctx.train_data, cfg.finetune, loss_fn=ctx.loss_fn, out_dir=_out(ctx, "finetune"),
            progress=ctx.progress)
    return pruned
