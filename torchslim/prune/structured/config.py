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

from ...core.config import Config, bounded, register_config, register_handler
from ...core.errors import ConfigError, DataError
from ...core.scope import Scope
from ...core.stage import StageResult
from ...train import TrainConfig

__all__ = ["StructuredConfig"]


@register_config("prune.structured")
@dataclasses.dataclass(frozen=True)
class StructuredConfig(Config):
    """Remove ``ratio`` of the channels / params / MACs / measured latency
    (``target``), ranking channels by ``importance``; ``allocation: latency``
    scales each group's cut by its measured time saved per MAC;
    ``allocation: greedy`` (``target: latency``) narrows one group a step at a
    time, each step chosen by timing every candidate (NetAdapt-style), until
    the latency target and ``mac_ratio`` (if set) are met. Latency is
    measured in ``latency_runtime`` (eager ``torch`` or ``onnxruntime``) at
    ``latency_threads`` threads on random inputs of each of
    ``latency_batch_sizes`` (the slowest decides). ``recalibrate_bn``: that many
    batches of the calibration (else training) data re-estimate the BatchNorm
    statistics of the pruned model before fine-tuning. ``blocks`` whole residual blocks are removed
    first (least output change on the calibration data); ``slimming`` trains with an L1 penalty of
    ``slimming_strength`` on BatchNorm scales first (use with importance
    "bn_scale")."""

    ratio: float = bounded(0.5, ge=0.0, lt=1.0)
    target: Literal["channels", "params", "macs", "latency"] = "macs"
    allocation: Literal["uniform", "latency", "greedy"] = "uniform"
    mac_ratio: float | None = bounded(None, ge=0.0, lt=1.0)
    greedy_steps: tuple[int, ...] = bounded((8, 16), ge=1)
    latency_runtime: Literal["torch", "onnxruntime"] = "torch"
    latency_batch_sizes: tuple[int, ...] = bounded((1,), ge=1)
    latency_threads: int | None = bounded(None, ge=1)
    importance: Literal["l1", "l2", "taylor", "activation", "apoz", "bn_scale"] = "l2"
    scope: Scope = dataclasses.field(default_factory=Scope)
    round_to: int | None = bounded(None, ge=1)
    best_effort: bool = False
    blocks: int = bounded(0, ge=0)
    recalibrate_bn: int = bounded(0, ge=0)
    slimming: TrainConfig | None = None
    slimming_strength: float = bounded(1e-4, ge=0.0)
    finetune: TrainConfig | None = None

    def validate(self) -> None:
        if self.allocation == "greedy" and self.target != "latency":
            raise ConfigError(f"StructuredConfig.allocation 'greedy' searches measured latency: set target "
                              f"'latency' (got {self.target!r}) and mac_ratio for a MAC reduction as well")
        if self.mac_ratio is not None and self.allocation != "greedy":
            raise ConfigError("StructuredConfig.mac_ratio is a constraint of allocation 'greedy' "
                              f"(got allocation {self.allocation!r}); with another allocation use target 'macs'")
        if not self.latency_batch_sizes:
            raise ConfigError("StructuredConfig.latency_batch_sizes must list at least one batch size")
        if not self.greedy_steps:
            raise ConfigError("StructuredConfig.greedy_steps must list at least one channel multiple")


def _out(ctx, name: str) -> Path | None:
    base = getattr(ctx, "stage_out", None)
    if base is None:
        return None
    p = Path(base) / name
    p.mkdir(parents=True, exist_ok=True)
    return p


def _batch_of(inputs: tuple, batch: int) -> tuple:
    """Random inputs like ``inputs`` with batch size ``batch`` (floats in
    [0, 1); integer inputs such as token ids are repeated along the batch)."""
    import torch

    g = torch.Generator().manual_seed(batch)
    out = []
    for x in inputs:
        if x.is_floating_point():
            out.append(torch.rand(batch, *x.shape[1:], generator=g, dtype=x.dtype))
        else:
            out.append(x[torch.arange(batch) % x.shape[0]])
    return tuple(out)


@register_handler(StructuredConfig)
def _apply_structured(model: nn.Module, cfg: StructuredConfig, ctx) -> nn.Module:
    from ...train import fit
    from ...zoo import example_inputs as zoo_inputs
    from ..slimming import SlimmingPenalty
    from .blocks import remove_blocks
    from .plan import structured

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
    latency = {}
    if cfg.target == "latency" or cfg.allocation != "uniform":
        from ...analysis.latency import speedup_fn, time_fn

        sets = [_batch_of(inputs, b) for b in cfg.latency_batch_sizes]
        latency = dict(allocation=cfg.allocation, latency_inputs=sets, threads=cfg.latency_threads,
                       latency_fn=speedup_fn(sets, runtime=cfg.latency_runtime, threads=cfg.latency_threads,
                                             reduce="min" if cfg.target == "latency" else "mean"))
        if cfg.allocation == "greedy":
            latency.update(mac_ratio=cfg.mac_ratio, greedy_steps=tuple(cfg.greedy_steps),
                           time_fn=time_fn(sets, runtime=cfg.latency_runtime, threads=cfg.latency_threads))
    pruned = structured(model, inputs, ratio=cfg.ratio, target=cfg.target, importance=cfg.importance,
                        scope=cfg.scope, round_to=cfg.round_to, best_effort=cfg.best_effort,
                        calib_data=getattr(ctx, "calib_data", None), **latency)
    if cfg.recalibrate_bn:
        from ..recalibrate import recalibrate_bn

        data = getattr(ctx, "calib_data", None) or getattr(ctx, "train_data", None)
        if data is None:
            raise DataError("prune.structured: recalibrate_bn needs calibration or training data in the context")
        recalibrate_bn(pruned, data, batches=cfg.recalibrate_bn)
    if cfg.finetune is not None:
        fit(pruned, ctx.train_data, cfg.finetune, loss_fn=ctx.loss_fn, out_dir=_out(ctx, "finetune"),
            progress=ctx.progress)
    return StageResult(pruned, records={"structured": pruned.torchslim_structured})
