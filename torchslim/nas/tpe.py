"""The Optuna alternative to evolution: a TPE sampler (Bergstra et al.,
2011) over the same space, one categorical parameter per dimension, with the
latency budget as an Optuna constraint (``Trial.set_constraint``; a
``constraints_func`` before Optuna 5), so TPE learns where the admissible
region is. Candidates over the budget by the proxy are
not scored (they get the lowest score so far); ``trials`` counts scored
candidates only.
"""
from __future__ import annotations

from typing import Callable

from ..core.errors import ConfigError, ModelError
from .candidates import Cached, SearchResult
from .space import SearchSpace

__all__ = ["tpe_search"]


def tpe_search(space: SearchSpace, score_fn: Callable[[dict], float], cost_fn: Callable[[dict], float], *,
               budget: float = 1.0, trials: int = 100, startup_trials: int = 10, seed: int = 0,
               max_trials: int | None = None, log: Callable[[str], None] | None = None) -> SearchResult:
    """Maximise ``score_fn`` over ``space`` subject to ``cost_fn <= budget``
    with Optuna's TPE; scores at most ``trials`` distinct candidates, runs at
    most ``max_trials`` Optuna trials (default ``20 * trials``)."""
    if trials < 1 or startup_trials < 0:
        raise ConfigError(f"tpe: trials must be >= 1 and startup_trials >= 0, got {trials}, {startup_trials}")
    try:
        import optuna
    except ImportError:
        raise ConfigError("tpe search needs optuna; pip install optuna, or use algorithm: evolution") from None
    result = SearchResult("tpe", budget)
    c = Cached(space, score_fn, cost_fn, result)
    smallest = space.min_config()
    if not c.admissible(smallest):
        raise ModelError(f"the latency budget is below the smallest subnet's (predicted cost {c.cost(smallest):.3f} "
                         f"of the budget > {budget}); raise the budget or widen the search space")
    modern = hasattr(optuna.trial.Trial, "set_constraint")  # optuna >= 5; before, a constraints_func
    sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=startup_trials, multivariate=True,
        **({} if modern else {"constraints_func": lambda t: [t.user_attrs["excess"]]}))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lowest: list[float] = []  # the lowest score so far (infeasible trials get it, less one)

    def objective(trial) -> float:
        raw = {d.name: trial.suggest_categorical(d.name, list(d.choices)) for d in space.dims}
        cfg = space.canonical(raw)
        cost = c.cost(cfg)
        if modern:
            trial.set_constraint("latency", cost - budget)
        else:
            trial.set_user_attr("excess", cost - budget)
        if cost > budget:
            return min(lowest) - 1.0 if lowest else 0.0
        s = c.score(cfg)
        lowest.append(s)
        return s

    try:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        if space.dims:
            study.enqueue_trial(dict(smallest))  # one admissible point from the start
        limit = max_trials or 20 * trials
        done = 0
        while result.scored < trials and done < limit and (space.dims or done == 0):
            study.optimize(objective, n_trials=1)
            done += 1
            if log and done % 10 == 0:
                b = result.best
                log(f"tpe trial {done}: best score {b.score:.4f} cost {b.cost:.3f} ({result.scored} scored, "
                    f"{result.rejected} over budget)")
    finally:
        optuna.logging.set_verbosity(verbosity)
    return result
