"""When and how much to prune, driven by the foundation's ``fit``:

* ``one_shot``   prune to the target once, then fine-tune.
* ``iterative``  ``cycles`` prune/fine-tune rounds, the sparsity rising on the
  cubic curve of Zhu & Gupta, each round a resumable ``fit`` in its own folder.
* ``AGPCallback`` gradual pruning *during* training (Zhu & Gupta 2017,
  "To prune, or not to prune"): every ``frequency`` steps between ``start`` and
  ``end`` (fractions of the run) the masks grow to
  ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0)) ** 3``.
  ``layer_sparsity={name: s_f}`` gives chosen layers their own final
  sparsity on the same curve (from ``initial_sparsity``, or from their current
  sparsity if higher: masks only grow); the others follow ``sparsity`` and
  ``ranking``. Its position is in ``state_dict`` and the masks are model
  buffers, so a resumed ``fit`` continues exactly. ``agp`` wraps it.

Masked weights get zero gradient (see ``masks``), so fine-tuning never revives them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch.nn as nn

from ..core.errors import ConfigError
from ..core.scope import Scope
from ..train import Callback, TrainConfig, TrainState, fit
from . import masks as M
from .importance import DATA_CRITERIA
from .unstructured import prune_to_sparsity, select_layers

__all__ = ["cubic_sparsity", "one_shot", "iterative", "AGPCallback", "agp"]


def cubic_sparsity(t: float, *, initial: float, final: float) -> float:
    """Zhu & Gupta's schedule at progress ``t`` in [0, 1]."""
    t = min(1.0, max(0.0, t))
    return final + (initial - final) * (1.0 - t) ** 3


def _sub(out_dir, name):
    return None if out_dir is None else Path(out_dir) / name


def one_shot(model: nn.Module, sparsity: float, train_data=None, *, finetune: TrainConfig | None = None,
             criterion: str = "l1", scope: Scope | None = None, ranking: str = "global",
             layer_amounts: dict[str, float] | None = None, calib_data=None, eval_data=None,
             loss_fn: Callable | None = None, out_dir=None, progress: bool = True,
             unused_units: bool = False) -> nn.Module:
    """Prune to ``sparsity`` in one step, then fine-tune with ``finetune`` (if
    given). ``unused_units`` also masks the units nothing reads any more (see
    ``dead``), after pruning and again after fine-tuning."""
    prune_to_sparsity(model, sparsity, criterion=criterion, scope=scope, ranking=ranking,
                      layer_amounts=layer_amounts, data=calib_data, loss_fn=loss_fn)
    _unused(model, unused_units)
    if finetune is not None and finetune.epochs > 0:
        if train_data is None:
            raise ConfigError("fine-tuning needs train_data")
        fit(model, train_data, finetune, eval_data=eval_data, loss_fn=loss_fn, out_dir=_sub(out_dir, "finetune"),
            progress=progress)
        _unused(model, unused_units)
    return M.refresh(model)


def _unused(model: nn.Module, on: bool) -> None:
    if on:
        from .dead import prune_unused_units

        prune_unused_units(model)


def iterative(model: nn.Module, sparsity: float, train_data, *, cycles: int = 3, finetune: TrainConfig | None = None,
              criterion: str = "l1", scope: Scope | None = None, ranking: str = "global",
              layer_amounts: dict[str, float] | None = None, calib_data=None, eval_data=None,
              loss_fn: Callable | None = None, out_dir=None, progress: bool = True,
              unused_units: bool = False) -> nn.Module:
    """``cycles`` rounds of prune + fine-tune; round k prunes to
    ``cubic_sparsity(k / cycles)`` (per-layer targets in ``layer_amounts`` scale
    the same way). ``unused_units`` masks the units nothing reads after every
    pruning step (their weights count toward the targets, so the budget goes
    to units in use) and once more at the end."""
    if cycles < 1:
        raise ConfigError(f"iterative pruning needs cycles >= 1, got {cycles}")
    finetune = finetune or TrainConfig()
    start = M.sparsity_report(model, select_layers(model, scope))["sparsity"]
    for k in range(1, cycles + 1):
        frac = k / cycles
        s = cubic_sparsity(frac, initial=start, final=sparsity)
        per_layer = {n: cubic_sparsity(frac, initial=0.0, final=v) for n, v in (layer_amounts or {}).items()}
        prune_to_sparsity(model, s, criterion=criterion, scope=scope, ranking=ranking, layer_amounts=per_layer,
                          data=calib_data, loss_fn=loss_fn)
        _unused(model, unused_units)
        if finetune.epochs > 0:
            fit(model, train_data, finetune.replace(seed=finetune.seed + k), eval_data=eval_data, loss_fn=loss_fn,
                out_dir=_sub(out_dir, f"cycle{k}"), progress=progress)
    _unused(model, unused_units)
    return M.refresh(model)


