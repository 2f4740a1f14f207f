"""Measured greedy channel allocation (NetAdapt-style: Yang et al., 2018).

The uniform and latency-weighted allocations cut every group by a fraction
of one common ratio; on small models whose time is dominated by a few layers
and by the runtime's layout rules (ONNX Runtime's NCHWc blocks want channel
counts in multiples of 8 or 16) that spends the accuracy budget on channels
that save no time. Here every step is chosen by measurement: each group is
tried one step narrower (to the next lower multiple of each of ``steps``),
every candidate is timed on the target runtime, and the step with the largest

    (time saved, plus ``mac_weight`` x MACs saved while the MAC target is not met)
    / (importance of the channels it removes, as a share of all channels')

is taken (time averaged over the input sets, those already fast enough
weighted a tenth). The accepted model is re-timed (not the candidate's own, possibly
lucky, timing); when it looks fast enough, a paired measurement against the
reference (alternating calls, median ratio) confirms it before the search
stops. Importance should be comparable across layers: first-order Taylor
(``importance="taylor"``, an estimate of the loss change) is.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch.nn as nn

from ...core.errors import ConfigError, ModelError

__all__ = ["greedy_keep"]


def _next_lower(k: int, step: int) -> int:
    return (k - 1) // step * step


def greedy_keep(plan, example_inputs: tuple, *, time_fn: Callable[[nn.Module], Sequence[float]],
                confirm_fn: Callable[[nn.Module, nn.Module], float] | None, latency_ratio: float,
                mac_ratio: float | None = None, reference: nn.Module | None = None,
                steps: Sequence[int] = (8, 16), min_keep: int = 8, mac_weight: float = 0.5,
                max_iterations: int = 200, log: Callable[[str], None] | None = None) -> tuple[dict[int, int], dict]:
    """Channel counts per group (``{group.id: keep}``) and a record of the
    search. Stops when the model is at least ``1 / (1 - latency_ratio)`` times
    faster than ``reference`` (default: the plan's unpruned model) on every
    input set of ``time_fn`` (confirmed by ``confirm_fn(reference, candidate)
    -> speedup`` if given) and, if ``mac_ratio`` is given, has lost at least
    that fraction of its MACs. Raises ModelError when no step saves anything
    any more before the targets are met."""
    from .plan import count_cost

    if not 0.0 < latency_ratio < 1.0:
        raise ConfigError(f"latency_ratio must be in (0, 1), got {latency_ratio}")
    if mac_ratio is not None and not 0.0 <= mac_ratio < 1.0:
        raise ConfigError(f"mac_ratio must be in [0, 1), got {mac_ratio}")
    if not steps or any(s < 1 for s in steps):
        raise ConfigError(f"steps must be positive channel counts, got {list(steps)}")
    reference = plan.model if reference is None else reference
    want_speed = 1.0 / (1.0 - latency_ratio)
    ref_ms = [float(t) for t in time_fn(reference)]
    ref_macs = count_cost(reference, example_inputs, "macs")
    scores = {g.id: plan.scores[g.id].float().abs().sort().values for g in plan.groups}  # ascending
    total_imp = sum(float(s.sum()) for s in scores.values()) or 1.0

    def rel_time(ms: Sequence[float], weights: Sequence[float]) -> float:
        """Time relative to the reference, averaged over the input sets with
        ``weights``: a set still short of the target counts fully, one that is
        already fast enough a tenth, so steps go where the target binds (e.g.
        batch 1, paying per operator, while batch 32 is already there)."""
        return sum(w * m / r for w, m, r in zip(weights, ms, ref_ms)) / sum(weights)

    def mac_red(m: nn.Module) -> float:
        return 1.0 - count_cost(m, example_inputs, "macs") / ref_macs

    keep = {g.id: g.size for g in plan.groups}
    model = plan.apply(keep)
    cur_ms, cur_red = [float(t) for t in time_fn(model)], mac_red(model)
    history, confirmed = [], None
    for _ in range(max_iterations):
        speed = [r / max(c, 1e-12) for r, c in zip(ref_ms, cur_ms)]
        macs_met = mac_ratio is None or cur_red >= mac_ratio
        if macs_met and min(speed) >= want_speed:
            confirmed = None if confirm_fn is None else float(confirm_fn(reference, model))
            if confirmed is None or confirmed >= want_speed:
                break
            # the paired measurement says not yet: trust it, keep cutting
            cur_ms = [max(c, r / confirmed) for c, r in zip(cur_ms, ref_ms)]
        weights = [1.0 if sp < want_speed else 0.1 for sp in speed]
        best = None
        for g in plan.groups:
            k = keep[g.id]
            floor = 1 if g.kind == "heads" else max(min_keep, math.ceil(g.size / 8))
            tried = set()
            for step in ((1,) if g.kind == "heads" else steps):
                nk = _next_lower(k, step)
                if nk < floor or nk in tried:
                    continue
                tried.add(nk)
                cand = plan.apply({**keep, g.id: nk})
                dt = rel_time(cur_ms, weights) - rel_time(time_fn(cand), weights)
                dmac = mac_red(cand) - cur_red
                lost = float(scores[g.id][g.size - k: g.size - nk].sum()) / total_imp
                gain = max(dt, 0.0) + (mac_weight * dmac if not macs_met else 0.0)
                if gain <= 0:
                    continue
                score = gain / max(lost, 1e-12)
                if best is None or score > best[0]:
                    best = (score, g, nk)
        if best is None:
            raise ModelError(
                f"greedy allocation: no further cut saves time or MACs (speedup {min(speed):.2f}x of "
                f"{want_speed:.2f}x wanted, MACs -{cur_red:.1%}); remove whole blocks first, widen the scope or "
                "lower the targets")
        _, g, nk = best
        history.append({"group": g.name, "from": keep[g.id], "to": nk})
        keep[g.id] = nk
        model = plan.apply(keep)
        cur_ms, cur_red = [float(t) for t in time_fn(model)], mac_red(model)  # re-timed
        if log is not None:
            sp = ", ".join(f"{r / max(c, 1e-12):.2f}x" for r, c in zip(ref_ms, cur_ms))
            log(f"greedy step {len(history)}: {g.name} {history[-1]['from']} -> {nk}; speedup {sp}, "
                f"MACs -{cur_red:.1%}")
    else:
        raise ModelError(f"greedy allocation: targets not met after {max_iterations} steps")
    info = {"steps": history, "reference_ms": ref_ms, "final_ms": cur_ms,
            "measured_speedup": [r / max(c, 1e-12) for r, c in zip(ref_ms, cur_ms)],
            "confirmed_speedup": confirmed, "mac_reduction": cur_red}
    return keep, info
