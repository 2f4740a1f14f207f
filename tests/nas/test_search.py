"""The searches under a synthetic latency function with a known optimum:
every scored candidate is within the budget, evolution finds the optimum,
TPE gets close; the final measured check; unreachable budgets."""
from __future__ import annotations

import itertools

import pytest

from torchslim.core.errors import ConfigError, ModelError
from torchslim.nas import Dim, SearchResult, SearchSpace, confirm, evolutionary_search, tpe_search
from torchslim.nas.candidates import Candidate

SPACE = SearchSpace([
    Dim("width.a", (8, 12, 16)),
    Dim("width.b", (16, 24, 32)),
    Dim("width.c", (4, 8, 12, 16)),
    Dim("depth.s", (0, 1, 2), stage="s", blocks=("s.0", "s.1")),
    Dim("width.s1", (2, 4), block="s.1"),  # moot when depth.s < 2
])
# "latency": each choice costs; "accuracy": diminishing returns of width, so the best use of a budget is a mix
COST = {"width.a": 1.0, "width.b": 0.5, "width.c": 1.5, "depth.s": 6.0, "width.s1": 2.0}


def latency(cfg: dict) -> float:
    return sum(COST[k] * v for k, v in cfg.items() if k != "width.s1" or cfg["depth.s"] == 2)


def accuracy(cfg: dict) -> float:
    s = sum(w ** 0.5 for k, w in cfg.items() if k.startswith("width.") and k != "width.s1")
    return s + 1.5 * cfg["depth.s"] + (0.3 * cfg["width.s1"] if cfg["depth.s"] == 2 else 0.0)


BUDGET_MS = 60.0


def cost(cfg: dict) -> float:
    return latency(cfg) / BUDGET_MS


def optimum() -> tuple[float, dict]:
    best = None
    for values in itertools.product(*(d.choices for d in SPACE.dims)):
        cfg = SPACE.canonical(dict(zip((d.name for d in SPACE.dims), values)))
        if latency(cfg) <= BUDGET_MS and (best is None or accuracy(cfg) > best[0]):
            best = (accuracy(cfg), cfg)
    return best


def _within_budget(res: SearchResult) -> None:
    scored = [c for c in res.history if c.score is not None]
    assert scored
    assert all(latency(c.config) <= BUDGET_MS + 1e-9 for c in scored)  # nothing over budget is ever scored
    assert res.best.cost <= 1.0


def test_known_optimum_is_inside_the_space_and_binding():
    best, cfg = optimum()
    assert latency(SPACE.max_config()) > BUDGET_MS  # the budget binds
    assert latency(cfg) <= BUDGET_MS


def test_evolution_finds_the_optimum_within_budget():
    res = evolutionary_search(SPACE, accuracy, cost, population=12, generations=10, parents=4, mutate_prob=0.3, seed=0)
    _within_budget(res)
    assert res.best.score == pytest.approx(optimum()[0])
    assert res.scored <= 12 * 10


def test_evolution_is_reproducible():
    a = evolutionary_search(SPACE, accuracy, cost, population=8, generations=3, seed=5)
    b = evolutionary_search(SPACE, accuracy, cost, population=8, generations=3, seed=5)
    assert [c.config for c in a.history] == [c.config for c in b.history]


def test_tpe_respects_the_budget_and_gets_close():
    res = tpe_search(SPACE, accuracy, cost, trials=40, seed=0)
    _within_budget(res)
    assert res.scored <= 40
    assert res.best.score >= 0.97 * optimum()[0]


def test_unreachable_budget_is_an_error():
    for fn in (evolutionary_search, tpe_search):
        with pytest.raises(ModelError, match="raise the budget"):
            fn(SPACE, accuracy, lambda c: 2.0, budget=1.0)


def test_search_options_are_checked():
    with pytest.raises(ConfigError, match="parents"):
        evolutionary_search(SPACE, accuracy, cost, population=4, parents=4)
    with pytest.raises(ConfigError, match="trials"):
        tpe_search(SPACE, accuracy, cost, trials=0)


def _result(entries) -> SearchResult:
    res = SearchResult("test", 1.0)
    res.history = [Candidate({"i": i}, s, c) for i, (s, c) in enumerate(entries)]
    return res


def test_confirm_takes_the_best_that_meets_the_measured_budget():
    res = _result([(0.9, 0.99), (0.95, 0.98), (0.8, 0.5), (0.7, 1.2)])  # the last one: over budget, never measured
    measured = {0: 1.05, 1: 1.01, 2: 0.6}  # the proxy was optimistic for the two best
    got = confirm(res, lambda c: (measured[c["i"]] <= 1.0, {"measured": measured[c["i"]]}), top=5)
    assert got.config == {"i": 2}
    assert [m["config"]["i"] for m in res.confirmations] == [1, 0, 2]


def test_confirm_after_top_failures_tries_only_cheaper_ones():
    res = _result([(0.9, 0.9), (0.8, 0.95), (0.7, 0.5)])
    got = confirm(res, lambda c: (c["i"] == 2, {}), top=1)
    assert got.config == {"i": 2}
    assert [m["config"]["i"] for m in res.confirmations] == [0, 2]  # 1 skipped: not cheaper than the failure
    with pytest.raises(ModelError, match="proxy_margin"):
        confirm(_result([(0.9, 0.9)]), lambda c: (False, {}), top=1)


def test_confirm_corrects_an_optimistic_proxy():
    # the proxy is 10% optimistic: measured cost = 1.1 x proxy cost
    res = _result([(0.99, 0.98), (0.98, 0.97), (0.97, 0.95), (0.9, 0.92), (0.8, 0.89), (0.7, 0.5)])
    got = confirm(res, lambda c: (1.1 * res.history[c["i"]].cost <= 1.0,
                                  {"measured_cost": 1.1 * res.history[c["i"]].cost}), top=5)
    assert got.config == {"i": 4}  # 0.89 * 1.1 <= 1: the best that fits, after one failure
    assert [m["config"]["i"] for m in res.confirmations] == [0, 4]
