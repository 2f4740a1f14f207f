"""torchslim: compress PyTorch models (prune, quantize, distill, decompose,
encode), measured honestly, exported to a runtime that delivers the gain.

The public surface is small; everything heavy is imported lazily so that
``import torchslim`` stays light.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "save": ("torchslim.artifact", "save"),
    "load": ("torchslim.artifact", "load"),
    "evaluate": ("torchslim.analysis.evaluate", "evaluate"),
    "profile": ("torchslim.analysis.profile", "profile"),
    "latency": ("torchslim.analysis.latency", "latency"),
    "fit": ("torchslim.train", "fit"),
    "TrainConfig": ("torchslim.train", "TrainConfig"),
    "Scope": ("torchslim.core.scope", "Scope"),
    "build_model": ("torchslim.zoo.models", "build_model"),
    "load_model": ("torchslim.zoo.sources", "load_model"),
    "load_dataset": ("torchslim.zoo.data", "load_dataset"),
    "run_recipe": ("torchslim.recipe", "run_recipe"),
}


def _subpackages() -> list[str]:
    """Every subpackage is a namespace (``torchslim.prune``, ...): found, not listed."""
    import pkgutil

    return sorted(i.name for i in pkgutil.iter_modules(__path__) if i.ispkg)


__all__ = sorted(list(_LAZY) + _subpackages())


def __getattr__(name: str):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    if name in _subpackages():
        value = importlib.import_module(f"torchslim.{name}")
        globals()[name] = value
        return value
    raise AttributeError(f"module 'torchslim' has no attribute {name!r}")
