"""The recipe stages a search generates, beyond the stock ones:

* ``auto.structured``: structured pruning with physical removal, one channel
  fraction per group (``keep: {group: fraction}``; a group is named by its
  first producing layer, e.g. ``layer1.0.conv1``), after removing ``blocks``
  residual blocks. ``prune.structured`` cuts every group by one common
  fraction; a search wants each group's own.
* ``auto.finetune``: the ``train`` stage (the same fields) that also reports
  the holdout accuracy after every epoch to a running search, so its pruner
  can stop a bad trial early.
* ``auto.agp``: ``prune.agp`` (the same fields) with the same per-epoch report,
  from the epoch its pruning schedule ends (the model at its final sparsity).

Outside a search the last two behave exactly like ``train`` and ``prune.agp``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch.nn as nn

from ..core.config import Config, register_config, register_handler
from ..core.errors import ConfigError, DataError, ModelError
from ..core.stage import StageResult
from ..prune.configs import AGPConfig
from ..train import TrainConfig
from .reporting import epoch_callbacks

__all__ = ["LayerwiseStructuredConfig", "ReportedTrainConfig", "ReportedAGPConfig"]


def group_key(group) -> str:
    """A channel group's name in a search: its first producing layer
    (``"layer1.0.conv2 (+1 coupled)"`` -> ``"layer1.0.conv2"``)."""
    return group.name.split(" (", 1)[0]


def keep_count(size: int, fraction: float, round_to: int | None, kind: str) -> int:
    """Channels kept of ``size`` at ``fraction``, at least one, rounded to a
    multiple of ``round_to`` (not for attention heads or groups smaller than it)."""
    keep = max(1, int(round(size * fraction)))
    if round_to and kind != "heads" and size > round_to:
        keep = min(size, max(round_to, int(round(keep / round_to)) * round_to))
    return keep


@register_config("auto.structured")
@dataclasses.dataclass(frozen=True)
class LayerwiseStructuredConfig(Config):
    """Remove ``blocks`` residual blocks (least output change first), then keep
    ``keep[group]`` of each channel group's channels (``default_keep`` for
    groups not named), ranked by ``importance``; ``round_to`` rounds channel
    counts; ``recalibrate_bn`` batches of holdout (else training) data
    re-estimate BatchNorm statistics afterwards. ``strict``: a name in ``keep``
    that is not a group of the model is an error (a search sets it false:
    removing a block removes its groups)."""

    keep: dict[str, float] = dataclasses.field(default_factory=dict)
    default_keep: float = 1.0
    blocks: int = 0
    importance: Literal["l1", "l2", "taylor", "activation", "apoz", "bn_scale"] = "l2"
    round_to: int | None = None
    recalibrate_bn: int = 0
    strict: bool = True

    def validate(self) -> None:
        for k, v in self.keep.items():
            if not 0.0 < v <= 1.0:
                raise ConfigError(f"LayerwiseStructuredConfig.keep[{k!r}] must be a fraction in (0, 1], got {v}")
        if not 0.0 < self.default_keep <= 1.0:
            raise ConfigError(f"LayerwiseStructuredConfig.default_keep must be in (0, 1], got {self.default_keep}")
        if self.blocks < 0:
            raise ConfigError(f"LayerwiseStructuredConfig.blocks must be >= 0, got {self.blocks}")
        if self.round_to is not None and self.round_to < 1:
            raise ConfigError(f"LayerwiseStructuredConfig.round_to must be positive or null, got {self.round_to}")
        if self.recalibrate_bn < 0:
            raise ConfigError(f"LayerwiseStructuredConfig.recalibrate_bn must be >= 0, got {self.recalibrate_bn}")


def layerwise_structured(model: nn.Module, example_inputs: tuple, cfg: LayerwiseStructuredConfig, *,
                         calib_data=None) -> nn.Module:
    """A pruned copy of ``model`` (see ``LayerwiseStructuredConfig``); the
    record of what was cut is ``pruned.torchslim_structured``."""
    import copy

    from ..prune.structured.blocks import remove_blocks
    from ..prune.structured.plan import structured_plan

    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    work = remove_blocks(model, inputs, count=cfg.blocks, calib_data=calib_data) if cfg.blocks else copy.deepcopy(model)
    removed = list(getattr(work, "torchslim_blocks", {}).get("removed", []))
    plan = structured_plan(work, inputs, importance=cfg.importance, round_to=cfg.round_to, calib_data=calib_data)
    keys = {group_key(g): g for g in plan.groups}
    unknown = sorted(set(cfg.keep) - set(keys))
    if unknown and cfg.strict:
        raise ModelError(f"auto.structured keep: {unknown} are not channel groups of the model; groups are "
                         f"{sorted(keys)}")
    keep = {g.id: keep_count(g.size, cfg.keep.get(k, cfg.default_keep), cfg.round_to, g.kind)
            for k, g in keys.items()}
    pruned = plan.apply(keep, inplace=True)
    pruned.torchslim_structured = {
        "blocks_removed": removed,
        "groups": [{"name": k, "kind": g.kind, "before": g.size, "after": keep[g.id]} for k, g in keys.items()],
        "ignored": unknown,
    }
    return pruned


@register_handler(LayerwiseStructuredConfig)
def _apply_layerwise(model: nn.Module, cfg: LayerwiseStructuredConfig, ctx) -> StageResult:
    from ..zoo import example_inputs as zoo_inputs

    inputs = (ctx.example_inputs if ctx is not None and ctx.example_inputs is not None
              else zoo_inputs(model, getattr(ctx, "dataset", None)))
    calib = getattr(ctx, "calib_data", None)
    pruned = layerwise_structured(model, inputs, cfg, calib_data=calib)
    if cfg.recalibrate_bn:
        from ..prune.recalibrate import recalibrate_bn

        data = calib if calib is not None else getattr(ctx, "train_data", None)
        if data is None:
            raise DataError("auto.structured: recalibrate_bn needs holdout or training data in the context")
        recalibrate_bn(pruned, data, batches=cfg.recalibrate_bn)
    return StageResult(pruned, records={"structured": pruned.torchslim_structured})


@register_config("auto.finetune")
@dataclasses.dataclass(frozen=True)
class ReportedTrainConfig(TrainConfig):
    """The ``train`` stage, reporting the holdout accuracy after every epoch
    to a running search (see ``torchslim.auto.reporting``)."""


@register_handler(ReportedTrainConfig)
def _apply_finetune(model: nn.Module, cfg: ReportedTrainConfig, ctx) -> StageResult:
    from ..train import fit

    if ctx is None or ctx.train_data is None:
        raise DataError("auto.finetune needs ctx.train_data; run it from a recipe or pass a Context")
    result = fit(model, ctx.train_data, cfg, eval_data=ctx.calib_data, loss_fn=ctx.loss_fn, out_dir=ctx.stage_out,
                 progress=ctx.progress, callbacks=epoch_callbacks())
    return StageResult(model, records={"fit_history": result.history, "fit_resumed_from": result.resumed_from})


@register_config("auto.agp")
@dataclasses.dataclass(frozen=True)
class ReportedAGPConfig(AGPConfig):
    """``prune.agp``, reporting the holdout accuracy after every epoch to a
    running search (see ``torchslim.auto.reporting``)."""


@register_handler(ReportedAGPConfig)
def _apply_agp(model: nn.Module, cfg: ReportedAGPConfig, ctx) -> StageResult:
    from ..prune import masks
    from ..prune.schedules import agp

    if ctx is None or ctx.train_data is None:
        raise DataError("auto.agp needs ctx.train_data; run it from a recipe or pass a Context")
    agp(model, cfg.sparsity, ctx.train_data, cfg.finetune, initial_sparsity=cfg.initial_sparsity, start=cfg.start,
        end=cfg.end, frequency=cfg.frequency, criterion=cfg.criterion, scope=cfg.scope, ranking=cfg.ranking,
        layer_sparsity=dict(cfg.layer_sparsity) or None, unused_units=cfg.unused_units, eval_data=ctx.calib_data,
        loss_fn=ctx.loss_fn, out_dir=ctx.stage_out, progress=ctx.progress,
        callbacks=epoch_callbacks(start=max(1, math.ceil(cfg.end * cfg.finetune.epochs))))
    model = masks.remove(model) if cfg.permanent else masks.refresh(model)
    records = {}
    if cfg.remove_dead:  # as prune.agp: units nothing reads, or that read nothing, are sliced out
        from ..prune.dead import remove_dead_units
        from ..zoo import example_inputs as zoo_inputs

        inputs = ctx.example_inputs if ctx.example_inputs is not None else zoo_inputs(model, ctx.dataset)
        records["dead_units"] = remove_dead_units(model, tuple(inputs))
    return StageResult(model, records=records)
