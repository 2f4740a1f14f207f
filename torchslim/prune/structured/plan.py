"""Structured pruning with physical removal: ``torchslim.prune.structured``.

Three separate pieces: the dependency graph (``torchslim.graph``: which
tensors are coupled), the importance of each channel
(``importance``), and here (``plan``) the pruner: how many channels each
group keeps. The pruner removes the same fraction of channels from every
prunable group in scope (rounded to a multiple of ``round_to`` if asked);
with ``target="params"`` or ``"macs"`` it searches that fraction (bisection,
each candidate counted on a real pruned copy) until the model's params or MACs
meet the requested reduction. With ``target="latency"`` the fraction is
searched on measured speed instead: the smallest common fraction whose pruned
copy runs at least ``1 / (1 - ratio)`` times faster than the unpruned model
(``ratio=0.375`` asks for 1.6x), timed on every input set given and judged by
the slowest of them.

With ``allocation="latency"`` the groups are not cut by the same fraction:
each group's fraction is the common one times its measured latency weight
(``latency_weights``: the wall-clock time a cut of that group saves per
MAC it removes, relative to the other groups), so channels whose MACs are
slow (memory-bound depthwise and high-resolution layers, per-op overheads)
go first; the common fraction is still searched to meet the target.

With ``allocation="greedy"`` (``target="latency"`` only) there is no common
fraction: ``greedy.greedy_keep`` narrows one group a step at a
time, each step chosen by timing every candidate on the target runtime
(NetAdapt-style), until the latency target, and ``mac_ratio`` if given, are met.

The result is an ordinary, smaller ``nn.Module`` with the same output shape;
``torchslim.save`` records the new layer shapes, ``torchslim.load`` rebuilds it.
"""
from __future__ import annotations

import copy
import warnings
from typing import Callable

import torch
import torch.nn as nn

from ...core.errors import ModelError
from ...core.scope import Scope
from ...graph.deps import DependencyGraph, Group, build_dependency_graph
from ...graph.surgery import prune_groups
from .importance import group_importance

__all__ = ["structured", "structured_plan", "StructuredPlan", "count_cost", "latency_weights"]

TARGETS = ("channels", "params", "macs", "latency")
ALLOCATIONS = ("uniform", "latency", "greedy")
MAX_GROUP_RATIO = 0.9  # with latency weights no group loses more than this fraction of its channels


def count_cost(model: nn.Module, example_inputs: tuple, target: str) -> int:
    """Parameters, or multiply-accumulates of one forward on ``example_inputs``
    (torchslim.analysis.profile; FlopCounterMode if it is unavailable)."""
    if target == "params":
        return sum(p.numel() for p in model.parameters())
    try:
        from ...analysis.profile import profile
    except ImportError:  # pragma: no cover - profile is part of torchslim
        profile = None
    if profile is not None:
        return int(profile(model, example_inputs).macs)
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*example_inputs)
    model.train(was)
    return fc.get_total_flops() // 2


def _n_keep(size: int, ratio: float, round_to: int | None, kind: str) -> int:
    keep = max(1, int(round(size * (1.0 - ratio))))
    if round_to and kind != "heads" and size > round_to:
        keep = min(size, max(round_to, int(round(keep / round_to)) * round_to))
    return keep


class StructuredPlan:
    """The groups of a model, their channel importance, and which channels a
    given ratio removes. ``apply(ratio)`` prunes a copy (or the model itself)."""

    def __init__(self, model: nn.Module, graph: DependencyGraph, groups: list[Group],
                 scores: dict[int, torch.Tensor], round_to: int | None):
        self.model, self.graph, self.groups, self.scores, self.round_to = model, graph, groups, scores, round_to
        self.weights: dict[int, float] | None = None  # per-group multipliers of the common ratio

    @property
    def max_ratio(self) -> float:
        """The common ratio at which every group is cut as far as allowed."""
        if not self.weights:
            return 0.999
        return MAX_GROUP_RATIO / max(min(self.weights.values()), 1e-6)

    def keep_counts(self, ratio: float) -> dict[int, int]:
        if not self.weights:
            return {g.id: _n_keep(g.size, ratio, self.round_to, g.kind) for g in self.groups}
        return {g.id: _n_keep(g.size, min(ratio * self.weights[g.id], MAX_GROUP_RATIO), self.round_to, g.kind)
                for g in self.groups}

    def removal(self, keep: dict[int, int] | float) -> dict[int, torch.Tensor]:
        """Channels each group loses (its least important ones)."""
        if not isinstance(keep, dict):
            keep = self.keep_counts(keep)
        out = {}
        for g in self.groups:
            k = keep[g.id]
            if k < g.size:
                order = torch.argsort(self.scores[g.id], stable=True)
                out[g.id] = torch.sort(order[:g.size - k]).values
        return out

    def apply(self, keep: dict[int, int] | float, *, inplace: bool = False) -> nn.Module:
        """Prune a copy (or the model itself) keeping ``keep[group.id]`` channels
        per group, or the channel fraction ``1 - keep`` if a float is given."""
        model = self.model if inplace else copy.deepcopy(self.model)
        return prune_groups(model, self.groups, self.removal(keep), graph=self.graph)


