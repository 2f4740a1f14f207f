"""Unstructured pruning: zero individual weights of Linear/Conv layers by an
importance criterion, with reversible masks (see ``masks``).

Two verbs, both in place, both returning the model:

* ``unstructured(model, amount, ...)`` follows ``torch.nn.utils.prune``: an
  ``int`` amount is a count of weights to remove, a ``float`` a fraction, in
  both cases of the weights *still unpruned*; repeated calls compound.
* ``prune_to_sparsity(model, sparsity, ...)`` reaches a target fraction of
  zeros among all in-scope weights (what schedules need); masks only grow, so a
  target below the current sparsity changes nothing.

``ranking="global"`` ranks all in-scope weights together (layers end at
different sparsities); ``"layer"`` applies the amount to each layer alone.
``layer_amounts={name: amount}`` gives chosen layers their own amount (e.g.
from ``sensitivity.allocate``); the others follow ``amount`` and ``ranking``.
A ``Scope`` selects the layers (default: every Linear/Conv1d/Conv2d); an
excluded layer is left entirely untouched. Biases are never pruned.
"""
from __future__ import annotations

import logging
from typing import Callable, Literal

import torch
import torch.nn as nn

from ..core.errors import ConfigError
from ..core.scope import Scope
from . import masks as M
from .importance import importance_scores

__all__ = ["unstructured", "prune_to_sparsity", "select_layers", "masks_from_scores"]

log = logging.getLogger("torchslim.prune")
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def select_layers(model: nn.Module, scope: Scope | None = None) -> dict[str, nn.Module]:
    """In-scope prunable layers by qualified name (errors on a misspelt name)."""
    scope = scope or Scope()
    scope.check_names(model)
    layers = {n: m for n, m in scope.select(model, PRUNABLE)}
    if not layers:
        raise ConfigError("the scope selects no Linear/Conv layer of this model; check Scope names/patterns/types "
                          "(see `torchslim profile MODEL` for layer names)")
    return layers


def _count(amount: float | int, available: int, where: str) -> int:
    """PyTorch's idiom: int = count, float = fraction."""
    if isinstance(amount, bool):
        raise ConfigError(f"{where}: amount must be an int (count) or a float (fraction), got {amount!r}")
    if isinstance(amount, int):
        if amount < 0 or amount > available:
            raise ConfigError(f"{where}: cannot prune {amount} weights, only {available} are left unpruned")
        return amount
    if not 0.0 <= float(amount) <= 1.0:
        raise ConfigError(f"{where}: a fractional amount must be in [0, 1], got {amount}")
    return int(round(float(amount) * available))


def masks_from_scores(scores: dict[str, torch.Tensor], current: dict[str, torch.Tensor | None],
                      n_pruned: int) -> dict[str, torch.Tensor]:
    """Masks (1 = keep) for a group ranked together: the ``n_pruned`` lowest
    scores are zeroed; entries already masked count first (masks only grow)."""
    names = list(scores)
    flat = []
    for n in names:
        s = scores[n].detach().float().reshape(-1).clone()
        s = torch.nan_to_num(s, nan=0.0)
        cur = current.get(n)
        if cur is not None:
            s[cur.reshape(-1) == 0] = float("-inf")
        flat.append(s)
    allf = torch.cat(flat)
    keep = torch.ones(allf.numel(), dtype=torch.bool)
    if n_pruned > 0:
        idx = torch.topk(allf, n_pruned, largest=False, sorted=False).indices
        keep[idx] = False
    out, i = {}, 0
    for n, s in zip(names, flat):
        out[n] = keep[i: i + s.numel()].reshape(scores[n].shape)
        i += s.numel()
    return out


