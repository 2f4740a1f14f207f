"""Evolutionary search (as in once-for-all / SPOS): a population of
subnets within the latency budget (by the proxy: candidates over it are
redrawn, never scored), the best ``parents`` kept each generation, the rest
replaced by children made by mutation (each choice redrawn with probability
``mutate_prob``) and by crossover (each choice from one of two parents).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..core.errors import ConfigError, ModelError
from .candidates import Cached, SearchResult
from .space import SearchSpace, config_key

__all__ = ["evolutionary_search"]


def evolutionary_search(space: SearchSpace, score_fn: Callable[[dict], float], cost_fn: Callable[[dict], float], *,
                        budget: float = 1.0, population: int = 16, generations: int = 8, parents: int = 4,
                        mutate_prob: float = 0.2, mutation_share: float = 0.5, seed: int = 0, max_tries: int = 200,
                        log: Callable[[str], None] | None = None) -> SearchResult:
    """Maximise ``score_fn`` over ``space`` subject to ``cost_fn <= budget``.
    Scores at most ``population * generations`` distinct candidates."""
    if population < 2 or parents < 1 or parents >= population:
        raise ConfigError(f"evolution: need population >= 2 and 1 <= parents < population, got population "
                          f"{population}, parents {parents}")
    if generations < 1:
        raise ConfigError(f"evolution: generations must be >= 1, got {generations}")
    if not 0 <= mutate_prob <= 1 or not 0 <= mutation_share <= 1:
        raise ConfigError(f"evolution: mutate_prob and mutation_share must be in [0, 1], got {mutate_prob}, "
                          f"{mutation_share}")
    g = torch.Generator().manual_seed(seed)
    result = SearchResult("evolution", budget)
    c = Cached(space, score_fn, cost_fn, result)
    smallest = space.min_config()
    if not c.admissible(smallest):
        raise ModelError(f"the latency budget is below the smallest subnet's (predicted cost {c.cost(smallest):.3f} "
                         f"of the budget > {budget}); raise the budget or widen the search space")

    def draw(make) -> dict | None:
        """An admissible candidate not scored yet (None if ``max_tries`` draws find none)."""
        for _ in range(max_tries):
            cand = make()
            if c.admissible(cand) and (not c.known(cand) or c.seen[config_key(cand)].score is None):
                return cand
        return None

    pop: list[dict] = []
    largest = space.max_config()
    if c.admissible(largest):
        pop.append(largest)
    while len(pop) < population:
        cand = draw(lambda: space.sample(g))
        if cand is None:
            break
        pop.append(cand)
    if not pop:
        pop = [smallest]
    for gen in range(generations):
        scored = sorted(pop, key=lambda cfg: (-c.score(cfg), c.cost(cfg)))
        top = []
        for cfg in scored:  # distinct parents
            if all(config_key(cfg) != config_key(t) for t in top):
                top.append(cfg)
            if len(top) == parents:
                break
        if log:
            b = result.best
            log(f"evolution generation {gen + 1}/{generations}: best score {b.score:.4f} cost {b.cost:.3f} "
                f"({result.scored} scored, {result.rejected} over budget)")
        if gen == generations - 1:
            break
        children: list[dict] = []
        n_mut = int(round((population - len(top)) * mutation_share))
        while len(children) < population - len(top):
            if len(children) < n_mut or len(top) < 2:
                p = top[int(torch.randint(len(top), (1,), generator=g))]
                cand = draw(lambda: space.mutate(p, mutate_prob, g))
            else:
                i, j = torch.randperm(len(top), generator=g)[:2].tolist()
                cand = draw(lambda: space.crossover(top[i], top[j], g))
            if cand is None:  # the parents' neighbourhood is exhausted: explore
                cand = draw(lambda: space.sample(g))
            if cand is None:  # every admissible config we can draw is scored already
                break
            children.append(cand)
        pop = top + children
    return result
