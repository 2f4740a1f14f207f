"""``AutoConfig``: every setting of an automatic compression search, one
frozen config shared by ``torchslim.auto.auto``, ``torchslim auto`` and the
``auto.search`` recipe stage (registered like every method)."""
from __future__ import annotations

import dataclasses
from typing import Literal

from ..core.config import Config, register_config
from ..core.errors import ConfigError
from ..train import TrainConfig
from .amc import AMCSpec
from .budget import parse_budget
from .objectives import parse_objectives
from .space import SearchSpace
from .timing import LatencySpec

__all__ = ["AutoConfig"]

# Fields that may differ between the workers (or runs) of one study.
RUNTIME_FIELDS = ("n_trials", "timeout", "heartbeat", "grace", "trial_html", "pick")


@register_config("auto.search")
@dataclasses.dataclass(frozen=True)
class AutoConfig(Config):
    """A search for compressed versions of a model meeting ``budget`` (see
    ``torchslim.auto.budget``: ``"max_drop=0.5,speedup>=1.8,bytes<=12k"``),
    optimising ``objectives`` (``accuracy``, ``bytes``, ``latency``) over
    ``space``; the result is the Pareto front of the trials meeting the budget.

    strategy: ``tpe`` or ``nsga2`` (Optuna's multi-objective samplers, with the
      budget as constraints), ``greedy`` (NetAdapt-style
      ``prune.structured(allocation="greedy")`` at speedup targets spread over
      ``space.greedy.speedup``), or ``amc`` (an AMC-style agent choosing per-layer
      ratios from cheap proxies; its best policies become the trials).
    n_trials: trials in all (all workers together; enqueued proposals count).
    timeout: seconds after which no new trial starts (running ones finish).
    finetune: the training template of every fine-tune (epochs and, if given
      a range, lr come from ``space.finetune``).
    latency: runtime, threads, batch sizes and repeats of every latency
      measurement (paired with the baseline).
    pruner: early stopping on the holdout accuracy reported after every
      fine-tune epoch: ``threshold`` (stop when below the accuracy the budget
      allows minus ``prune_margin`` points), ``median``, ``hyperband``,
      ``none``; ``auto``: threshold if the budget bounds accuracy, else median.
    prune_warmup: epochs reported before a trial may be stopped.
    proxies: check a trial's bytes and structure's speed before its
      fine-tune (a trial that cannot meet the budget, or is dominated by the
      front even at the baseline's accuracy, stops there), measure a per-group
      latency table (groups whose cuts save no time are not searched).
    proxy_slack: proxies are trusted to within this fraction.
    seeds: warm-start trials from cheap proxies (tpe/nsga2).
    storage: Optuna storage URL (default ``sqlite:///DIR/study.db``).
    heartbeat / grace: seconds between a trial's heartbeats / before a silent
      trial counts as dead (default 2 x heartbeat); max_retry: reruns of a
      trial whose process died.
    pick: the front point an ``auto.search`` recipe stage continues with (best
      in that objective; default the first objective).
    """

    objectives: tuple[str, ...] | str = ("bytes", "accuracy")
    budget: str = ""
    strategy: Literal["tpe", "nsga2", "greedy", "amc"] = "tpe"
    n_trials: int = 20
    timeout: float | None = None
    space: SearchSpace = SearchSpace()
    finetune: TrainConfig = TrainConfig(epochs=1, lr=5e-4, optimizer="adam", scheduler="cosine")
    latency: LatencySpec = LatencySpec()
    pruner: Literal["auto", "threshold", "median", "hyperband", "none"] = "auto"
    prune_margin: float = 1.0
    prune_warmup: int = 1
    proxies: bool = True
    proxy_slack: float = 0.05
    seeds: int = 2
    startup_trials: int = 6
    population: int = 8
    amc: AMCSpec = AMCSpec()
    seed: int = 0
    storage: str | None = None
    study_name: str = "auto"
    heartbeat: int = 10
    grace: int | None = None
    max_retry: int = 3
    trial_html: bool = True
    torch_latency: bool = False
    pick: Literal["accuracy", "bytes", "latency"] | None = None

    def validate(self) -> None:
        try:
            object.__setattr__(self, "objectives", parse_objectives(self.objectives))
        except ConfigError as e:
            raise ConfigError(f"AutoConfig.{e}") from None
        try:
            budget = parse_budget(self.budget)
        except ConfigError as e:
            raise ConfigError(f"AutoConfig.{e}") from None
        object.__setattr__(self, "budget", budget.text)
        if not (self.wants_bytes or self.wants_latency):
            raise ConfigError("AutoConfig.objectives: accuracy alone needs no compression; add bytes or latency "
                              "(as an objective or a budget constraint such as bytes<=N or speedup>=Y)")
        for f in ("n_trials", "heartbeat", "max_retry", "population", "startup_trials"):
            if getattr(self, f) < (0 if f == "max_retry" else 1):
                raise ConfigError(f"AutoConfig.{f} must be positive, got {getattr(self, f)}")
        for f in ("seeds", "prune_warmup"):
            if getattr(self, f) < 0:
                raise ConfigError(f"AutoConfig.{f} must be >= 0, got {getattr(self, f)}")
        if self.grace is not None and self.grace <= self.heartbeat:
            raise ConfigError(f"AutoConfig.grace ({self.grace} s) must exceed heartbeat ({self.heartbeat} s)")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"AutoConfig.timeout must be positive seconds or null, got {self.timeout}")
        if self.prune_margin < 0 or not 0 <= self.proxy_slack < 1:
            raise ConfigError("AutoConfig: prune_margin must be >= 0 and proxy_slack in [0, 1)")
        if self.pick is not None and self.pick not in self.objectives:
            raise ConfigError(f"AutoConfig.pick: {self.pick!r} is not one of the objectives {list(self.objectives)}")
        if not self.study_name or "/" in self.study_name:
            raise ConfigError(f"AutoConfig.study_name must be a non-empty name without '/', got {self.study_name!r}")

    @property
    def constraints(self):
        return parse_budget(self.budget)

    @property
    def wants_latency(self) -> bool:
        return "latency" in self.objectives or self.constraints.needs_latency()

    @property
    def wants_bytes(self) -> bool:
        return "bytes" in self.objectives or self.constraints.get("bytes") is not None

    def resolved_space(self) -> SearchSpace:
        return self.space.for_goal(wants_latency=self.wants_latency, wants_bytes=self.wants_bytes)

    def latency_spec(self) -> LatencySpec:
        """The latency settings, with every batch size a constraint names."""
        extra = [b for b in self.constraints.batches() if b not in self.latency.batch_sizes]
        return self.latency.replace(batch_sizes=tuple(self.latency.batch_sizes) + tuple(extra)) if extra \
            else self.latency

    def comparable(self) -> dict:
        """What must agree between the workers of one study."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}
