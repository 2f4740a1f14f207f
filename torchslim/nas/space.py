"""The search space of a supernet: named dimensions, each with its ordered
choices (small to large). A subnet config is a plain dict ``{dimension:
choice}`` (JSON as is):

* ``width.<group>``: channels kept in a channel group (leading channels);
* ``depth.<stage>``: blocks kept in a stage (the first ones);
* ``kernel.<layer>``: kernel size of a depthwise convolution.

Choices that a config makes moot (the width or kernel of a skipped block) are
set to their largest value by ``canonical``, so equal subnets have equal
configs (and one cache entry). Sampling, mutation and crossover draw from a
``torch.Generator``: a seed reproduces a search.
"""
from __future__ import annotations

import dataclasses
import json

import torch

from ..core.errors import ConfigError

__all__ = ["Dim", "SearchSpace", "config_key"]


@dataclasses.dataclass(frozen=True)
class Dim:
    name: str
    choices: tuple[int, ...]
    block: str | None = None  # moot when this skippable block is skipped
    stage: str | None = None  # for a depth dimension: its stage
    blocks: tuple[str, ...] = ()  # for a depth dimension: the stage's blocks, in order


def config_key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


class SearchSpace:
    def __init__(self, dims: list[Dim]):
        self.dims = list(dims)
        self.by_name = {d.name: d for d in self.dims}
        self._block_depth = {}  # block path -> (depth dim name, position in its stage)
        for d in self.dims:
            for i, b in enumerate(d.blocks):
                self._block_depth[b] = (d.name, i)

    def __len__(self) -> int:
        return len(self.dims)

    @property
    def size(self) -> int:
        """Number of configs (moot combinations counted)."""
        n = 1
        for d in self.dims:
            n *= len(d.choices)
        return n

    def max_config(self) -> dict:
        return {d.name: d.choices[-1] for d in self.dims}

    def min_config(self) -> dict:
        return self.canonical({d.name: d.choices[0] for d in self.dims})

    def block_active(self, config: dict, block: str) -> bool:
        if block not in self._block_depth:
            return True
        name, pos = self._block_depth[block]
        return config[name] > pos

    def canonical(self, config: dict) -> dict:
        """``config`` with moot choices set to their largest value."""
        out = dict(config)
        for d in self.dims:
            if d.block is not None and not self.block_active(out, d.block):
                out[d.name] = d.choices[-1]
        return out

    def validate(self, config: dict, where: str = "config") -> dict:
        """Check a config names every dimension with an allowed choice;
        returns its canonical form."""
        if not isinstance(config, dict):
            raise ConfigError(f"{where}: a subnet config is a mapping {{dimension: choice}}, got "
                              f"{type(config).__name__}")
        missing = [d.name for d in self.dims if d.name not in config]
        unknown = sorted(set(config) - set(self.by_name))
        if missing or unknown:
            raise ConfigError(f"{where}: missing dimension(s) {missing}, unknown {unknown}; the dimensions are "
                              f"{[d.name for d in self.dims]}")
        for d in self.dims:
            if config[d.name] not in d.choices:
                raise ConfigError(f"{where}[{d.name!r}]: {config[d.name]!r} is not a choice; use one of "
                                  f"{list(d.choices)}")
        return self.canonical({d.name: int(config[d.name]) for d in self.dims})

    def sample(self, generator: torch.Generator | None = None) -> dict:
        """A config with every choice drawn uniformly."""
        return self.canonical({d.name: d.choices[int(torch.randint(len(d.choices), (1,), generator=generator))]
                               for d in self.dims})

    def mutate(self, config: dict, prob: float, generator: torch.Generator | None = None) -> dict:
        """Each choice redrawn uniformly with probability ``prob``."""
        out = dict(config)
        for d in self.dims:
            if float(torch.rand((), generator=generator)) < prob:
                out[d.name] = d.choices[int(torch.randint(len(d.choices), (1,), generator=generator))]
        return self.canonical(out)

    def crossover(self, a: dict, b: dict, generator: torch.Generator | None = None) -> dict:
        """Each choice taken from ``a`` or ``b`` with equal probability."""
        return self.canonical({d.name: (a if float(torch.rand((), generator=generator)) < 0.5 else b)[d.name]
                               for d in self.dims})

    def to_dict(self) -> dict:
        return {d.name: list(d.choices) for d in self.dims}
