"""What is elastic in a model: its channel groups (which layers produce,
normalise and read each group's channels), its skippable blocks grouped in
stages, its depthwise convolutions (elastic kernels), and the units a
per-layer latency table times. A plan names layers by their path in the
source model; ``supernet.py`` turns a model plus its plan into a supernet.

Plans come from a function registered per model class
(``register_elastic_plan``); ``zoo_plans.py`` registers the zoo's ResNet and
MobileNetV2. A model of another class needs its own plan function.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch.nn as nn

from ..core.errors import ModelError

__all__ = ["GroupPlan", "StagePlan", "ElasticPlan", "register_elastic_plan", "elastic_plan"]


@dataclasses.dataclass
class GroupPlan:
    """One group of coupled channels. ``inner``: the group lives inside one
    block (a ResNet block's middle width, a MobileNetV2 expansion) and is
    sized with the inner multipliers; else it is a stage width (a residual
    stream, read by several blocks). ``block``: the skippable block owning an
    inner group (its choice is moot when the block is skipped)."""

    name: str
    size: int
    producers: list[str] = dataclasses.field(default_factory=list)  # convs whose output channels these are
    norms: list[str] = dataclasses.field(default_factory=list)  # BatchNorms over these channels
    consumers: list[str] = dataclasses.field(default_factory=list)  # convs / linears reading them as inputs
    depthwise: list[str] = dataclasses.field(default_factory=list)  # depthwise convs over them
    inner: bool = False
    block: str | None = None
    elastic: bool = True


@dataclasses.dataclass
class StagePlan:
    """Consecutive blocks at one resolution and width; the last
    ``len(blocks) - min_depth`` may be skipped (identity shortcuts)."""

    name: str
    blocks: list[str]
    min_depth: int


@dataclasses.dataclass
class ElasticPlan:
    groups: list[GroupPlan]
    stages: list[StagePlan]
    kernels: dict[str, str | None]  # depthwise conv path -> the skippable block owning it (or None)
    units: list[tuple[str, list[str]]]  # latency units in forward order: (name, module paths run in sequence)

    def group(self, name: str) -> GroupPlan:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)


_PLANS: dict[type, Callable[[nn.Module], ElasticPlan]] = {}


def register_elastic_plan(cls: type):
    """Decorator: ``fn(model) -> ElasticPlan`` describes models of class ``cls``."""

    def deco(fn):
        _PLANS[cls] = fn
        return fn

    return deco


def elastic_plan(model: nn.Module) -> ElasticPlan:
    from . import zoo_plans  # noqa: F401  (registers the zoo CNNs)

    for klass in type(model).__mro__:
        if klass in _PLANS:
            return _PLANS[klass](model)
    known = sorted(c.__name__ for c in _PLANS)
    raise ModelError(f"no elastic plan for {type(model).__name__}; supernets are built for {known} (zoo resnet8, "
                     "mobilenetv2), or register one with torchslim.nas.register_elastic_plan")
