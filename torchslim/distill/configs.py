"""Distillation configs (plain data) and the ``"distill"`` stage handler.

The loss a ``DistillConfig`` describes is
``alpha * output_term + (1 - alpha) * hard_CE + sum(hint weights * hint terms)
+ sum(attention-transfer terms) + transformer layer terms``.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

from ..core.config import Config, register_config, register_handler
from ..core.errors import ConfigError
from ..train.config import TrainConfig

__all__ = ["HintConfig", "AttentionTransferConfig", "LayerMapConfig", "DistillConfig"]


@dataclasses.dataclass(frozen=True)
class HintConfig(Config):
    """FitNets hint: the student module's output should match the teacher
    module's output (modules named by qualified name). With ``adapter`` a
    learned 1x1 conv (4-D features) or linear (others) maps the student's
    channels to the teacher's when they differ."""

    student: str
    teacher: str
    weight: float = 1.0
    loss: Literal["mse", "cosine"] = "mse"
    adapter: bool = True

    def validate(self) -> None:
        if self.weight < 0:
            raise ConfigError(f"HintConfig.weight must be >= 0, got {self.weight}")


@dataclasses.dataclass(frozen=True)
class AttentionTransferConfig(Config):
    """Attention transfer between a student and a teacher CNN module (their
    (N, C, H, W) outputs; channel counts may differ). The paper's beta/2 = 500
    per pair is a good default with p = 2."""

    student: str
    teacher: str
    weight: float = 500.0
    p: float = 2.0

    def validate(self) -> None:
        if self.weight < 0 or self.p <= 0:
            raise ConfigError("AttentionTransferConfig: weight must be >= 0 and p > 0")


@dataclasses.dataclass(frozen=True)
class LayerMapConfig(Config):
    """Transformer distillation (MiniLM / TinyBERT style) for Hugging Face
    encoders: student layer ``student_layers[i]`` learns from teacher layer
    ``teacher_layers[i]`` (0-based): its attention probabilities (KL) and its
    output hidden states (MSE)."""

    student_layers: tuple[int, ...]
    teacher_layers: tuple[int, ...]
    attention_weight: float = 1.0
    hidden_weight: float = 1.0

    def validate(self) -> None:
        if len(self.student_layers) != len(self.teacher_layers):
            raise ConfigError(
                f"LayerMapConfig: student_layers {list(self.student_layers)} and teacher_layers "
                f"{list(self.teacher_layers)} must have the same length"
            )
        if self.attention_weight < 0 or self.hidden_weight < 0:
            raise ConfigError("LayerMapConfig: weights must be >= 0")


@register_config("distill")
@dataclasses.dataclass(frozen=True)
class DistillConfig(Config):
    """Train the model as a student of ``ctx.teacher``.

    ``output_loss``: "kl" (soft targets with temperature and T^2 scaling, for
    logits), "mse" (logit matching), "cosine" (embeddings), "none".
    ``alpha`` weights the output term; ``1 - alpha`` weights the hard-label
    cross-entropy (no hard term when ``alpha == 1``). ``cache_teacher`` keeps
    teacher outputs per input sample (fingerprinted), so a deterministic
    teacher runs once per sample, not once per epoch. ``inputs="token_ids"``:
    a batch is padded token ids (pad id ``pad_id``) and models are called as
    ``model(ids, ids != pad_id)``.
    """

    temperature: float = 4.0
    alpha: float = 0.9
    output_loss: Literal["kl", "mse", "cosine", "none"] = "kl"
    hints: tuple[HintConfig, ...] = ()
    attention: tuple[AttentionTransferConfig, ...] = ()
    layers: LayerMapConfig | None = None
    cache_teacher: bool = False
    adapter_lr: float = 1e-3
    inputs: Literal["tensor", "token_ids"] = "tensor"
    pad_id: int = 0
    train: TrainConfig = TrainConfig()

    def validate(self) -> None:
        if self.temperature <= 0:
            raise ConfigError(f"DistillConfig.temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"DistillConfig.alpha must be in [0, 1], got {self.alpha}")
        if self.adapter_lr <= 0:
            raise ConfigError(f"DistillConfig.adapter_lr must be positive, got {self.adapter_lr}")
        if self.output_loss == "none" and self.alpha == 1.0 and not (self.hints or self.attention or self.layers):
            raise ConfigError("DistillConfig: output_loss='none' with alpha=1 and no hints/attention/layers "
                              "leaves nothing to train on; lower alpha or add a term")


@register_handler(DistillConfig)
def _apply_distill(model, config: DistillConfig, ctx):
    from .fit import distill

    if ctx is None or ctx.teacher is None:
        raise ConfigError("distill: the stage needs a teacher (ctx.teacher; in a recipe set `teacher:`)")
    if ctx.train_data is None:
        raise ConfigError("distill: the stage needs training data (ctx.train_data)")
    distill(model, ctx.teacher, ctx.train_data, config, eval_data=ctx.calib_data,
            out_dir=ctx.stage_out, progress=ctx.progress)
    return model
