"""Lottery tickets (Frankle & Carbin 2019; rewinding: Frankle et al. 2020).

Iterative magnitude pruning (IMP): train, prune ``rate`` of the remaining
weights by magnitude, *rewind* the surviving weights to their values at
initialisation (``rewind_step=0``) or at an early training step k, train
again; repeat for ``rounds``. The control is the same sparse structure with a
fresh random initialisation (``random_reinit``). Every training run goes
through ``fit`` (its own resumable folder per round); the rewind point is kept
in the callback state, so a resumed run rewinds to the same weights.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from torch.nn.utils import prune as torch_prune

from ..core.errors import ConfigError
from ..core.scope import Scope
from ..train import Callback, TrainConfig, TrainState, fit
from . import masks as M
from .unstructured import select_layers, unstructured

__all__ = ["LotteryResult", "lottery_ticket", "rewind", "random_reinit", "plain_state"]


def plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers under their unmasked names (``fc1.weight``, not
    ``fc1.weight_orig``), masks left out; the original values of masked weights."""
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith("_mask"):
            continue
        out[k[:-5] if k.endswith("_orig") else k] = v.detach().clone()
    return out


def rewind(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Load ``state`` (from ``plain_state``) into ``model``, keeping its masks."""
    own = model.state_dict()
    new = {}
    for k in own:
        if k.endswith("_mask"):
            new[k] = own[k]
            continue
        src = k[:-5] if k.endswith("_orig") else k
        if src not in state:
            raise ConfigError(f"rewind state has no tensor {src!r}; it was taken from a different model")
        new[k] = state[src]
    model.load_state_dict(new)
    return model


def random_reinit(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer freshly initialised by its own
    ``reset_parameters`` (seeded), masks kept: the lottery-ticket control."""
    out = copy.deepcopy(M.refresh(model))
    torch.manual_seed(seed)
    for module in out.modules():
        if M.is_masked(module):
            plain = copy.deepcopy(module)
            torch_prune.remove(plain, "weight")
            plain.reset_parameters()
            with torch.no_grad():
                module.weight_orig.copy_(plain.weight)
                for name, p in plain.named_parameters(recurse=False):
                    if name != "weight":
                        getattr(module, name).copy_(p)
        elif hasattr(module, "reset_parameters") and not any(True for _ in module.children()):
            module.reset_parameters()
    for module in out.modules():
        if M.is_masked(module):
            M.set_mask(module, module.weight_mask)
    return out


class _Snapshot(Callback):
    """Keeps the weights as they are after ``step`` optimizer steps (the rewind point)."""

    def __init__(self, step: int):
        self.step = step
        self.state: dict[str, torch.Tensor] | None = None

    def on_fit_start(self, state: TrainState) -> None:
        if self.state is None and self.step == 0 and state.global_step == 0:
            self.state = plain_state(state.model)

    def on_batch_end(self, state: TrainState) -> None:
        if self.state is None and state.global_step == self.step:
            self.state = plain_state(state.model)

    def state_dict(self) -> dict:
        return {"snapshot": self.state} if self.state is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self.state = state.get("snapshot")


@dataclasses.dataclass
class LotteryResult:
    model: nn.Module  # the last ticket, trained
    masks: dict[str, torch.Tensor]  # its masks by layer
    rewind_state: dict[str, torch.Tensor]  # the weights the tickets were rewound to
    history: list[dict]  # per round: round, weights_left, eval metrics


def _sub(out_dir, name):
    return None if out_dir is None else Path(out_dir) / name


def lottery_ticket(model: nn.Module, train_data, train: TrainConfig, *, rounds: int = 5, rate: float = 0.2,
                   rewind_step: int = 0, scope: Scope | None = None, ranking: str = "layer",
                   layer_rates: dict[str, float] | None = None, eval_data=None, loss_fn: Callable | None = None,
                   out_dir=None, progress: bool = True, on_round: Callable | None = None) -> LotteryResult:
    """Run IMP on ``model`` (in place): ``rounds`` prune-rewind-train cycles after
    a first dense training. ``rate`` is the fraction of the remaining weights
    pruned per round (``layer_rates`` overrides it per layer, e.g. 0.1 for the
    output layer as in the paper). ``on_round(round, model)`` is called after
    each round's training, round 0 being the dense run (e.g. to train a
    random-reinit control)."""
    if rounds < 1 or not 0.0 < rate < 1.0:
        raise ConfigError(f"lottery tickets need rounds >= 1 and 0 < rate < 1, got rounds={rounds}, rate={rate}")
    if rewind_step < 0:
        raise ConfigError(f"rewind_step must be >= 0 (0 = rewind to initialisation), got {rewind_step}")
    layers = select_layers(model, scope)
    for layer in layers.values():
        if not M.is_masked(layer):
            M.attach_mask(layer)
    snap = _Snapshot(rewind_step)
    fit(model, train_data, train, eval_data=eval_data, loss_fn=loss_fn, callbacks=[snap],
        out_dir=_sub(out_dir, "round0"), progress=progress)
    if snap.state is None:
        raise ConfigError(f"rewind_step={rewind_step} is beyond the {train.epochs}-epoch training run; use a smaller step")
    rewind_state = snap.state
    history = [_record(0, model, layers, eval_data)]
    if on_round is not None:
        on_round(0, model)
    for r in range(1, rounds + 1):
        unstructured(model, rate, scope=scope, ranking=ranking, layer_amounts=layer_rates)
        rewind(model, rewind_state)
        fit(model, train_data, train, eval_data=eval_data, loss_fn=loss_fn, out_dir=_sub(out_dir, f"round{r}"),
            progress=progress)
        history.append(_record(r, model, layers, eval_data))
        if on_round is not None:
            on_round(r, model)
    M.refresh(model)
    return LotteryResult(model=model, masks=M.masks_of(model), rewind_state=rewind_state, history=history)


def _record(r: int, model: nn.Module, layers: dict[str, nn.Module], eval_data) -> dict:
    rep = M.sparsity_report(model, layers)
    rec = {"round": r, "weights_left": 1.0 - rep["sparsity"]}
    if eval_data is not None:
        from ..analysis.evaluate import evaluate

        rec["eval_accuracy"] = evaluate(model, eval_data)["accuracy"]
    return rec
