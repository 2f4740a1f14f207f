"""Registered configs and handlers of unstructured pruning, N:M, AGP and
lottery tickets (recipe stages; ``torchslim.core.apply(model, cfg, ctx)``).

Every handler prunes in place, fine-tunes through ``fit`` with
``loss_fn=ctx.loss_fn`` and ``out_dir=ctx.stage_out`` (so a killed stage
resumes), chooses anything data-driven on ``ctx.calib_data`` (never the test
split), and leaves the masks reversible unless ``permanent`` is set (saving
makes them permanent in the file either way).
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import torch.nn as nn

from ..core.config import Config, register_config, register_handler
from ..core.errors import ConfigError, DataError
from ..core.scope import Scope
from ..core.stage import StageResult
from ..train import TrainConfig
from . import masks as M
from .importance import CRITERIA, DATA_CRITERIA

__all__ = ["UnstructuredConfig", "NMConfig", "AGPConfig", "LotteryConfig"]

Criterion = Literal["l1", "l2", "max", "random", "gradient", "taylor", "obd_fisher", "obd_hutchinson"]
assert set(Criterion.__args__) == set(CRITERIA)


def _check_fraction(where: str, v: float, *, upper_open: bool = True) -> None:
    if not (0.0 <= v < 1.0 if upper_open else 0.0 <= v <= 1.0):
        raise ConfigError(f"{where} must be a fraction in [0, 1{')' if upper_open else ']'}, got {v}")


@register_config("prune.unstructured")
@dataclasses.dataclass(frozen=True)
class UnstructuredConfig(Config):
    """Prune to ``sparsity`` (fraction of in-scope weights zeroed) in one shot
    (``cycles=1``) or in ``cycles`` prune/fine-tune rounds. ``allocate`` picks
    per-layer sparsities from a sensitivity scan on the calibration data so
    that ``sparsity`` of the params / MACs / measured latency is removed.
    ``unused_units`` also masks every unit whose outgoing weights are all
    pruned (see ``prune.dead``; the output is unchanged and the budget goes to
    units in use). ``remove_dead`` (needs ``permanent``) then removes units
    physically: those with constant outputs (no incoming weights) are folded
    into the next layer's bias, and they and the unused ones are sliced out
    (``prune.dead.remove_dead_units``; the artifact stores the smaller
    layers)."""

    sparsity: float = 0.5
    criterion: Criterion = "l1"
    ranking: Literal["global", "layer"] = "global"
    layer_sparsity: dict[str, float] = dataclasses.field(default_factory=dict)
    allocate: Literal["none", "params", "macs", "latency"] = "none"
    scope: Scope = dataclasses.field(default_factory=Scope)
    cycles: int = 1
    finetune: TrainConfig | None = None
    calib_batches: int = 4
    permanent: bool = False
    unused_units: bool = False
    remove_dead: bool = False

    def validate(self) -> None:
        _check_remove_dead(type(self).__name__, self)
        _check_fraction("UnstructuredConfig.sparsity", self.sparsity)
        for k, v in self.layer_sparsity.items():
            _check_fraction(f"UnstructuredConfig.layer_sparsity[{k!r}]", v, upper_open=False)
        if self.allocate != "none" and self.layer_sparsity:
            raise ConfigError("UnstructuredConfig: give either layer_sparsity or allocate, not both")
        if self.cycles < 1:
            raise ConfigError(f"UnstructuredConfig.cycles must be >= 1, got {self.cycles}")
        if self.calib_batches < 1:
            raise ConfigError(f"UnstructuredConfig.calib_batches must be >= 1, got {self.calib_batches}")


@register_config("prune.nm")
@dataclasses.dataclass(frozen=True)
class NMConfig(Config):
    """N:M semi-structured masks along the input dimension (2:4, 4:8)."""

    n: int = 2
    m: int = 4
    criterion: Criterion = "l1"
    scope: Scope = dataclasses.field(default_factory=Scope)
    finetune: TrainConfig | None = None
    calib_batches: int = 4
    permanent: bool = False

    def validate(self) -> None:
        if not 0 < self.n <= self.m:
            raise ConfigError(f"NMConfig needs 0 < n <= m, got n={self.n}, m={self.m}")


@register_config("prune.agp")
@dataclasses.dataclass(frozen=True)
class AGPConfig(Config):
    """Gradual pruning during training (Zhu & Gupta): sparsity rises from
    ``initial_sparsity`` to ``sparsity`` on a cubic curve between fractions
    ``start`` and ``end`` of the ``finetune`` run, masks updated every ``frequency`` steps.
    ``layer_sparsity`` gives chosen layers their own final sparsity on the same
    curve; the other layers follow ``sparsity`` and ``ranking``.
    ``unused_units`` masks the units nothing reads after every update (see
    ``prune.dead``). ``remove_dead`` (needs ``permanent``) removes the dead
    units physically at the end, as in ``prune.unstructured``."""

    sparsity: float = 0.9
    initial_sparsity: float = 0.0
    start: float = 0.0
    end: float = 0.75
    frequency: int = 50
    criterion: Literal["l1", "l2", "max", "random"] = "l1"
    ranking: Literal["global", "layer"] = "global"
    layer_sparsity: dict[str, float] = dataclasses.field(default_factory=dict)
    scope: Scope = dataclasses.field(default_factory=Scope)
    finetune: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(epochs=5))
    permanent: bool = False
    unused_units: bool = False
    remove_dead: bool = False

    def validate(self) -> None:
        _check_remove_dead(type(self).__name__, self)
        _check_fraction("AGPConfig.sparsity", self.sparsity)
        for k, v in self.layer_sparsity.items():
            _check_fraction(f"AGPConfig.layer_sparsity[{k!r}]", v, upper_open=False)
            if v < self.initial_sparsity:
                raise ConfigError(f"AGPConfig.layer_sparsity[{k!r}] ({v}) is below initial_sparsity "
                                  f"({self.initial_sparsity}); masks only grow")
        if not 0.0 <= self.initial_sparsity <= self.sparsity:
            raise ConfigError(f"AGPConfig.initial_sparsity must be in [0, sparsity], got {self.initial_sparsity}")
        if not 0.0 <= self.start < self.end <= 1.0:
            raise ConfigError(f"AGPConfig needs 0 <= start < end <= 1 (fractions of training), got {self.start}, {self.end}")
        if self.frequency < 1:
            raise ConfigError(f"AGPConfig.frequency must be >= 1 step, got {self.frequency}")
        if self.finetune is None:
            raise ConfigError("AGPConfig.finetune is required: AGP prunes during training")


@register_config("prune.lottery")
@dataclasses.dataclass(frozen=True)
class LotteryConfig(Config):
    """Iterative magnitude pruning with rewinding (lottery tickets): ``rounds``
    rounds pruning ``rate`` of the remaining weights, rewinding to the weights
    after ``rewind_step`` steps (0 = initialisation), each round trained with
    ``finetune``. ``reinit=True`` gives the control: the final mask with a fresh
    random initialisation, trained once more."""

    rounds: int = 5
    rate: float = 0.2
    rewind_step: int = 0
    ranking: Literal["global", "layer"] = "layer"
    layer_rates: dict[str, float] = dataclasses.field(default_factory=dict)
    scope: Scope = dataclasses.field(default_factory=Scope)
    finetune: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(epochs=2))
    reinit: bool = False
    permanent: bool = False

    def validate(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"LotteryConfig.rounds must be >= 1, got {self.rounds}")
        if not 0.0 < self.rate < 1.0:
            raise ConfigError(f"LotteryConfig.rate must be in (0, 1), got {self.rate}")
        for k, v in self.layer_rates.items():
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"LotteryConfig.layer_rates[{k!r}] must be in [0, 1), got {v}")
        if self.rewind_step < 0:
            raise ConfigError(f"LotteryConfig.rewind_step must be >= 0, got {self.rewind_step}")
        if self.finetune is None:
            raise ConfigError("LotteryConfig.finetune is required: every round trains")


def _check_remove_dead(where: str, cfg) -> None:
    if cfg.remove_dead and not cfg.permanent:
        raise ConfigError(f"{where}: remove_dead changes layer shapes, which reversible masks cannot follow; "
                          "set permanent: true")


# ------------------------------------------------------------------ handlers
def _need(ctx, field: str, why: str):
    value = getattr(ctx, field, None) if ctx is not None else None
    if value is None:
        raise DataError(f"{why} needs ctx.{field}; build the Context with {field}=...")
    return value


def _calib(ctx, criterion: str):
    if criterion in DATA_CRITERIA:
        return _need(ctx, "calib_data", f"criterion {criterion!r}")
    return getattr(ctx, "calib_data", None) if ctx is not None else None


def _common(ctx) -> dict:
    return {"loss_fn": getattr(ctx, "loss_fn", None), "out_dir": getattr(ctx, "stage_out", None),
            "progress": getattr(ctx, "progress", True)}


def _finish(model: nn.Module, permanent: bool, ctx=None, remove_dead: bool = False,
            records: dict | None = None) -> StageResult:
    model = M.remove(model) if permanent else M.refresh(model)
    records = dict(records or {})
    if remove_dead:
        from .dead import remove_dead_units

        records["dead_units"] = remove_dead_units(model, _example_batch(model, ctx))
    return StageResult(model, records=records)


def _example_batch(model: nn.Module, ctx) -> tuple:
    """One input batch for remove_dead_units (its content does not matter)."""
    inputs = getattr(ctx, "example_inputs", None) if ctx is not None else None
    if inputs is not None:
        return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    from ..zoo import example_inputs

    return tuple(example_inputs(model, getattr(ctx, "dataset", None) if ctx is not None else None))


@register_handler(UnstructuredConfig)
def _apply_unstructured(model: nn.Module, cfg: UnstructuredConfig, ctx) -> nn.Module:
    from .schedules import iterative, one_shot

    layer_amounts = dict(cfg.layer_sparsity) or None
    records: dict = {}
    calib = _calib(ctx, cfg.criterion)
    if cfg.allocate != "none":
        from .sensitivity import allocate, sensitivity_scan

        calib = _need(ctx, "calib_data", "allocate")
        scan = sensitivity_scan(model, calib, criterion=cfg.criterion if cfg.criterion not in DATA_CRITERIA else "l1",
                                scope=cfg.scope, example_inputs=getattr(ctx, "example_inputs", None),
                                latency=cfg.allocate == "latency")
        layer_amounts = allocate(scan, cfg.sparsity, budget=cfg.allocate)
        records = {"sensitivity": scan.to_dict(), "layer_sparsity": layer_amounts}
    train = None
    if cfg.finetune is not None and cfg.finetune.epochs > 0:
        train = _need(ctx, "train_data", "fine-tuning")
    common = _common(ctx)
    if cfg.cycles == 1:
        one_shot(model, cfg.sparsity, train, finetune=cfg.finetune, criterion=cfg.criterion, scope=cfg.scope,
                 ranking=cfg.ranking, layer_amounts=layer_amounts, calib_data=calib, unused_units=cfg.unused_units,
                 **common)
    else:
        if train is None:
            raise ConfigError("UnstructuredConfig: cycles > 1 (iterative pruning) needs a finetune config")
        iterative(model, cfg.sparsity, train, cycles=cfg.cycles, finetune=cfg.finetune, criterion=cfg.criterion,
                  scope=cfg.scope, ranking=cfg.ranking, layer_amounts=layer_amounts, calib_data=calib,
                  unused_units=cfg.unused_units, **common)
    return _finish(model, cfg.permanent, ctx, cfg.remove_dead, records)


@register_handler(NMConfig)
def _apply_nm(model: nn.Module, cfg: NMConfig, ctx) -> nn.Module:
    from pathlib import Path

    from ..train import fit
    from .nm import nm

    common = _common(ctx)
    nm(model, cfg.n, cfg.m, criterion=cfg.criterion, scope=cfg.scope, data=_calib(ctx, cfg.criterion),
       loss_fn=common["loss_fn"], batches=cfg.calib_batches)
    if cfg.finetune is not None and cfg.finetune.epochs > 0:
        out = common["out_dir"]
        fit(model, _need(ctx, "train_data", "fine-tuning"), cfg.finetune, loss_fn=common["loss_fn"],
            out_dir=None if out is None else Path(out) / "finetune", progress=common["progress"])
    return _finish(model, cfg.permanent)


@register_handler(AGPConfig)
def _apply_agp(model: nn.Module, cfg: AGPConfig, ctx) -> nn.Module:
    from .schedules import agp

    agp(model, cfg.sparsity, _need(ctx, "train_data", "AGP"), cfg.finetune, initial_sparsity=cfg.initial_sparsity,
        start=cfg.start, end=cfg.end, frequency=cfg.frequency, criterion=cfg.criterion, scope=cfg.scope,
        ranking=cfg.ranking, layer_sparsity=dict(cfg.layer_sparsity) or None, unused_units=cfg.unused_units,
        **_common(ctx))
    return _finish(model, cfg.permanent, ctx, cfg.remove_dead)


@register_handler(LotteryConfig)
def _apply_lottery(model: nn.Module, cfg: LotteryConfig, ctx) -> nn.Module:
    from pathlib import Path

    from ..train import fit
    from .lottery import lottery_ticket, random_reinit

    common = _common(ctx)
    train = _need(ctx, "train_data", "lottery tickets")
    res = lottery_ticket(model, train, cfg.finetune, rounds=cfg.rounds, rate=cfg.rate, rewind_step=cfg.rewind_step,
                         scope=cfg.scope, ranking=cfg.ranking, layer_rates=dict(cfg.layer_rates) or None,
                         loss_fn=common["loss_fn"], out_dir=common["out_dir"], progress=common["progress"])
    model = res.model
    if cfg.reinit:
        model = random_reinit(model, seed=cfg.finetune.seed + 1)
        out = common["out_dir"]
        fit(model, train, cfg.finetune, loss_fn=common["loss_fn"], out_dir=None if out is None else Path(out) / "reinit",
            progress=common["progress"])
    return _finish(model, cfg.permanent, records={"lottery_history": res.history})
