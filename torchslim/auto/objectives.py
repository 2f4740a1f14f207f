"""What a search optimises: ``accuracy`` (holdout accuracy in percent,
maximised), ``bytes`` (bytes of the artifact file on disk, minimised) and
``latency`` (the trial's time as a fraction of the baseline's on the target
runtime, from paired timing, at the worst measured batch size: ``1 /
min(speedup)``, minimised; a ratio is robust to the machine's drift, where
milliseconds measured minutes apart are not)."""
from __future__ import annotations

from typing import Iterable

from ..core.errors import ConfigError

__all__ = ["OBJECTIVES", "parse_objectives", "objective_values"]

OBJECTIVES = {"accuracy": "maximize", "bytes": "minimize", "latency": "minimize"}


def parse_objectives(value: "str | Iterable[str]") -> tuple[str, ...]:
    """``"bytes,accuracy"`` or a list of names -> a tuple; errors name the bad entry."""
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    if not items or any(not isinstance(v, str) for v in items):
        raise ConfigError(f"objectives: expected names from {list(OBJECTIVES)}, got {value!r}")
    out: list[str] = []
    for v in items:
        if v not in OBJECTIVES:
            raise ConfigError(f"objectives: unknown objective {v!r}; use some of {list(OBJECTIVES)}")
        if v in out:
            raise ConfigError(f"objectives: {v!r} is given twice")
        out.append(v)
    return tuple(out)


def directions(objectives: Iterable[str]) -> list[str]:
    return [OBJECTIVES[o] for o in objectives]


def objective_value(name: str, metrics: dict) -> float:
    """The value of one objective from a trial's metrics."""
    if name == "accuracy":
        return 100.0 * float(metrics["holdout_accuracy"])
    if name == "bytes":
        return float(metrics["size_bytes"])
    if name == "latency":
        speed = metrics.get("speedup") or {}
        if not speed:
            raise ConfigError("objective latency: the trial has no latency measurement")
        return 1.0 / min(speed.values())
    raise ConfigError(f"unknown objective {name!r}; use one of {list(OBJECTIVES)}")


def objective_values(objectives: Iterable[str], metrics: dict) -> list[float]:
    return [objective_value(o, metrics) for o in objectives]
