"""What a search returns, and the final check of its best candidates.

The searches (``evolution.py``, ``tpe.py``) are generic: a ``SearchSpace``, a
``score_fn(config) -> float`` (higher is better: holdout accuracy), a
``cost_fn(config) -> float`` (the proxy: predicted latency as a fraction of
the budget, so ``<= budget`` (default 1) is admissible) and a seed. A
candidate over the budget is never scored. ``confirm`` then measures the best
scored candidates for real (``confirm_fn``) and keeps the best one that meets
the budget when measured.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from ..core.errors import ModelError
from .space import SearchSpace, config_key

__all__ = ["Candidate", "SearchResult", "confirm", "Cached"]


@dataclasses.dataclass
class Candidate:
    config: dict
    score: float | None  # None: over the budget by the proxy, not scored
    cost: float  # proxy cost (fraction of the budget)

    def to_dict(self) -> dict:
        return {"config": self.config, "score": self.score, "cost": self.cost}


@dataclasses.dataclass
class SearchResult:
    algorithm: str
    budget: float
    history: list[Candidate] = dataclasses.field(default_factory=list)  # every distinct candidate, in order
    best: Candidate | None = None  # the best scored candidate (by the proxy, within budget)
    confirmed: Candidate | None = None  # the best one that also met the budget when measured (``confirm``)
    confirmations: list[dict] = dataclasses.field(default_factory=list)

    @property
    def scored(self) -> int:
        return sum(c.score is not None for c in self.history)

    @property
    def rejected(self) -> int:
        return sum(c.score is None for c in self.history)

    def ranked(self) -> list[Candidate]:
        """Scored candidates within the budget, best first (cheaper first on a tie)."""
        ok = [c for c in self.history if c.score is not None and c.cost <= self.budget]
        return sorted(ok, key=lambda c: (-c.score, c.cost))

    def to_dict(self) -> dict:
        return {"algorithm": self.algorithm, "budget": self.budget, "scored": self.scored, "rejected": self.rejected,
                "best": self.best.to_dict() if self.best else None,
                "confirmed": self.confirmed.to_dict() if self.confirmed else None,
                "confirmations": self.confirmations, "history": [c.to_dict() for c in self.history]}


class Cached:
    """Memoised ``score_fn`` and ``cost_fn`` by canonical config, recording
    every distinct candidate in ``result.history``."""

    def __init__(self, space: SearchSpace, score_fn: Callable[[dict], float], cost_fn: Callable[[dict], float],
                 result: SearchResult):
        self.space, self.score_fn, self.cost_fn, self.result = space, score_fn, cost_fn, result
        self.seen: dict[str, Candidate] = {}

    def cost(self, config: dict) -> float:
        key = config_key(config)
        if key not in self.seen:
            c = Candidate(dict(config), None, float(self.cost_fn(config)))
            self.seen[key] = c
            self.result.history.append(c)
        return self.seen[key].cost

    def admissible(self, config: dict) -> bool:
        return self.cost(config) <= self.result.budget

    def score(self, config: dict) -> float:
        """The score of an admissible config (computed once)."""
        self.cost(config)
        c = self.seen[config_key(config)]
        if c.score is None:
            c.score = float(self.score_fn(config))
            best = self.result.best
            if best is None or (c.score, -c.cost) > (best.score, -best.cost):
                self.result.best = c
        return c.score

    def known(self, config: dict) -> bool:
        return config_key(config) in self.seen


def confirm(result: SearchResult, confirm_fn: Callable[[dict], tuple[bool, dict]], *, top: int = 5,
            max_measured: int | None = None) -> Candidate:
    """Measure the best candidates (``confirm_fn(config) -> (meets budget,
    details)``) in score order; the first that meets the budget wins.

    When the details give ``measured_cost`` (the measured latency as a
    fraction of the budget), the proxy is corrected as it goes: every
    candidate's proxy cost is multiplied by the median of measured / proxy
    cost over the candidates measured so far, and the next one tried is the
    best-scored one still within the budget after that correction. (Near the
    budget a proxy that is a few percent optimistic fails every top
    candidate; the correction moves straight to the ones that fit.) Without
    ``measured_cost``: after ``top`` failures, only candidates cheaper by the
    proxy than every failed one. At most ``max_measured`` (default ``3 * top``)
    measurements."""
    max_measured = max_measured or 3 * top
    ranked = result.ranked()
    if not ranked:
        raise ModelError("the search scored no candidate within the latency budget; raise the budget, or widen "
                         "the search space (smaller width multipliers, elastic depth)")
    failed_costs: list[float] = []
    ratios: list[float] = []  # measured / proxy cost
    tried: set[int] = set()
    while len(result.confirmations) < max_measured:
        k = sorted(ratios)[len(ratios) // 2] if ratios else 1.0
        pick = None
        for i, c in enumerate(ranked):
            if i in tried:
                continue
            if ratios and c.cost * k > result.budget:
                continue
            if not ratios and len(failed_costs) >= top and c.cost >= min(failed_costs):
                continue
            pick = i
            break
        if pick is None:
            break
        tried.add(pick)
        c = ranked[pick]
        ok, info = confirm_fn(c.config)
        entry = {"config": c.config, "score": c.score, "cost": c.cost, "ok": bool(ok), **info}
        if ratios:
            entry["corrected_cost"] = c.cost * k
        result.confirmations.append(entry)
        if ok:
            result.confirmed = c
            return c
        failed_costs.append(c.cost)
        if info.get("measured_cost") is not None and c.cost > 0:
            ratios.append(float(info["measured_cost"]) / c.cost)
    raise ModelError(f"none of the {len(result.confirmations)} best candidates met the latency budget when measured "
                     "(the proxy is optimistic here); lower proxy_margin (e.g. -0.1) so the search keeps a safety "
                     "margin, or raise the budget")