def _check_plain(model: nn.Module) -> None:
    from torch.nn.utils import parametrize

    for name, m in model.named_modules():
        if parametrize.is_parametrized(m) or any(k.endswith("_orig") for k in m._parameters):
            raise ModelError(
                f"layer {name!r} carries a pruning mask or parametrization; make it permanent first "
                "(torch.nn.utils.prune.remove / parametrize.remove_parametrizations) before structured pruning")


def structured_plan(model: nn.Module, example_inputs: tuple, *, importance: str = "l2", scope: Scope | None = None,
                    round_to: int | None = None, best_effort: bool = False, calib_data=None,
                    loss_fn=None) -> StructuredPlan:
    """Analyse ``model`` (in place; no copy): dependency groups in scope and
    the importance of their channels."""
    _check_plain(model)
    example_inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    scope = scope or Scope()
    scope.check_names(model)
    graph = build_dependency_graph(model, example_inputs, best_effort=best_effort)
    for w in graph.warnings:
        warnings.warn(w, stacklevel=3)
    groups = []
    for g in graph.groups():
        if not g.prunable:
            continue
        if all(scope.matches(p, model.get_submodule(p)) for p in g.producers):
            groups.append(g)
    notes: list[str] = graph.notes
    scores = group_importance(model, groups, importance, calib_data=calib_data, loss_fn=loss_fn, notes=notes)
    groups = _verified(model, graph, groups, scores, example_inputs)
    return StructuredPlan(model, graph, groups, scores, round_to)


