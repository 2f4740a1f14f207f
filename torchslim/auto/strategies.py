"""How trials are chosen.

* ``tpe`` / ``nsga2``: Optuna's samplers (multivariate TPE; NSGA-II), the
  budget as their constraints (a trial's violations, <= 0 when met); a few
  warm starts from cheap proxies are enqueued first (``seeds``).
* ``greedy``: the NetAdapt-style measured greedy allocation of
  ``prune.structured`` at speedup targets spread evenly over
  ``space.greedy.speedup``, one per trial.
* ``amc``: an AMC-style agent (``torchslim.auto.amc``) trained on cheap
  proxies (accuracy without fine-tune; time from the per-group latency table,
  or weights kept) picks per-layer ratios; its best distinct episodes become
  the trials.

Proposals are enqueued once per study (under the study lock) and carry their
strategy in the trial's ``strategy`` attribute, so the front says which
strategy found each point. Knobs a proposal leaves open take their defaults.
"""
from __future__ import annotations

from typing import Callable

from .space import Knob, knob_defaults

__all__: list[str] = []  # internal: import from the module


def make_sampler(strategy: str, *, seed: int, startup_trials: int, population: int):
    """The Optuna sampler of a strategy (TPE for greedy and amc: it only
    fills trials beyond their proposals). Constraints reach it as each
    trial's constraint values (``Trial.set_constraint``)."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if strategy == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=startup_trials)


def _knob(knobs: list[Knob], name: str) -> Knob | None:
    return next((k for k in knobs if k.name == name), None)


def greedy_proposals(knobs: list[Knob], n: int) -> list[dict]:
    """``n`` speedup targets evenly over the ``greedy.speedup`` range."""
    k = _knob(knobs, "greedy.speedup")
    if k is None:
        return [knob_defaults(knobs)]
    targets = [k.low + (k.high - k.low) * i / max(1, n - 1) for i in range(n)]
    return [knob_defaults(knobs, **{"greedy.speedup": round(t, 4)}) for t in targets]


def uniform_seeds(knobs: list[Knob], keeps) -> list[dict]:
    """Every searched group at the same kept fraction (one proposal per value)."""
    names = [k.name for k in knobs if k.name.startswith("keep.")]
    out = []
    for v in keeps:
        vals = {n: min(max(float(v), _knob(knobs, n).low), 1.0) for n in names}
        if vals:
            out.append(knob_defaults(knobs, **vals))
    return out


def density_seeds(knobs: list[Knob], allocations: list[dict[str, float]]) -> list[dict]:
    """Per-layer densities from sensitivity allocations ({layer: sparsity})."""
    out = []
    for alloc in allocations:
        vals = {}
        for layer, s in alloc.items():
            k = _knob(knobs, f"density.{layer}")
            if k is not None:
                vals[k.name] = min(max(1.0 - float(s), k.low), k.high)
        if vals:
            out.append(knob_defaults(knobs, **vals))
    return out


def amc_proposals(knobs: list[Knob], episodes, names: list[str], n: int, *, prefix: str,
                  to_value: Callable[[float], float]) -> list[dict]:
    """The ``n`` best distinct episodes (actions rounded to 2 decimals) as
    proposals setting knob ``prefix + name`` to ``to_value(action)``."""
    out, seen = [], set()
    for ep in episodes:
        key = tuple(round(a, 2) for a in ep.actions)
        if key in seen:
            continue
        seen.add(key)
        vals = {}
        for name, a in zip(names, ep.actions):
            k = _knob(knobs, prefix + name)
            if k is not None:
                vals[k.name] = min(max(to_value(a), k.low), k.high)
        out.append(knob_defaults(knobs, **vals))
        if len(out) >= n:
            break
    return out

