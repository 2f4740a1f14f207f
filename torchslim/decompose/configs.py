"""Decomposition configs (plain data) and their stage handlers.

Every config selects layers with a ``Scope`` and picks ranks one of three ways
(``rank_by``): ``"keep"`` (each layer keeps at most ``keep`` of its
parameters, so the decomposed layers together keep about ``keep``),
``"energy"`` (smallest rank holding ``energy`` of the squared singular
values), or ``"sensitivity"`` (per layer, the smallest of ``candidates`` whose
accuracy drop on ``ctx.calib_data`` is at most ``tolerance``). A layer whose
decomposition would not reduce MACs is left intact. ``finetune`` trains the
result afterwards, with ``ctx.loss_fn`` or, when ``distill`` is set, by
distillation from the original model.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

from ..core.config import Config, register_config, register_handler
from ..core.errors import ConfigError
from ..core.scope import Scope
from ..distill.configs import DistillConfig
from ..train.config import TrainConfig

__all__ = ["SVDConfig", "TuckerConfig", "CPConfig", "SeparableConfig"]


@dataclasses.dataclass(frozen=True)
class _RankedConfig(Config):
    scope: Scope = Scope()
    rank_by: Literal["keep", "energy", "sensitivity"] = "keep"
    keep: float = 0.25
    energy: float = 0.9
    candidates: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)
    tolerance: float = 0.005
    finetune: TrainConfig | None = None
    distill: DistillConfig | None = None

    def validate(self) -> None:
        cls = type(self).__name__
        if not 0 < self.keep <= 1:
            raise ConfigError(f"{cls}.keep must be in (0, 1] (fraction of the layer's parameters kept), got {self.keep}")
        if not 0 < self.energy <= 1:
            raise ConfigError(f"{cls}.energy must be in (0, 1], got {self.energy}")
        if not self.candidates or any(not 0 < c <= 1 for c in self.candidates):
            raise ConfigError(f"{cls}.candidates must be fractions in (0, 1], got {list(self.candidates)}")
        if self.tolerance < 0:
            raise ConfigError(f"{cls}.tolerance must be >= 0, got {self.tolerance}")


@register_config("decompose.svd")
@dataclasses.dataclass(frozen=True)
class SVDConfig(_RankedConfig):
    """Truncated SVD of the Linear layers in scope."""


@register_config("decompose.tucker")
@dataclasses.dataclass(frozen=True)
class TuckerConfig(_RankedConfig):
    """Tucker-2 (1x1, kxk core, 1x1) of the Conv2d layers in scope."""


@register_config("decompose.cp")
@dataclasses.dataclass(frozen=True)
class CPConfig(_RankedConfig):
    """CP (1x1, kx1 and 1xk depthwise, 1x1) of the Conv2d layers in scope."""

    def validate(self) -> None:
        super().validate()
        if self.rank_by == "energy":
            raise ConfigError("CPConfig.rank_by: 'energy' has no meaning for CP (no singular values); use 'keep' or 'sensitivity'")


@register_config("decompose.separable")
@dataclasses.dataclass(frozen=True)
class SeparableConfig(Config):
    """Replace standard kxk convolutions by depthwise-separable ones
    (``mode="depthwise"``, ``depth_multiplier`` filters per input channel) or
    grouped ones (``mode="grouped"``, ``groups``), initialised from the
    original weights; then optionally fine-tune / distill."""

    scope: Scope = Scope()
    mode: Literal["depthwise", "grouped"] = "depthwise"
    depth_multiplier: int = 1
    groups: int = 2
    finetune: TrainConfig | None = None
    distill: DistillConfig | None = None

    def validate(self) -> None:
        if self.depth_multiplier < 1:
            raise ConfigError(f"SeparableConfig.depth_multiplier must be >= 1, got {self.depth_multiplier}")
        if self.groups < 1:
            raise ConfigError(f"SeparableConfig.groups must be >= 1, got {self.groups}")


def _handler(model, config, ctx):
    from .apply import decompose_stage

    return decompose_stage(model, config, ctx)


for _cls in (SVDConfig, TuckerConfig, CPConfig, SeparableConfig):
    register_handler(_cls)(_handler)
