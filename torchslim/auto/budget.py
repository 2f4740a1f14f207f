"""The user's target as constraints: ``"max_drop=0.5,speedup>=1.8,bytes<=12k"``.

One token per constraint, separated by commas:

==================  =============================================================
``max_drop=X``      holdout accuracy at most X points below the baseline's
``accuracy>=X``     holdout accuracy at least X percent
``speedup>=Y``      ONNX Runtime speedup over the baseline (paired timing) at
                    every measured batch size; ``speedup@32>=Y``: batch 32 only
``latency<=X``      milliseconds per call at the first measured batch size;
                    ``latency@32<=X``: at batch 32
``bytes<=N``        bytes of the artifact file on disk (``12k`` = 12,000,
                    ``1.5M`` = 1,500,000)
==================  =============================================================

Accuracy is always judged on the holdout split made from the training data,
never on the test split. ``Constraint.violation(metrics)`` is <= 0 when the
constraint holds and grows with the violation (relative for bytes, speed and
latency, in points for accuracy): the form Optuna's ``constraints_func`` wants.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Literal

from ..core.config import Config
from ..core.errors import ConfigError

__all__ = ["Constraint", "Budget", "parse_budget"]

MISSING_VIOLATION = 1e9  # a constraint whose measurement is missing counts as badly violated
_OPS = {"drop": "<=", "accuracy": ">=", "speedup": ">=", "latency": "<=", "bytes": "<="}
_NAMES = {"max_drop": "drop", "drop": "drop", "accuracy": "accuracy", "speedup": "speedup", "latency": "latency",
          "bytes": "bytes"}
_TOKEN = re.compile(r"^\s*(?P<name>[A-Za-z_]+)(?:@(?P<batch>[^<>=\s]*))?\s*(?P<op><=|>=|=)\s*(?P<value>.*?)\s*$")
_SUFFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}


@dataclasses.dataclass(frozen=True)
class Constraint(Config):
    """One bound: ``metric`` (drop | accuracy | speedup | latency | bytes),
    ``bound`` (points, percent, x, ms or bytes) and, for speedup and latency,
    the batch size it applies to (None: every batch size for speedup, the
    first measured one for latency)."""

    metric: Literal["drop", "accuracy", "speedup", "latency", "bytes"]
    bound: float
    batch: int | None = None

    def validate(self) -> None:
        if not math.isfinite(self.bound):
            raise ConfigError(f"Constraint.bound must be a finite number, got {self.bound}")
        if self.metric == "drop" and self.bound < 0:
            raise ConfigError(f"Constraint.bound: max_drop must be >= 0 accuracy points, got {self.bound}")
        if self.metric == "accuracy" and not 0 < self.bound <= 100:
            raise ConfigError(f"Constraint.bound: accuracy is in percent (0, 100], got {self.bound}")
        if self.metric in ("speedup", "latency", "bytes") and self.bound <= 0:
            raise ConfigError(f"Constraint.bound: {self.metric} must be positive, got {self.bound}")
        if self.batch is not None:
            if self.metric not in ("speedup", "latency"):
                raise ConfigError(f"Constraint.batch: only speedup and latency are measured per batch size, "
                                  f"not {self.metric}")
            if self.batch < 1:
                raise ConfigError(f"Constraint.batch must be a positive batch size, got {self.batch}")

    @property
    def op(self) -> str:
        return _OPS[self.metric]

    @property
    def label(self) -> str:
        """The constraint's name in tables and Optuna attributes."""
        name = "max_drop" if self.metric == "drop" else self.metric
        return f"{name}@{self.batch}" if self.batch is not None else name

    @property
    def text(self) -> str:
        if self.metric == "drop":
            return f"max_drop={self.bound:g}"
        value = f"{int(self.bound)}" if self.metric == "bytes" and self.bound == int(self.bound) else f"{self.bound:g}"
        return f"{self.label}{self.op}{value}"

    def value(self, metrics: dict) -> float | None:
        """The measured quantity this constraint bounds, or None if missing."""
        if self.metric == "drop":
            return metrics.get("drop_points")
        if self.metric == "accuracy":
            acc = metrics.get("holdout_accuracy")
            return None if acc is None else 100.0 * acc
        if self.metric == "bytes":
            return metrics.get("size_bytes")
        per_batch = metrics.get("speedup" if self.metric == "speedup" else "latency_ms") or {}
        if self.batch is not None:
            return per_batch.get(str(self.batch))
        if not per_batch:
            return None
        if self.metric == "speedup":
            return min(per_batch.values())
        return next(iter(per_batch.values()))  # the first measured batch size

    def violation(self, metrics: dict) -> float:
        """<= 0 when satisfied; how far off otherwise (points for accuracy,
        a fraction of the bound for the others)."""
        v = self.value(metrics)
        if v is None:
            return MISSING_VIOLATION
        if self.metric in ("drop", "accuracy"):
            v = round(float(v), 4)  # accuracies are float32 ratios: 99.199998 is 99.2 (4 decimals: 1e6 examples)
            return (v - self.bound) if self.op == "<=" else (self.bound - v)
        return (v - self.bound) / self.bound if self.op == "<=" else (self.bound - v) / self.bound


