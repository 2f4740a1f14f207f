"""Non-dominated sorting against a brute-force reference."""
import itertools
import random

import pytest

from torchslim.auto.pareto import dominates, non_dominated_sort, pareto_front
from torchslim.core.errors import ConfigError


def brute_dominates(a, b, dirs):
    sa = [x if d == "minimize" else -x for x, d in zip(a, dirs)]
    sb = [x if d == "minimize" else -x for x, d in zip(b, dirs)]
    return all(x <= y for x, y in zip(sa, sb)) and sa != sb


def brute_fronts(points, dirs):
    left, fronts = set(range(len(points))), []
    while left:
        f = sorted(i for i in left if not any(brute_dominates(points[j], points[i], dirs) for j in left if j != i))
        fronts.append(f)
        left -= set(f)
    return fronts


@pytest.mark.parametrize("seed", range(30))
def test_sort_matches_brute_force(seed):
    rng = random.Random(seed)
    m = rng.choice([1, 2, 3])
    dirs = [rng.choice(["minimize", "maximize"]) for _ in range(m)]
    n = rng.randint(0, 40)
    # a coarse grid makes ties and duplicates common
    points = [[rng.randint(0, 6) / 2 for _ in range(m)] for _ in range(n)]
    assert non_dominated_sort(points, dirs) == brute_fronts(points, dirs)
    assert pareto_front(points, dirs) == (brute_fronts(points, dirs) or [[]])[0]


def test_dominance_rules():
    d = ["minimize", "maximize"]
    assert dominates([1, 5], [2, 5], d) and dominates([1, 6], [1, 5], d)
    assert not dominates([1, 5], [1, 5], d)  # equal: neither
    assert not dominates([1, 4], [2, 5], d) and not dominates([2, 5], [1, 4], d)  # a trade-off
    # duplicates share the front
    assert pareto_front([[1, 5], [1, 5], [2, 4]], d) == [0, 1]
    with pytest.raises(ConfigError, match="direction 'up'"):
        dominates([1], [2], ["up"])
    with pytest.raises(ConfigError, match="2 objectives"):
        dominates([1], [2], d)


def test_every_point_is_in_exactly_one_front():
    rng = random.Random(7)
    pts = [[rng.random(), rng.random()] for _ in range(200)]
    fronts = non_dominated_sort(pts, ["minimize", "minimize"])
    assert sorted(itertools.chain(*fronts)) == list(range(200))
    for a, b in zip(fronts, fronts[1:]):  # every later point is dominated by some earlier-front point
        assert all(any(dominates(pts[i], pts[j], ["minimize"] * 2) for i in a) for j in b)
