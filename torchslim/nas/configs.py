"""Config "nas.search" and its handler (a recipe stage): build the
once-for-all supernet of the stage's model, train it with the sandwich rule,
search a subnet under a measured latency budget, fine-tune it. The stage's
model becomes the extracted plain subnet.

In a recipe the candidates are judged on the calibration split
(``data.holdout``, held out of the training data; the test split is never
used to choose) and supernet training and fine-tuning run through ``fit``
under the stage folder, so a killed stage resumes.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

from ..core.config import Config, bounded, register_config, register_handler
from ..core.errors import ConfigError, DataError
from ..core.stage import StageResult
from ..train import TrainConfig

__all__ = ["NASConfig"]


@register_config("nas.search")
@dataclasses.dataclass(frozen=True)
class NASConfig(Config):
    """Supernet: ``width_mults`` (stage widths), ``inner_mults`` (widths inside
    blocks), ``kernel_sizes`` (depthwise kernels; null: the trained k and
    k - 2), ``elastic_depth``, ``round_to``, ``sort_channels``; trained with the
    sandwich rule (largest + smallest + ``random_subnets`` random subnets per
    step, in-place distillation at ``distill_temperature``) for
    ``supernet_train`` (null: no training, e.g. a supernet trained before).

    Budget: ``speedup`` (at least this many times faster than the source
    model, measured, on every batch size of ``latency_batch_sizes``; one
    number, or one per batch size) or ``budget_ms`` (one per batch size), in ``latency_runtime`` at
    ``latency_threads`` threads. The proxy (per-layer latency table) admits
    a candidate when its prediction is within ``1 + proxy_margin`` of the budget
    (a negative margin keeps a safety margin); it is calibrated on the
    largest and smallest subnets and validated on ``validate_proxy`` random
    subnets measured whole; the ``confirm_top`` best candidates are measured
    whole, best first, until one meets the budget.

    Search: ``algorithm`` evolution (``population``, ``generations``,
    ``parents``, ``mutate_prob``) or tpe (``trials``); candidates scored on up
    to ``holdout`` examples of the holdout split after BatchNorm
    recalibration on ``bn_batches`` training batches. ``finetune``: trains the
    chosen subnet afterwards (null: no fine-tuning)."""

    width_mults: tuple[float, ...] = bounded((0.5, 0.75, 1.0), gt=0.0, le=1.0)
    inner_mults: tuple[float, ...] = bounded((0.25, 0.5, 0.75, 1.0), gt=0.0, le=1.0)
    kernel_sizes: tuple[int, ...] | None = bounded(None, ge=1)
    elastic_depth: bool = True
    round_to: int = bounded(1, ge=1)
    sort_channels: bool = True
    supernet_train: TrainConfig | None = TrainConfig(epochs=1, lr=5e-4)
    random_subnets: int = bounded(2, ge=0)
    distill_temperature: float = bounded(1.0, gt=0.0)
    speedup: float | tuple[float, ...] | None = bounded(1.5, gt=0.0)
    budget_ms: tuple[float, ...] | None = bounded(None, gt=0.0)
    latency_runtime: Literal["torch", "onnxruntime"] = "onnxruntime"
    latency_batch_sizes: tuple[int, ...] = bounded((1,), ge=1)
    latency_threads: int | None = bounded(None, ge=1)
    latency_repeats: int = bounded(30, ge=1)
    proxy_margin: float = bounded(0.0, gt=-0.5, lt=1.0)
    validate_proxy: int = bounded(6, ge=0)
    confirm_top: int = bounded(5, ge=1)
    algorithm: Literal["evolution", "tpe"] = "evolution"
    population: int = bounded(16, ge=2)
    generations: int = bounded(8, ge=1)
    parents: int = bounded(4, ge=1)
    mutate_prob: float = bounded(0.2, ge=0.0, le=1.0)
    trials: int = bounded(100, ge=1)
    holdout: int = bounded(5000, ge=1)
    bn_batches: int = bounded(20, ge=1)
    finetune: TrainConfig | None = None
    seed: int = 0

    def validate(self) -> None:
        n = type(self).__name__
        for field in ("width_mults", "inner_mults"):
            if not getattr(self, field):
                raise ConfigError(f"{n}.{field} must list multipliers in (0, 1], e.g. [0.5, 0.75, 1.0]; got []")
        if self.kernel_sizes is not None and (not self.kernel_sizes or any(k % 2 == 0 for k in self.kernel_sizes)):
            raise ConfigError(f"{n}.kernel_sizes must list odd kernel sizes (e.g. [3, 5, 7]) or be null, "
                              f"got {list(self.kernel_sizes)}")
        if (self.speedup is None) == (self.budget_ms is None):
            raise ConfigError(f"{n}: set exactly one latency budget: speedup (e.g. 1.5: 1.5x faster than the source) "
                              f"or budget_ms (one per latency_batch_sizes); got speedup={self.speedup}, "
                              f"budget_ms={self.budget_ms}")
        if isinstance(self.speedup, tuple) and len(self.speedup) != len(self.latency_batch_sizes):
            raise ConfigError(f"{n}.speedup must be one number, or one per latency_batch_sizes entry "
                              f"({list(self.latency_batch_sizes)}), got {list(self.speedup)}")
        if not self.latency_batch_sizes:
            raise ConfigError(f"{n}.latency_batch_sizes must list positive batch sizes, e.g. [1, 32]; got []")
        if self.budget_ms is not None and len(self.budget_ms) != len(self.latency_batch_sizes):
            raise ConfigError(f"{n}.budget_ms must give one budget per latency_batch_sizes entry "
                              f"({list(self.latency_batch_sizes)}), got {list(self.budget_ms)}")
        if self.validate_proxy == 1:
            raise ConfigError(f"{n}.validate_proxy: a rank correlation needs at least 2 subnets (or 0 to skip), got 1")
        if self.parents >= self.population:
            raise ConfigError(f"{n}.parents must be below population ({self.population}), got {self.parents}")

    def speedups(self) -> tuple[float, ...] | None:
        """The speedup budget per latency batch size (None with ``budget_ms``)."""
        if self.speedup is None:
            return None
        if isinstance(self.speedup, tuple):
            return self.speedup
        return (float(self.speedup),) * len(self.latency_batch_sizes)


@register_handler(NASConfig)
def _apply_nas(model, cfg: NASConfig, ctx) -> StageResult:
    """The stage: ``search`` on the context's training and selection splits;
    the chosen plain subnet, and the search's summary as the stage's records."""
    from .api import search

    if ctx is None or ctx.train_data is None:
        raise DataError("nas.search needs training data (ctx.train_data) for the supernet and BatchNorm recalibration")
    if ctx.calib_data is None:
        raise DataError("nas.search judges candidates on a holdout split of the training data, never the test "
                        "split: set data.holdout in the recipe (e.g. holdout: 5000)")
    res = search(model, ctx.train_data, ctx.calib_data, config=cfg, example_inputs=ctx.example_inputs,
                 out_dir=ctx.stage_out, progress=ctx.progress, loss_fn=ctx.loss_fn)
    return StageResult(res.model, records={"nas": res.summary()})
