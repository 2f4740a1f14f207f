"""An AMC-style agent (He et al., 2018, "AMC: AutoML for Model Compression")
that chooses per-layer compression ratios layer by layer.

AMC walks the layers in order; at each it observes the layer (its position,
its share of the resource, the reduction so far, what is left to cut, the
previous action) and picks the fraction to remove. In resource-constrained
mode the action is raised when needed so that the target stays reachable if
every later layer were cut as far as allowed, so every episode meets the
budget and the reward can be the proxy accuracy alone (no fine-tune).

AMC trains a DDPG actor-critic; this is the simpler policy-gradient variant:
a shared linear-Gaussian policy (mean ``a_max * sigmoid(w . s + b)``; the
exploration noise decays over the episodes) updated by REINFORCE with a
moving-average reward baseline. The best episodes (not the final policy
alone) are what a search keeps: their ratios become trials that are then
fine-tuned and measured like any other.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from ..core.config import Config
from ..core.errors import ConfigError

__all__ = ["AMCSpec", "LayerEnv", "PolicyGradientAgent", "run_agent", "greedy_policy", "Episode"]


@dataclasses.dataclass(frozen=True)
class AMCSpec(Config):
    """``episodes`` (the first ``warmup`` with random actions), learning rate
    ``lr``, exploration noise decaying from ``sigma[0]`` to ``sigma[1]``;
    ``target``: fraction of the resource to keep (null: from the budget's
    speedup or bytes bound, else 0.5); ``proxy_examples`` holdout examples per
    reward evaluation."""

    episodes: int = 150
    warmup: int = 10
    lr: float = 0.05
    sigma: tuple[float, float] = (0.3, 0.02)
    target: float | None = None
    proxy_examples: int = 1000
    seed: int = 0

    def validate(self) -> None:
        if self.episodes < 1 or not 0 <= self.warmup <= self.episodes:
            raise ConfigError(f"AMCSpec: need episodes >= 1 and 0 <= warmup <= episodes, got {self.episodes}, "
                              f"{self.warmup}")
        if self.lr <= 0:
            raise ConfigError(f"AMCSpec.lr must be positive, got {self.lr}")
        if len(self.sigma) != 2 or not 0 < self.sigma[1] <= self.sigma[0]:
            raise ConfigError(f"AMCSpec.sigma must be [start, end] with 0 < end <= start, got {list(self.sigma)}")
        if self.target is not None and not 0 < self.target <= 1:
            raise ConfigError(f"AMCSpec.target must be a fraction in (0, 1], got {self.target}")
        if self.proxy_examples < 1:
            raise ConfigError(f"AMCSpec.proxy_examples must be positive, got {self.proxy_examples}")


@dataclasses.dataclass
class Episode:
    actions: list[float]  # fraction removed per layer
    reward: float
    resource: float  # total resource after the episode's cuts


class LayerEnv:
    """Layer-by-layer compression with a resource budget.

    ``costs[i](a)`` is layer i's contribution to the resource when a fraction
    ``a`` of it is removed (non-increasing in ``a``); the total is ``base +
    sum_i costs[i](a_i)``. ``target`` (or None: unconstrained) bounds the
    total. ``reward(actions) -> float`` scores a finished episode. Actions
    lie in ``[0, a_max]``."""

    def __init__(self, costs: Sequence[Callable[[float], float]], reward: Callable[[list[float]], float], *,
                 target: float | None, a_max: float, base: float = 0.0, features: Sequence[Sequence[float]] = ()):
        if not costs:
            raise ConfigError("LayerEnv needs at least one layer")
        if not 0 < a_max <= 1:
            raise ConfigError(f"LayerEnv a_max must be in (0, 1], got {a_max}")
        self.costs, self.reward_fn, self.target, self.a_max, self.base = list(costs), reward, target, a_max, base
        self.n = len(self.costs)
        self.full = [c(0.0) for c in self.costs]
        self.total_full = base + sum(self.full)
        extra = [list(f) for f in features] if features else [[] for _ in range(self.n)]
        if len(extra) != self.n:
            raise ConfigError(f"LayerEnv: {len(extra)} feature rows for {self.n} layers")
        self.extra = extra
        if target is not None and self.base + sum(c(a_max) for c in self.costs) > target + 1e-12:
            raise ConfigError(f"LayerEnv: the target {target:g} cannot be met even cutting every layer to the limit "
                              f"({self.base + sum(c(a_max) for c in self.costs):g})")

    @property
    def n_features(self) -> int:
        return 6 + len(self.extra[0])

    def state(self, t: int, actions: list[float]) -> np.ndarray:
        """Position, the layer's share of the resource, the share already
        removed, the share still to remove, the previous action, a bias."""
        total = max(abs(self.total_full), 1e-12)
        done = sum(self.full[i] - self.costs[i](a) for i, a in enumerate(actions)) / total
        need = 0.0 if self.target is None else max(0.0, (self.total_full - self.target) / total - done)
        prev = actions[-1] if actions else 0.0
        return np.array([t / max(1, self.n - 1), self.full[t] / total, done, need, prev, 1.0, *self.extra[t]],
                        dtype=np.float64)

    def lower_bound(self, t: int, actions: list[float]) -> float:
        """The least action at layer ``t`` that keeps the target reachable
        (every later layer cut to ``a_max``)."""
        if self.target is None:
            return 0.0
        spent = self.base + sum(self.costs[i](a) for i, a in enumerate(actions))
        rest = sum(self.costs[i](self.a_max) for i in range(t + 1, self.n))
        allowed = self.target - spent - rest  # what layer t may still cost
        if self.costs[t](0.0) <= allowed + 1e-12:
            return 0.0
        lo, hi = 0.0, self.a_max
        for _ in range(40):  # costs are non-increasing: bisect the least sufficient action
            mid = (lo + hi) / 2
            if self.costs[t](mid) <= allowed + 1e-12:
                hi = mid
            else:
                lo = mid
        return hi

    def resource(self, actions: list[float]) -> float:
        return self.base + sum(c(a) for c, a in zip(self.costs, actions))


class PolicyGradientAgent:
    """Linear-Gaussian policy shared by all layers, trained by REINFORCE."""

    def __init__(self, n_features: int, *, a_max: float, lr: float = 0.05, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.w = np.zeros(n_features)
        self.a_max, self.lr = a_max, lr
        self.baseline: float | None = None
        self.scale = 0.0
        self._m, self._v, self._t = np.zeros(n_features), np.zeros(n_features), 0  # Adam state

    def mean(self, s: np.ndarray) -> tuple[float, float]:
        """(mean action, d mean / d pre-activation)."""
        z = float(self.w @ s)
        sig = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
        return self.a_max * sig, self.a_max * sig * (1.0 - sig)

    def act(self, s: np.ndarray, sigma: float) -> float:
        mu, _ = self.mean(s)
        return float(mu + sigma * self.rng.standard_normal()) if sigma > 0 else mu

    def update(self, states: list[np.ndarray], actions: list[float], reward: float, sigma: float) -> None:
        """One REINFORCE step (Adam): raise the log-likelihood of this
        episode's actions in proportion to its advantage over the running
        baseline (advantages scaled by their running magnitude)."""
        if self.baseline is None:
            self.baseline = reward
            return
        adv = reward - self.baseline
        self.baseline = 0.9 * self.baseline + 0.1 * reward
        self.scale = 0.9 * self.scale + 0.1 * abs(adv) if self.scale else abs(adv)
        if self.scale <= 1e-12:
            return
        adv /= self.scale
        grad = np.zeros_like(self.w)
        for s, a in zip(states, actions):
            mu, dmu = self.mean(s)
            grad += (a - mu) / (sigma ** 2) * dmu * s  # d log N(a; mu, sigma) / dw
        grad *= adv / max(1, len(states))
        self._t += 1
        self._m = 0.9 * self._m + 0.1 * grad
        self._v = 0.999 * self._v + 0.001 * grad ** 2
        m_hat, v_hat = self._m / (1 - 0.9 ** self._t), self._v / (1 - 0.999 ** self._t)
        self.w += self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)


def run_agent(env: LayerEnv, spec: AMCSpec, *, log: Callable[[str], None] | None = None
              ) -> tuple[list[Episode], PolicyGradientAgent]:
    """Train the agent for ``spec.episodes`` episodes; every episode (actions,
    reward, resource) best first, and the agent."""
    agent = PolicyGradientAgent(env.n_features, a_max=env.a_max, lr=spec.lr, seed=spec.seed)
    rng = np.random.default_rng(spec.seed + 1)
    episodes: list[Episode] = []
    learn = max(1, spec.episodes - spec.warmup)
    for e in range(spec.episodes):
        warm = e < spec.warmup
        frac = 0.0 if warm else (e - spec.warmup) / max(1, learn - 1)
        sigma = spec.sigma[0] * (spec.sigma[1] / spec.sigma[0]) ** frac
        states, actions = [], []
        for t in range(env.n):
            s = env.state(t, actions)
            a = float(rng.uniform(0.0, env.a_max)) if warm else agent.act(s, sigma)
            a = min(env.a_max, max(env.lower_bound(t, actions), a, 0.0))
            states.append(s)
            actions.append(a)
        reward = float(env.reward_fn(actions))
        episodes.append(Episode(actions=actions, reward=reward, resource=env.resource(actions)))
        agent.update(states, actions, reward, sigma if not warm else spec.sigma[0])
        if log is not None and (e + 1) % max(1, spec.episodes // 10) == 0:
            best = max(episodes, key=lambda ep: ep.reward)
            log(f"amc episode {e + 1}/{spec.episodes}: reward {reward:.4f}, best {best.reward:.4f}")
    return sorted(episodes, key=lambda ep: -ep.reward), agent


def greedy_policy(env: LayerEnv, agent: PolicyGradientAgent) -> list[float]:
    """The agent's deterministic actions (its means), clipped to the budget."""
    actions: list[float] = []
    for t in range(env.n):
        a = agent.act(env.state(t, actions), 0.0)
        actions.append(min(env.a_max, max(env.lower_bound(t, actions), a, 0.0)))
    return actions

