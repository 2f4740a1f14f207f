"""The AMC-style agent on synthetic rewards with known optima."""
import math

import numpy as np
import pytest

from torchslim.auto.amc import AMCSpec, LayerEnv, greedy_policy, run_agent
from torchslim.core.errors import ConfigError


def test_learns_a_known_per_layer_optimum():
    # the optimum is a sigmoid of the layer position: exactly what the policy can express
    n, a_max = 5, 0.8
    opt = [a_max / (1 + math.exp(-(2 - 4 * t / (n - 1)))) for t in range(n)]
    costs = [(lambda a, w=w: w * (1 - a)) for w in (1, 2, 3, 2, 1)]
    env = LayerEnv(costs, lambda acts: -sum((a - o) ** 2 for a, o in zip(acts, opt)), target=None, a_max=a_max)
    episodes, agent = run_agent(env, AMCSpec(episodes=300, seed=0))
    policy = greedy_policy(env, agent)
    assert max(abs(a - o) for a, o in zip(policy, opt)) < 0.06
    assert episodes[0].reward > -0.01 and episodes[0].reward >= episodes[-1].reward


def test_budget_is_always_met_and_the_constrained_optimum_found():
    a_max, w, opt = 0.9, [4.0, 1.0, 2.0], [0.2, 0.3, 0.1]  # unconstrained optimum keeps too much
    costs = [(lambda a, w=x: w * (1 - a)) for x in w]
    target = 0.6 * sum(w)

    def reward(acts):
        return -sum((a - o) ** 2 for a, o in zip(acts, opt))

    g = np.linspace(0, a_max, 91)
    a0, a1, a2 = np.meshgrid(g, g, g, indexing="ij")  # brute force over a fine grid
    ok = w[0] * (1 - a0) + w[1] * (1 - a1) + w[2] * (1 - a2) <= target + 1e-9
    best = float(np.max(np.where(ok, -((a0 - opt[0]) ** 2 + (a1 - opt[1]) ** 2 + (a2 - opt[2]) ** 2), -np.inf)))
    env = LayerEnv(costs, reward, target=target, a_max=a_max)
    episodes, _ = run_agent(env, AMCSpec(episodes=300, seed=1))
    assert all(e.resource <= target + 1e-6 for e in episodes)  # AMC's clipping: every episode is feasible
    assert episodes[0].reward == pytest.approx(best, abs=0.01)


def test_unreachable_target_is_an_error():
    with pytest.raises(ConfigError, match="cannot be met"):
        LayerEnv([lambda a: 1 - a], lambda acts: 0.0, target=0.05, a_max=0.5)
