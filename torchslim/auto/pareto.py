"""Pareto dominance and non-dominated sorting (Deb et al.'s fast sort).

A point dominates another when it is at least as good in every objective and
strictly better in one ("good" per direction: ``"minimize"`` or
``"maximize"``). Equal points do not dominate each other, so duplicates share
a front."""
from __future__ import annotations

from typing import Sequence

from ..core.errors import ConfigError

__all__ = ["dominates", "non_dominated_sort", "pareto_front"]


def _signs(directions: Sequence[str]) -> list[float]:
    out = []
    for d in directions:
        if d not in ("minimize", "maximize"):
            raise ConfigError(f"direction {d!r} is not 'minimize' or 'maximize'")
        out.append(1.0 if d == "minimize" else -1.0)
    return out


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """True when ``a`` is no worse than ``b`` everywhere and better somewhere."""
    s = _signs(directions)
    if not (len(a) == len(b) == len(s)):
        raise ConfigError(f"points of {len(a)} and {len(b)} values for {len(s)} objectives")
    better = False
    for x, y, k in zip(a, b, s):
        if k * x > k * y:
            return False
        if k * x < k * y:
            better = True
    return better


def non_dominated_sort(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[list[int]]:
    """Indices of ``points`` by front: the first list is the Pareto front, the
    second what is non-dominated once it is removed, and so on."""
    n = len(points)
    dominated_by = [0] * n  # how many points dominate i
    dominating: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j], directions):
                dominating[i].append(j)
                dominated_by[j] += 1
            elif dominates(points[j], points[i], directions):
                dominating[j].append(i)
                dominated_by[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in range(n) if dominated_by[i] == 0]
    while current:
        fronts.append(sorted(current))
        nxt = []
        for i in current:
            for j in dominating[i]:
                dominated_by[j] -= 1
                if dominated_by[j] == 0:
                    nxt.append(j)
        current = nxt
    return fronts


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points (ascending)."""
    fronts = non_dominated_sort(points, directions)
    return fronts[0] if fronts else []
