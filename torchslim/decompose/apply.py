"""Decompose a model in place: choose layers (Scope), ranks, build the
replacements, skip layers whose MACs would not drop, then optionally
fine-tune (through ``fit``) with distillation from the original."""
from __future__ import annotations

import copy

import torch.nn as nn

from ..artifact.specs import set_submodule
from ..core.errors import ConfigError
from ..core.stage import StageResult
from .configs import CPConfig, SeparableConfig, SVDConfig, TuckerConfig
from .cp import cp_conv
from .rank import (cp_rank_for_keep, energy_rank, input_sizes, module_macs, sensitivity_keeps, svd_rank_for_keep,
                   tucker_energy_ranks, tucker_ranks_for_keep)
from .separable import grouped_conv, separable_conv
from .svd import linear_singular_values, svd_linear
from .tucker import check_decomposable_conv, tucker2_conv

__all__ = ["decompose", "decompose_stage", "finetune"]


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _skip_reason(module: nn.Module, config) -> str | None:
    if isinstance(config, SVDConfig):
        return None if isinstance(module, nn.Linear) else "not a Linear"
    reason = check_decomposable_conv(module)
    if reason is None and isinstance(config, SeparableConfig) and module.kernel_size == (1, 1):
        reason = "1x1 kernel"
    return reason


def _build(module: nn.Module, config, *, keep: float | None = None, energy: float | None = None):
    """(replacement, rank description) for one layer."""
    if isinstance(config, SVDConfig):
        r = (svd_rank_for_keep(module.in_features, module.out_features, keep) if keep is not None
             else energy_rank(linear_singular_values(module), energy))
        return svd_linear(module, r), r
    if isinstance(config, TuckerConfig):
        kh, kw = module.kernel_size
        ranks = (tucker_ranks_for_keep(module.in_channels, module.out_channels, kh * kw, keep) if keep is not None
                 else tucker_energy_ranks(module.weight, energy))
        return tucker2_conv(module, ranks), list(ranks)
    if isinstance(config, CPConfig):
        kh, kw = module.kernel_size
        r = cp_rank_for_keep(module.in_channels, module.out_channels, kh, kw, keep)
        return cp_conv(module, r), r
    if isinstance(config, SeparableConfig):
        if config.mode == "depthwise":
            m = min(config.depth_multiplier, module.out_channels, module.kernel_size[0] * module.kernel_size[1])
            return separable_conv(module, m), {"depth_multiplier": m}
        return grouped_conv(module, config.groups), {"groups": config.groups}
    raise ConfigError(f"decompose: unsupported config {type(config).__name__}")


def decompose(model: nn.Module, config, *, example_inputs: tuple | None = None, calib_data=None) -> list[dict]:
    """Replace the layers in ``config.scope`` in place; return one record per
    candidate layer (name, status, rank, params and MACs before/after)."""
    supported = (nn.Linear,) if isinstance(config, SVDConfig) else (nn.Conv2d,)
    config.scope.check_names(model)
    layers = [(n, m) for n, m in config.scope.select(model, supported)]
    if not layers:
        raise ConfigError(f"{type(config).__name__}: the scope selects no {supported[0].__name__} layer in this model")
    names = [n for n, _ in layers]
    sizes: dict = {}
    if supported[0] is nn.Conv2d:
        if example_inputs is None:
            from ..zoo import example_inputs as zoo_inputs

            example_inputs = zoo_inputs(model)
        sizes = input_sizes(model, example_inputs, names)

    keeps: dict[str, float | None] = {}
    rank_by = getattr(config, "rank_by", None)
    if rank_by == "sensitivity":
        if calib_data is None:
            raise ConfigError(f"{type(config).__name__}.rank_by='sensitivity' needs calibration data (ctx.calib_data)")
        from ..analysis.evaluate import evaluate

        def build(mod, keep):
            if _skip_reason(mod, config):
                return None
            return _build(mod, config, keep=keep)[0]

        keeps = sensitivity_keeps(model, names, build, lambda m: evaluate(m, calib_data)["accuracy"],
                                  candidates=config.candidates, tolerance=config.tolerance)

    records = []
    for name, module in layers:
        rec = {"layer": name, "params_before": _params(module), "macs_before": module_macs(module, sizes.get(name))}
        reason = _skip_reason(module, config)
        if reason is None and rank_by == "sensitivity" and keeps.get(name) is None:
            reason = f"no candidate keeps the accuracy drop within {config.tolerance}"
        if reason is not None:
            records.append({**rec, "status": f"skipped: {reason}"})
            continue
        if rank_by == "sensitivity":
            new, rank = _build(module, config, keep=keeps[name])
        elif rank_by == "energy":
            new, rank = _build(module, config, energy=config.energy)
        elif rank_by == "keep":
            new, rank = _build(module, config, keep=config.keep)
        else:
            new, rank = _build(module, config)
        macs_after = module_macs(new, sizes.get(name))
        rec.update(rank=rank, params_after=_params(new), macs_after=macs_after)
        if macs_after >= rec["macs_before"]:
            records.append({**rec, "status": "skipped: would not reduce MACs"})
            continue
        set_submodule(model, name, new)
        records.append({**rec, "status": "decomposed"})
    return records


def decompose_stage(model: nn.Module, config, ctx) -> StageResult:
    """The handler behind every ``decompose.*`` config."""
    from ..core.context import Context

    ctx = ctx or Context()
    original = copy.deepcopy(model).eval() if (config.finetune is not None and config.distill is not None) else None
    records = decompose(model, config, example_inputs=ctx.example_inputs, calib_data=ctx.calib_data)
    if config.finetune is not None:
        if ctx.train_data is None:
            raise ConfigError(f"{type(config).__name__}.finetune needs training data (ctx.train_data)")
        finetune(model, ctx.train_data, config.finetune, teacher=original, distill=config.distill,
                 loss_fn=ctx.loss_fn, out_dir=ctx.stage_out, progress=ctx.progress)
    return StageResult(model, records={"decompose": records})


def finetune(model: nn.Module, train_data, train_cfg, *, teacher: nn.Module | None = None, distill=None,
             loss_fn=None, out_dir=None, progress: bool = True):
    """Fine-tune through ``fit``: distillation from ``teacher`` when ``distill``
    is given, else ``loss_fn`` (None = cross-entropy)."""
    from ..train import fit

    callbacks = []
    loss = loss_fn
    if distill is not None and teacher is not None:
        from ..distill.objective import make_loss

        loss = make_loss(distill, teacher, model)
        callbacks.append(loss.callback())
    try:
        return fit(model, train_data, train_cfg, loss_fn=loss, callbacks=callbacks, out_dir=out_dir, progress=progress)
    finally:
        if distill is not None and teacher is not None:
            loss.close()