def _apply(model: nn.Module, layers: dict[str, nn.Module], scores: dict[str, torch.Tensor],
           groups: list[tuple[list[str], int]]) -> None:
    current = {n: M.get_mask(m) for n, m in layers.items()}
    for names, n_pruned in groups:
        new = masks_from_scores({n: scores[n] for n in names}, current, n_pruned)
        for n, mask in new.items():
            M.attach_mask(layers[n], mask.float())
            if not bool(mask.any()) and (current[n] is None or bool(current[n].any())):
                log.warning("layer %r is now entirely pruned (every weight masked); the model may be cut off. "
                            "Use ranking='layer' or give the layer its own amount in layer_amounts", n)


def _plan(layers, amount, ranking, layer_amounts, *, target: bool) -> list[tuple[list[str], int]]:
    """Groups of layers ranked together and how many weights each group ends with pruned."""
    if ranking not in ("global", "layer"):
        raise ConfigError(f"ranking must be 'global' or 'layer', got {ranking!r}")
    layer_amounts = dict(layer_amounts or {})
    unknown = sorted(set(layer_amounts) - set(layers))
    if unknown:
        raise ConfigError(f"layer_amounts names layers that are not in scope or not prunable: {unknown}; "
                          f"in-scope layers are {sorted(layers)}")

    def zeros(n):
        m = M.get_mask(layers[n])
        return 0 if m is None else int((m == 0).sum())

    def total_after(names, amt, where):
        numel = sum(layers[n].weight.numel() for n in names)
        already = sum(zeros(n) for n in names)
        if target:  # amt is the group's final sparsity (or final count of pruned weights)
            return max(already, _count(amt, numel, where))
        return already + _count(amt, numel - already, where)

    groups = [([n], total_after([n], a, f"layer {n!r}")) for n, a in layer_amounts.items()]
    rest = [n for n in layers if n not in layer_amounts]
    if rest:
        if ranking == "global":
            groups.append((rest, total_after(rest, amount, "global ranking")))
        else:
            groups += [([n], total_after([n], amount, f"layer {n!r}")) for n in rest]
    return groups


def _run(model, amount, *, target, criterion, scope, ranking, layer_amounts, data, loss_fn, batches, block, seed):
    layers = select_layers(model, scope)
    groups = _plan(layers, amount, ranking, layer_amounts, target=target)
    scores = importance_scores(model, layers, criterion, data=data, loss_fn=loss_fn, batches=batches,
                               block=block, seed=seed)
    _apply(model, layers, scores, groups)
    return model


def unstructured(model: nn.Module, amount: float | int = 0.5, *, criterion: str = "l1", scope: Scope | None = None,
                 ranking: Literal["global", "layer"] = "global", layer_amounts: dict[str, float | int] | None = None,
                 data=None, loss_fn: Callable | None = None, batches: int = 4, block: tuple[int, int] | None = None,
                 seed: int = 0) -> nn.Module:
    """Prune ``amount`` of the still-unpruned in-scope weights (int = count,
    float = fraction), ranked by ``criterion`` (see ``importance``). ``data`` and
    ``loss_fn`` feed the gradient/Taylor/OBD criteria. Masks stay reversible
    until ``torchslim.prune.remove(model)`` or saving."""
    return _run(model, amount, target=False, criterion=criterion, scope=scope, ranking=ranking,
                layer_amounts=layer_amounts, data=data, loss_fn=loss_fn, batches=batches, block=block, seed=seed)


def prune_to_sparsity(model: nn.Module, sparsity: float, *, criterion: str = "l1", scope: Scope | None = None,
                      ranking: Literal["global", "layer"] = "global",
                      layer_amounts: dict[str, float] | None = None, data=None, loss_fn: Callable | None = None,
                      batches: int = 4, block: tuple[int, int] | None = None, seed: int = 0) -> nn.Module:
    """Prune until ``sparsity`` (fraction of zeros) of the in-scope weights is
    reached; ``layer_amounts`` gives per-layer target sparsities."""
    return _run(model, float(sparsity), target=True, criterion=criterion, scope=scope, ranking=ranking,
                layer_amounts=layer_amounts, data=data, loss_fn=loss_fn, batches=batches, block=block, seed=seed)