def _half(groups: list[Group], scores: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """The least important half of every group (at least one channel)."""
    out = {}
    for g in groups:
        k = max(1, g.size // 2)
        out[g.id] = torch.sort(torch.argsort(scores[g.id], stable=True)[:k]).values
    return out


def _check(model: nn.Module, graph: DependencyGraph, groups: list[Group], removal: dict[int, torch.Tensor],
           inputs: tuple) -> str | None:
    """Why pruning ``removal`` does not give the dead-channel model, or None.
    Groups with a norm over their channels (inexact) must still run and keep
    the output shapes."""
    from ...graph.verify import dead_reference, outputs_match

    try:
        pruned = prune_groups(copy.deepcopy(model), groups, removal, graph=graph)
    except Exception as e:  # a surgery that cannot be done is a failed check
        return f"surgery fails: {type(e).__name__}: {e}"
    exact = [g for g in groups if g.exact]
    ref = dead_reference(model, exact, removal)
    if len(exact) < len(groups):  # compare shapes only, against the unpruned model
        msg = outputs_match(model, pruned, inputs, rtol=float("inf"))
        if msg is not None or len(exact) == 0:
            return msg
        ref = dead_reference(model, exact, {g.id: removal[g.id] for g in exact})
        pruned = prune_groups(copy.deepcopy(model), exact, {g.id: removal[g.id] for g in exact}, graph=graph)
    return outputs_match(ref, pruned, inputs)


def _verified(model: nn.Module, graph: DependencyGraph, groups: list[Group], scores: dict[int, torch.Tensor],
              inputs: tuple) -> list[Group]:
    """Prune half of every group on a copy and compare with the dead-channel
    reference; groups whose pruning changes what the model computes are left
    out with a warning (a size the model reads that could not be updated, a
    coupling the analysis missed)."""
    if not groups:
        return groups
    removal = _half(groups, scores)
    if _check(model, graph, groups, removal, inputs) is None:
        return groups
    bad = []
    for g in groups:
        msg = _check(model, graph, [g], {g.id: removal[g.id]}, inputs)
        if msg is not None:
            bad.append(g)
            w = (f"channel group {g.name}: pruning it changes what the model computes ({msg}); left unpruned. "
                 "If the model reads this width from an attribute or its config at run time, register a fixup "
                 "(torchslim.graph.register_fixup)")
            graph.warnings.append(w)
            warnings.warn(w, stacklevel=3)
    return [g for g in groups if g not in bad]


def latency_weights(plan: StructuredPlan, latency_inputs, *, fraction: float = 0.5, threads: int | None = None,
                    repeats: int = 20, latency_fn: Callable[[nn.Module, nn.Module], float] | None = None
                    ) -> dict[int, float]:
    """Per-group latency weight: cut each group alone by ``fraction`` (rounded
    as the plan rounds), measure the speedup over the unpruned model, and
    divide the time saved (``1 - 1/speedup``, averaged over the input sets in
    ``latency_inputs``) by the fraction of MACs removed. Weights are scaled
    to a MAC-weighted mean of 1; a cut that saves no time gets a small weight.

    ``latency_fn(dense, candidate) -> speedup`` replaces the measurement
    (default: ``torchslim.analysis.latency.compare_latency``, alternating
    pairs, median of per-pair ratios), e.g. to time an ONNX Runtime export."""
    if latency_fn is None:
        from ...analysis.latency import speedup_fn

        latency_fn = speedup_fn(latency_inputs, threads=threads, repeats=repeats, reduce="mean")
    ex = latency_inputs[0]
    base_macs = count_cost(plan.model, ex, "macs")
    full = plan.keep_counts(0.0)
    saved, macs = {}, {}
    for g in plan.groups:
        k = _n_keep(g.size, fraction, plan.round_to, g.kind)
        if k >= g.size:
            saved[g.id], macs[g.id] = 0.0, 0.0
            continue
        cand = plan.apply({**full, g.id: k})
        macs[g.id] = 1.0 - count_cost(cand, ex, "macs") / base_macs
        saved[g.id] = 1.0 - 1.0 / max(float(latency_fn(plan.model, cand)), 1e-6)
    per_mac = {gid: (saved[gid] / macs[gid] if macs[gid] > 0 else 0.0) for gid in saved}
    total_macs = sum(macs.values()) or 1.0
    mean = sum(per_mac[gid] * macs[gid] for gid in per_mac) / total_macs
    floor = 0.1
    if mean <= 0:  # no cut saves time: fall back to the same fraction everywhere
        return {gid: 1.0 for gid in per_mac}
    return {gid: max(v / mean, floor) for gid, v in per_mac.items()}


def structured(model: nn.Module, example_inputs, *, ratio: float = 0.5, target: str = "channels",
               importance: str = "l2", scope: Scope | None = None, round_to: int | None = None,
               best_effort: bool = False, calib_data=None, allocation: str = "uniform",
               latency_inputs=None, latency_fn=None, threads: int | None = None, time_fn=None,
               mac_ratio: float | None = None, reference: nn.Module | None = None,
               greedy_steps: tuple[int, ...] = (8, 16)) -> nn.Module:
    """Return a smaller copy of ``model`` with channels, neurons and attention
    heads physically removed (the original is not changed).

    ratio: fraction to remove: of the channels of every prunable group
      (``target="channels"``), or of the model's parameters / MACs on
      ``example_inputs`` (``"params"``, ``"macs"``; met to within 5%), or of
      its measured latency (``"latency"``: at least that fraction, i.e. a
      speedup of at least ``1 / (1 - ratio)`` on the slowest of
      ``latency_inputs``, measured by ``latency_fn`` if given; the search
      times about a dozen candidates).
    importance: ``"l1"``, ``"l2"``, ``"taylor"``, ``"activation"``, ``"apoz"``,
      ``"bn_scale"`` (the data-driven ones read ``calib_data``).
    scope: a group is pruned when every layer producing its channels is in
      scope; coupled readers (the next layer's inputs, norms) are sliced with it.
    round_to: keep channel counts a multiple of this (e.g. 8).
    best_effort: an op the dependency analysis cannot follow leaves the groups
      it touches unpruned with a warning instead of raising ModelError.
    allocation: ``"uniform"`` (the same fraction of every group) or
      ``"latency"`` (fractions scaled by ``latency_weights``: measured on
      ``latency_inputs``, a list of input tuples, default
      ``[example_inputs]``, at ``threads``; or by ``latency_fn``).
      ``"greedy"`` (with ``target="latency"``: one group one step narrower at
      a time, each step the one that saves the most measured time, and MACs
      while ``mac_ratio`` is not met, per unit of importance lost; timed by
      ``time_fn``, confirmed by ``latency_fn``; see ``prune.structured.greedy``).
    latency_fn: ``fn(dense, candidate) -> speedup`` replaces the default
      measurement (eager PyTorch, ``compare_latency`` at ``threads``), e.g. to
      time ONNX Runtime exports of both.
    time_fn: ``fn(model) -> [ms per input set]`` for the greedy allocation
      (default: ``torchslim.analysis.latency.time_fn`` on ``latency_inputs``,
      eager PyTorch at ``threads``).
    mac_ratio: with ``allocation="greedy"``, also remove at least this fraction
      of the MACs.
    reference: with ``allocation="greedy"``, the model speedups are measured
      against (default: ``model``; e.g. the dense model when ``model`` already
      had blocks removed).
    greedy_steps: channel multiples a greedy step narrows a group to (they
      take the place of ``round_to``; for ONNX Runtime on AVX-512 use (16,):
      it pads channels to its 16-wide NCHWc blocks, so other cuts save no time).

    Models torch.fx cannot trace (Hugging Face BERT-style encoders) fall back
    to module-pattern rules with a warning: attention heads and MLP hidden
    units only. ``pruned.torchslim_structured`` reports what was done.
    """
    # the config is the one place that validates (ranges, combinations): the same checks as a recipe's
    from .config import StructuredConfig

    StructuredConfig(ratio=ratio, target=target, importance=importance, scope=scope or Scope(), round_to=round_to,
                     best_effort=best_effort, allocation=allocation, mac_ratio=mac_ratio,
                     greedy_steps=tuple(greedy_steps))
    example_inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    _check_plain(model)
    work = copy.deepcopy(model)
    plan = structured_plan(work, example_inputs, importance=importance, scope=scope, round_to=round_to,
                           best_effort=best_effort, calib_data=calib_data)
    if not plan.groups:
        raise ModelError("no prunable channel group is in scope (every group is frozen or excluded); "
                         "check the scope, or see torchslim.graph.build_dependency_graph(model, inputs).groups()")
    inputs = [tuple(x) if isinstance(x, (tuple, list)) else (x,) for x in (latency_inputs or [example_inputs])]
    if allocation == "latency":
        plan.weights = latency_weights(plan, inputs, threads=threads, latency_fn=latency_fn)
    keep = plan.keep_counts(ratio)
    achieved, greedy = None, None
    if allocation == "greedy" and ratio > 0:
        from ...analysis.latency import speedup_fn
        from ...analysis.latency import time_fn as make_time_fn
        from .greedy import greedy_keep

        timer = time_fn or make_time_fn(inputs, threads=threads)
        confirm = latency_fn or speedup_fn(inputs, threads=threads, reduce="min")
        keep, greedy = greedy_keep(plan, example_inputs, time_fn=timer, confirm_fn=confirm, latency_ratio=ratio,
                                   mac_ratio=mac_ratio, reference=reference, steps=greedy_steps)
        sp = greedy["confirmed_speedup"] or min(greedy["measured_speedup"])
        achieved = 1.0 - 1.0 / sp
    elif target == "latency" and ratio > 0:
        from ...analysis.latency import speedup_fn

        speed = latency_fn or speedup_fn(inputs, threads=threads, reduce="min")
        keep, achieved = _search_latency(plan, speed, ratio)
    elif target != "channels" and ratio > 0:
        keep, achieved = _search(plan, example_inputs, target, ratio)
    pruned = plan.apply(keep, inplace=True)
    pruned.torchslim_structured = {
        "target": target, "ratio": ratio, "achieved_reduction": achieved,
        "importance": importance, "method": plan.graph.method, "notes": list(plan.graph.notes),
        "allocation": allocation,
        "latency_weights": ({g.name: plan.weights[g.id] for g in plan.groups} if plan.weights else None),
        "greedy": greedy,
        "groups": [{"name": g.name, "kind": g.kind, "before": g.size, "after": keep[g.id]} for g in plan.groups],
    }
    return pruned


def _search_latency(plan: StructuredPlan, speedup: Callable[[nn.Module, nn.Module], float], want: float,
                    steps: int = 10) -> tuple[dict[int, int], float]:
    """The smallest common fraction (bisection, ``steps`` measurements) whose
    pruned copy removes at least ``want`` of the latency, as measured by
    ``speedup(dense, candidate)``. Measured speed is noisy and, with channel
    rounding, only roughly monotone in the fraction: every candidate that
    met the target is remembered and the least pruned of them is returned."""
    seen: dict[tuple, float] = {}

    def reduction(keep: dict[int, int]) -> float:
        key = tuple(sorted(keep.items()))
        if key not in seen:
            seen[key] = 1.0 - 1.0 / max(float(speedup(plan.model, plan.apply(keep).eval())), 1e-6)
        return seen[key]

    lo, hi = 0.0, plan.max_ratio
    top = plan.keep_counts(hi)
    best_any = (top, reduction(top))
    if best_any[1] < want:
        raise ModelError(
            f"cannot remove {want:.0%} of the latency: pruning every group in scope as far as allowed removes only "
            f"{best_any[1]:.1%} (measured); widen the scope, remove whole blocks (prune.remove_blocks), or lower "
            "the ratio")
    met = [(hi, top, best_any[1])]
    for _ in range(steps - 1):
        mid = (lo + hi) / 2
        k = plan.keep_counts(mid)
        red = reduction(k)
        if red >= want:
            met.append((mid, k, red))
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-3:
            break
    _, keep, red = max(met, key=lambda m: (sum(m[1].values()), -m[0]))  # the most channels kept
    return keep, red


def _search(plan: StructuredPlan, example_inputs: tuple, target: str, want: float,
            tol: float = 0.01) -> tuple[dict[int, int], float]:
    """Per-group channel counts whose pruned model removes ``want`` of the cost.

    Bisection on the common channel fraction (each candidate counted on a real
    pruned copy; the cost is monotone in the fraction), then, because rounding
    makes the cost a staircase, a walk that moves groups one at a time from the
    last fraction below the target to the first above it, keeping the closest."""
    base = count_cost(plan.model, example_inputs, target)

    def reduction(keep: dict[int, int]) -> float:
        return 1.0 - count_cost(plan.apply(keep), example_inputs, target) / base

    top = plan.max_ratio
    lo_k, hi_k = plan.keep_counts(0.0), plan.keep_counts(top)
    lo_red, hi_red = 0.0, reduction(hi_k)
    if hi_red < want * 0.95:
        raise ModelError(
            f"cannot remove {want:.0%} of the {target}: pruning every group in scope to one channel removes only "
            f"{hi_red:.1%}; widen the scope or lower the ratio")
    best = (lo_k, lo_red) if abs(lo_red - want) < abs(hi_red - want) else (hi_k, hi_red)
    lo, hi = 0.0, top
    for _ in range(16):
        if abs(best[1] - want) <= tol * want:
            return best
        mid = (lo + hi) / 2
        k = plan.keep_counts(mid)
        red = reduction(k)
        if abs(red - want) < abs(best[1] - want):
            best = (k, red)
        if red < want:
            lo, lo_k, lo_red = mid, k, red
        else:
            hi, hi_k, hi_red = mid, k, red
    # walk between the brackets, largest groups first
    keep = dict(lo_k)
    for g in sorted(plan.groups, key=lambda g: -g.size):
        if keep[g.id] == hi_k[g.id]:
            continue
        keep[g.id] = hi_k[g.id]
        red = reduction(keep)
        if abs(red - want) < abs(best[1] - want):
            best = (dict(keep), red)
        if red >= want:
            break
    # rounding can leave every bracket combination off target: local search,
    # one group one step (1 channel, or round_to) at a time
    for _ in range(8):
        if abs(best[1] - want) <= tol * want:
            break
        improved = None
        for g in plan.groups:
            step = plan.round_to if plan.round_to and g.kind != "heads" and g.size > plan.round_to else 1
            for k in (best[0][g.id] - step, best[0][g.id] + step):
                if not 1 <= k <= g.size:
                    continue
                cand = {**best[0], g.id: k}
                red = reduction(cand)
                if abs(red - want) < abs((improved or best)[1] - want):
                    improved = (cand, red)
        if improved is None:
            break
        best = improved
    if abs(best[1] - want) > 0.05 * want:
        warnings.warn(f"structured pruning removed {best[1]:.1%} of the {target} instead of {want:.0%}: the channel "
                      "counts (round_to, small groups) allow no closer split", stacklevel=3)
    return best