@dataclasses.dataclass(frozen=True)
class Budget(Config):
    """A conjunction of constraints (see the module doc for the text form)."""

    constraints: tuple[Constraint, ...] = ()

    def validate(self) -> None:
        seen = set()
        for c in self.constraints:
            if c.label in seen:
                raise ConfigError(f"Budget.constraints: {c.label} is given twice")
            seen.add(c.label)

    @property
    def text(self) -> str:
        return ",".join(c.text for c in self.constraints)

    def violations(self, metrics: dict) -> dict[str, float]:
        return {c.label: c.violation(metrics) for c in self.constraints}

    def feasible(self, metrics: dict) -> bool:
        return all(v <= 0 for v in self.violations(metrics).values())

    def needs_latency(self) -> bool:
        return any(c.metric in ("speedup", "latency") for c in self.constraints)

    def batches(self) -> list[int]:
        return sorted({c.batch for c in self.constraints if c.batch is not None})

    def get(self, metric: str, batch: int | None = None) -> Constraint | None:
        for c in self.constraints:
            if c.metric == metric and c.batch == batch:
                return c
        return None


def _number(text: str, token: str, *, suffix: bool) -> float:
    m = re.fullmatch(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]?)[Bb]?", text) if suffix else \
        re.fullmatch(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)()", text)
    if not m or m.group(2) not in _SUFFIX:
        hint = " (a number, optionally with k or M: 12000, 12k, 1.5M)" if suffix else " (a number)"
        raise ConfigError(f"budget: {token!r}: {text!r} is not a number{hint}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def parse_budget(text: "str | Budget | None") -> Budget:
    """A Budget from its text form (``"max_drop=0.5,speedup>=1.8,bytes<=12k"``).
    Every error names the offending token and says what is allowed."""
    if text is None:
        return Budget()
    if isinstance(text, Budget):
        return text
    if not isinstance(text, str):
        raise ConfigError(f"budget: expected a string like 'max_drop=0.5,speedup>=1.8', got {text!r}")
    if not text.strip():
        return Budget()
    out: list[Constraint] = []
    seen: dict[str, str] = {}
    for token in text.split(","):
        if not token.strip():
            raise ConfigError(f"budget: an empty constraint between commas in {text!r}")
        m = _TOKEN.match(token)
        if not m:
            raise ConfigError(f"budget: {token.strip()!r} is not NAME<=VALUE, NAME>=VALUE or max_drop=VALUE "
                              "(example: speedup>=1.8)")
        tok = token.strip()
        raw_name, op, value, batch_text = m.group("name"), m.group("op"), m.group("value"), m.group("batch")
        metric = _NAMES.get(raw_name)
        if metric is None:
            raise ConfigError(f"budget: {tok!r}: unknown constraint {raw_name!r}; use max_drop, accuracy, speedup, "
                              "latency or bytes")
        if raw_name == "drop":
            raise ConfigError(f"budget: {tok!r}: write max_drop=X (accuracy points below the baseline)")
        want = _OPS[metric]
        if metric == "drop":
            if op == ">=":
                raise ConfigError(f"budget: {tok!r}: max_drop is an upper bound; write max_drop={value}")
        elif op != want:
            kind = "a lower bound" if want == ">=" else "an upper bound"
            raise ConfigError(f"budget: {tok!r}: {raw_name} is {kind}; write {raw_name}{want}{value}")
        batch = None
        if batch_text is not None:
            if metric not in ("speedup", "latency"):
                raise ConfigError(f"budget: {tok!r}: only speedup and latency take @BATCH")
            if not batch_text.isdigit() or int(batch_text) < 1:
                raise ConfigError(f"budget: {tok!r}: batch {batch_text!r} is not a positive integer")
            batch = int(batch_text)
        if not value:
            raise ConfigError(f"budget: {tok!r}: the value is missing")
        bound = _number(value, tok, suffix=metric == "bytes")
        label = ("max_drop" if metric == "drop" else metric) + (f"@{batch}" if batch else "")
        if label in seen:
            raise ConfigError(f"budget: {tok!r} repeats {seen[label]!r}")
        seen[label] = tok
        try:
            out.append(Constraint(metric=metric, bound=bound, batch=batch))
        except ConfigError as e:
            raise ConfigError(f"budget: {tok!r}: {str(e).split(': ', 1)[-1]}") from None
    return Budget(constraints=tuple(out))
