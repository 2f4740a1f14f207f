"""Scope: which layers a method touches. One object, the same for every method.

Semantics (precise, because "ignored" layers are a classic source of bugs):

* A module is *in scope* when it matches the include rules and no exclude rule.
  With no include rule at all, every module of a supported type is included.
* ``names`` match a qualified module name exactly (``"features.0"``);
  ``patterns`` are regular expressions matched with ``re.fullmatch`` against the
  qualified name; ``types`` are class names (``"Linear"``, ``"Conv2d"``) matched
  against the module's class and its bases.
* Exclusion covers only the excluded module's *own* parameters. A structured
  pruner that removes a channel group still slices an excluded module's
  inputs when a coupled in-scope layer's output channels are removed; to keep a
  whole group intact, exclude the layer that *produces* the channels. Methods
  document where they differ from this.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Iterator

import torch.nn as nn

from .config import Config


@dataclasses.dataclass(frozen=True)
class Scope(Config):
    names: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    exclude_names: tuple[str, ...] = ()
    exclude_patterns: tuple[str, ...] = ()
    exclude_types: tuple[str, ...] = ()

    def validate(self) -> None:
        for field in ("patterns", "exclude_patterns"):
            for p in getattr(self, field):
                try:
                    re.compile(p)
                except re.error as e:
                    from .errors import ConfigError

                    raise ConfigError(f"Scope.{field}: {p!r} is not a valid regular expression ({e})") from None

    @staticmethod
    def _type_match(module: nn.Module, types: tuple[str, ...]) -> bool:
        names = {k.__name__ for k in type(module).__mro__}
        return any(t in names for t in types)

    def matches(self, name: str, module: nn.Module) -> bool:
        has_include = bool(self.names or self.patterns or self.types)
        included = (not has_include) or (
            name in self.names
            or any(re.fullmatch(p, name) for p in self.patterns)
            or self._type_match(module, self.types)
        )
        if not included:
            return False
        if name in self.exclude_names:
            return False
        if any(re.fullmatch(p, name) for p in self.exclude_patterns):
            return False
        if self.exclude_types and self._type_match(module, self.exclude_types):
            return False
        return True

    def select(
        self, model: nn.Module, supported: tuple[type, ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
    ) -> Iterator[tuple[str, nn.Module]]:
        """Yield (qualified name, module) for every supported module in scope."""
        for name, module in model.named_modules():
            if supported and not isinstance(module, supported):
                continue
            if self.matches(name, module):
                yield name, module

    def check_names(self, model: nn.Module) -> None:
        """Raise if an explicitly named layer does not exist (a typo would
        otherwise silently select nothing)."""
        from .errors import ConfigError

        existing = {n for n, _ in model.named_modules()}
        for field in ("names", "exclude_names"):
            for n in getattr(self, field):
                if n not in existing:
                    close = [e for e in existing if n.split(".")[-1] in e][:5]
                    raise ConfigError(
                        f"Scope.{field}: the model has no layer named {n!r}"
                        + (f"; did you mean one of {close}?" if close else "; see `torchslim profile` for layer names")
                    )