class AGPCallback(Callback):
    """Gradual magnitude (or random) pruning inside ``fit``.

    ``start``/``end`` are fractions of the training steps; masks update every
    ``frequency`` steps. Call ``prepare(model)`` before ``fit`` (``agp`` does)
    so a resumed run finds the mask buffers its checkpoint holds."""

    def __init__(self, sparsity: float, *, initial_sparsity: float = 0.0, start: float = 0.0, end: float = 0.75,
                 frequency: int = 50, criterion: str = "l1", scope: Scope | None = None, ranking: str = "global",
                 layer_sparsity: dict[str, float] | None = None, unused_units: bool = False):
        if not 0.0 <= initial_sparsity <= sparsity < 1.0:
            raise ConfigError(f"AGP needs 0 <= initial_sparsity <= sparsity < 1, got {initial_sparsity}, {sparsity}")
        for n, v in (layer_sparsity or {}).items():
            if not initial_sparsity <= v <= 1.0:
                raise ConfigError(f"AGP layer_sparsity[{n!r}] must be in [initial_sparsity, 1], got {v}")
        if not 0.0 <= start < end <= 1.0:
            raise ConfigError(f"AGP needs 0 <= start < end <= 1 (fractions of training), got {start}, {end}")
        if frequency < 1:
            raise ConfigError(f"AGP frequency must be >= 1 step, got {frequency}")
        if criterion in DATA_CRITERIA:
            raise ConfigError(f"AGP ranks by weights alone; criterion {criterion!r} needs data, use l1/l2/max/random")
        self.final, self.initial, self.start, self.end = sparsity, initial_sparsity, start, end
        self.frequency, self.criterion, self.scope, self.ranking = frequency, criterion, scope, ranking
        self.layer_sparsity = dict(layer_sparsity or {})
        self.unused_units = unused_units
        self.current = 0.0  # sparsity last reached (of the layers without their own target)
        self.reached = 0.0  # progress on the curve last reached, in [0, 1]
        self.updates = 0

    def prepare(self, model: nn.Module) -> None:
        for layer in select_layers(model, self.scope).values():
            if not M.is_masked(layer):
                M.attach_mask(layer)

    def progress(self, step: int, total: int) -> float | None:
        """Position on the curve, ``1 - (1 - t) ** 3`` in [0, 1], after ``step``
        steps, or None when no update is due."""
        t0, t1 = int(round(self.start * total)), max(int(round(self.end * total)), int(round(self.start * total)) + 1)
        if step < t0:
            return None
        if step >= t1:
            return 1.0
        if (step - t0) % self.frequency:
            return None
        return cubic_sparsity((step - t0) / (t1 - t0), initial=0.0, final=1.0)

    def target(self, step: int, total: int) -> float | None:
        """Sparsity (of the layers without their own target) to reach after
        ``step`` steps, or None when no update is due."""
        p = self.progress(step, total)
        return None if p is None else self.initial + (self.final - self.initial) * p

    def layer_targets(self, p: float) -> dict[str, float]:
        """Each ``layer_sparsity`` layer's sparsity at progress ``p``."""
        return {n: min(v, self.initial + (v - self.initial) * p) for n, v in self.layer_sparsity.items()}

    def _update(self, state: TrainState, step: int) -> None:
        p = self.progress(step, state.total_steps)
        if p is None or p <= self.reached:
            return
        s = self.initial + (self.final - self.initial) * p
        prune_to_sparsity(state.model, s, criterion=self.criterion, scope=self.scope, ranking=self.ranking,
                          layer_amounts=self.layer_targets(p) or None, seed=step)
        _unused(state.model, self.unused_units)
        self.current, self.reached = s, p
        self.updates += 1

    def on_fit_start(self, state: TrainState) -> None:
        self.prepare(state.model)
        self._update(state, state.global_step)

    def on_batch_end(self, state: TrainState) -> None:
        self._update(state, state.global_step)

    def on_fit_end(self, state: TrainState) -> None:
        _unused(state.model, self.unused_units)  # biases of unused units drifted back under momentum

    def state_dict(self) -> dict:
        return {"current": self.current, "reached": self.reached, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.current = float(state.get("current", 0.0))
        if "reached" in state:
            self.reached = float(state["reached"])
        else:  # a checkpoint from before per-layer targets: only the sparsity was kept
            span = self.final - self.initial
            self.reached = 1.0 if span <= 0 and self.current >= self.final else \
                max(0.0, (self.current - self.initial) / span) if span > 0 else 0.0
        self.updates = int(state.get("updates", 0))


def agp(model: nn.Module, sparsity: float, train_data, train: TrainConfig, *, initial_sparsity: float = 0.0,
        start: float = 0.0, end: float = 0.75, frequency: int = 50, criterion: str = "l1",
        scope: Scope | None = None, ranking: str = "global", layer_sparsity: dict[str, float] | None = None,
        unused_units: bool = False, eval_data=None, loss_fn: Callable | None = None, callbacks: Sequence[Callback] = (), out_dir=None,
        progress: bool = True) -> nn.Module:
    """Train ``model`` with ``train`` while AGP raises its sparsity to
    ``sparsity`` (and each ``layer_sparsity`` layer to its own target)."""
    cb = AGPCallback(sparsity, initial_sparsity=initial_sparsity, start=start, end=end, frequency=frequency,
                     criterion=criterion, scope=scope, ranking=ranking, layer_sparsity=layer_sparsity,
                     unused_units=unused_units)
    cb.prepare(model)
    fit(model, train_data, train, eval_data=eval_data, loss_fn=loss_fn, callbacks=[cb, *callbacks],
        out_dir=_sub(out_dir, "agp"), progress=progress)
    _unused(model, unused_units)
    return M.refresh(model)
