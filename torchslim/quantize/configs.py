"""Quantization configs (plain data, registered by name). Handlers live with
their method: ptq.py, qat.py, dynamic.py, weight_only.py, mixed.py, kmeans.py, half.py."""
from __future__ import annotations

import dataclasses
from typing import Literal

from ..core.config import Config, register_config
from ..core.errors import ConfigError
from ..core.scope import Scope
from ..train.config import TrainConfig

__all__ = ["PTQConfig", "QATConfig", "DynamicConfig", "WeightOnlyConfig", "MixedConfig", "KMeansConfig",
           "HalfConfig"]

Observer = Literal["minmax", "moving_average", "percentile", "mse", "kl"]


def _check_bits(cls: str, field: str, bits: int, lo: int = 2, hi: int = 8) -> None:
    if not lo <= bits <= hi:
        raise ConfigError(f"{cls}.{field} must be between {lo} and {hi}, got {bits}")


def _check_positive(cfg, *fields: str) -> None:
    for f in fields:
        if getattr(cfg, f) <= 0:
            raise ConfigError(f"{type(cfg).__name__}.{f} must be positive, got {getattr(cfg, f)}")


@register_config("quantize.ptq")
@dataclasses.dataclass(frozen=True)
class PTQConfig(Config):
    """Static post-training quantization (fake-quant simulation): weights
    symmetric signed, activations (layer inputs) asymmetric unsigned,
    calibrated on ``num_batches`` batches of ctx.calib_data."""

    weight_bits: int = 8
    act_bits: int = 8
    granularity: Literal["channel", "tensor"] = "channel"
    observer: Observer = "minmax"
    weight_method: Literal["rtn", "mse", "adaround", "gptq"] = "rtn"
    num_batches: int = 8
    batch_size: int = 128
    fold_bn: bool = True
    bias_correction: bool = False
    adaround_iters: int = 1000
    scope: Scope = Scope()

    def validate(self):
        _check_bits("PTQConfig", "weight_bits", self.weight_bits)
        _check_bits("PTQConfig", "act_bits", self.act_bits)
        if self.num_batches <= 0 or self.batch_size <= 0:
            raise ConfigError("PTQConfig.num_batches and batch_size must be positive")
        if self.adaround_iters <= 0:
            raise ConfigError("PTQConfig.adaround_iters must be positive")


@register_config("quantize.qat")
@dataclasses.dataclass(frozen=True)
class QATConfig(Config):
    """Quantization-aware training through ``fit``: from a float model
    (prepared and calibrated here) or from a PTQ result (its quantizers are
    kept). ``lsq`` learns the scales; otherwise they stay fixed (STE)."""

    weight_bits: int = 4
    act_bits: int = 8
    granularity: Literal["channel", "tensor"] = "channel"
    observer: Observer = "minmax"
    weight_method: Literal["rtn", "mse"] = "mse"
    lsq: bool = True
    num_batches: int = 8
    batch_size: int = 128
    fold_bn: bool = True
    finetune: TrainConfig | None = TrainConfig(epochs=2, lr=1e-4, scheduler="cosine")
    scope: Scope = Scope()

    def validate(self):
        _check_bits("QATConfig", "weight_bits", self.weight_bits)
        _check_bits("QATConfig", "act_bits", self.act_bits)
        _check_positive(self, "num_batches", "batch_size")


@register_config("quantize.dynamic")
@dataclasses.dataclass(frozen=True)
class DynamicConfig(Config):
    """Dynamic quantization: weights quantized ahead (symmetric signed),
    activations quantized per batch from their own min/max at run time."""

    bits: int = 8
    granularity: Literal["channel", "tensor"] = "channel"
    scope: Scope = Scope()

    def validate(self):
        _check_bits("DynamicConfig", "bits", self.bits)


@register_config("quantize.weight_only")
@dataclasses.dataclass(frozen=True)
class WeightOnlyConfig(Config):
    """Low-bit weights (activations stay float), per group of ``group_size``
    input elements (0 = per output channel), by round-to-nearest or GPTQ; or
    ``pow2``: power-of-two levels per output channel (group_size ignored)."""

    bits: int = 4
    group_size: int = 32
    method: Literal["rtn", "gptq", "pow2"] = "gptq"
    symmetric: bool = True
    num_batches: int = 8
    batch_size: int = 128
    damp: float = 0.01
    scope: Scope = Scope()

    def validate(self):
        _check_bits("WeightOnlyConfig", "bits", self.bits)
        if self.group_size < 0:
            raise ConfigError("WeightOnlyConfig.group_size must be >= 0 (0 = per output channel)")
        if not 0 < self.damp < 1:
            raise ConfigError("WeightOnlyConfig.damp must be in (0, 1)")
        _check_positive(self, "num_batches", "batch_size")


@register_config("quantize.mixed")
@dataclasses.dataclass(frozen=True)
class MixedConfig(Config):
    """Mixed precision: per-layer weight bits from ``candidate_bits`` chosen
    by sensitivity (``loss`` probe or ``hessian`` trace) so the average weight
    bit width is at most ``avg_bits``; activations at ``act_bits`` (null =
    float). The chosen bits are in the stage's records (``mixed_bits``)."""

    candidate_bits: tuple[int, ...] = (2, 4, 8)
    avg_bits: float = 4.0
    sensitivity: Literal["loss", "hessian"] = "loss"
    act_bits: int | None = 8
    granularity: Literal["channel", "tensor"] = "channel"
    weight_method: Literal["rtn", "mse"] = "mse"
    num_batches: int = 4
    batch_size: int = 128
    hutchinson_samples: int = 8
    scope: Scope = Scope()

    def validate(self):
        if not self.candidate_bits:
            raise ConfigError("MixedConfig.candidate_bits must not be empty")
        for b in self.candidate_bits:
            _check_bits("MixedConfig", "candidate_bits", b)
        if not min(self.candidate_bits) <= self.avg_bits:
            raise ConfigError(f"MixedConfig.avg_bits={self.avg_bits} is below the smallest candidate "
                              f"{min(self.candidate_bits)}; raise it or add a smaller candidate")
        if self.act_bits is not None:
            _check_bits("MixedConfig", "act_bits", self.act_bits)
        _check_positive(self, "num_batches", "batch_size", "hutchinson_samples")


@register_config("quantize.kmeans")
@dataclasses.dataclass(frozen=True)
class KMeansConfig(Config):
    """Deep Compression weight sharing: per layer 2^bits shared values
    (k-means, linear init), centroids fine-tuned by summed cluster gradients.
    Zeros of a pruned layer stay zero and are not clustered. ``bias_bits``
    shares each in-scope layer's bias the same way (2^bias_bits values; None
    keeps biases as they are): at high sparsity the biases are a large part of
    a compact artifact (LeNet-5: 580 biases, 1,160 bytes in fp16)."""

    bits: int = 4
    layer_bits: dict[str, int] = dataclasses.field(default_factory=dict)  # per-layer override of ``bits`` (mixed bits)
    bias_bits: int | None = None
    iters: int = 30
    finetune: TrainConfig | None = None
    scope: Scope = Scope()

    def validate(self):
        _check_bits("KMeansConfig", "bits", self.bits, 1, 8)
        for name, b in self.layer_bits.items():
            _check_bits("KMeansConfig", f"layer_bits[{name!r}]", b, 1, 8)
        if self.bias_bits is not None:
            _check_bits("KMeansConfig", "bias_bits", self.bias_bits, 1, 8)
        if self.iters <= 0:
            raise ConfigError("KMeansConfig.iters must be positive")

    def bits_for(self, layer: str) -> int:
        return self.layer_bits.get(layer, self.bits)


@register_config("quantize.half")
@dataclasses.dataclass(frozen=True)
class HalfConfig(Config):
    """fp16 / bf16: optional autocast fine-tuning in that dtype, then the
    weights are converted; inputs are cast on the way in."""

    dtype: Literal["fp16", "bf16"] = "bf16"
    finetune: TrainConfig | None = None
