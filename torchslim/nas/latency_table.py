"""A per-layer latency lookup table: the cheap latency proxy of the search.

The plan splits a model into units run in sequence (stem, every block, head;
``plan.ElasticPlan.units``). A unit's latency depends only on its own choices
(the channel counts and kernel sizes of its layers), so each distinct unit
choice is timed once, alone, on the deployment runtime (ONNX Runtime by
default: the unit is exported and run as its own session, on the activation
shapes it sees inside the model) and a subnet's latency is predicted as the
sum over its units. A skipped block costs nothing.

A sum of separately run pieces counts the runtime's fixed cost of a call
once per unit, where the whole model pays it once: that cost (``overhead``,
timed on a session running one ReLU on the model's input) is taken off every
unit and added back once. What the pieces still miss (fusions and cache
effects across units) is a scale per batch size, ``calibrate``d on subnets
measured whole as the median ratio measured / predicted (robust to a noisy
measurement; no intercept to go wrong). ``validate`` measures a few subnets
whole and reports the rank correlation (Spearman) of prediction and
measurement per batch size: the evidence that ranking by the proxy is sound.

Entries are plain JSON (``to_dict`` / ``from_dict``), so a rerun reuses them.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..analysis.latency import RUNTIMES, time_fn
from ..core.errors import ConfigError
from .layers import DynamicBatchNorm2d, DynamicConv2d, DynamicLinear, ElasticBlock
from .space import config_key
from .supernet import ElasticSupernet

__all__ = ["LatencyTable", "spearman"]


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0  # ties share their mean rank
        i = j + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation of two equally long sequences (nan if either is constant)."""
    if len(a) != len(b) or len(a) < 2:
        raise ConfigError(f"spearman needs two sequences of equal length >= 2, got {len(a)} and {len(b)}")
    ra, rb = _ranks(list(a)), _ranks(list(b))
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else float("nan")


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


class LatencyTable:
    """Per-unit latency table of ``supernet``'s subnets on ``input_sets``
    (input tuples of the whole model, e.g. batch 1 and batch 32), timed with
    ``torchslim.analysis.latency.time_fn`` (``runtime``, ``threads``, the
    fastest of ``repeats`` calls). Predictions and measurements are lists of
    milliseconds, one per input set."""

    def __init__(self, supernet: ElasticSupernet, input_sets, *, runtime: str = "onnxruntime",
                 threads: int | None = None, repeats: int | list[int] = 30, warmup: int = 5):
        if runtime not in RUNTIMES:
            raise ConfigError(f"runtime {runtime!r} is unknown; use one of {list(RUNTIMES)}")
        self.supernet = supernet
        self.input_sets = [tuple(x) if isinstance(x, (tuple, list)) else (x,) for x in input_sets]
        if not self.input_sets:
            raise ConfigError("LatencyTable needs at least one input set")
        self.runtime, self.threads, self.repeats, self.warmup = runtime, threads, repeats, warmup
        self.entries: dict[str, list[float]] = {}
        self.scale = [1.0] * len(self.input_sets)  # measured / predicted, per input set (``calibrate``)
        self.overhead: list[float] | None = None  # the runtime's fixed cost of one call, per input set
        self.measured = 0  # units timed
        self.full_measured = 0  # whole subnets timed

    # ------------------------------------------------------------ keys
    def _unit_roots(self, paths: list[str]) -> list[nn.Module]:
        return [self.supernet.net.get_submodule(p) for p in paths]

    def unit_keys(self, config: dict) -> list[str | None]:
        """The table key of every unit under ``config`` (None: a skipped block),
        from the active shapes of its elastic layers: no copy, no run."""
        keys: list[str | None] = []
        with self.supernet.using(config):
            for name, paths in self.supernet.plan.units:
                parts = []
                skipped = False
                for root in self._unit_roots(paths):
                    if isinstance(root, ElasticBlock) and not root.active:
                        skipped = True
                        continue
                    for m in root.modules():
                        if isinstance(m, DynamicConv2d):
                            w = m.active_weight()
                            parts.append(("c", *w.shape))
                        elif isinstance(m, DynamicBatchNorm2d):
                            parts.append(("b", m.group.active if m.group else -1))
                        elif isinstance(m, DynamicLinear):
                            parts.append(("l", m.in_group.active if m.in_group else -1))
                keys.append(None if skipped and not parts else f"{name}|{parts}")
        return keys

    def _key_of_sets(self) -> str:
        return repr([[tuple(t.shape) for t in s] for s in self.input_sets])

    # ------------------------------------------------------------ measuring
    def _timer(self):
        return time_fn(self.input_sets, runtime=self.runtime, threads=self.threads, repeats=self.repeats,
                       warmup=self.warmup)

    @torch.no_grad()
    def _fill(self, config: dict, keys: list[str | None]) -> None:
        """Time the units of ``config`` missing from the table."""
        missing = [i for i, k in enumerate(keys) if k is not None and k not in self.entries]
        if not missing:
            return
        subnet = self.supernet.extract(config)
        acts = [list(s) for s in self.input_sets]  # the input of the current unit, per input set
        for i, (name, paths) in enumerate(self.supernet.plan.units):
            unit = nn.Sequential(*[subnet.get_submodule(p) for p in paths]).eval()
            if i in missing:
                ms = time_fn([tuple(a) for a in acts], runtime=self.runtime, threads=self.threads,
                             repeats=self.repeats, warmup=self.warmup)(unit)
                self.entries[keys[i]] = [float(v) for v in ms]
                self.measured += 1
            acts = [[unit(*a)] for a in acts]

    def unit_latencies(self, config: dict) -> list[tuple[str, list[float]]]:
        """(unit name, ms per input set) of every unit of ``config`` (0 if skipped)."""
        config = self.supernet.space.validate(config)
        keys = self.unit_keys(config)
        self._fill(config, keys)
        zero = [0.0] * len(self.input_sets)
        return [(name, self.entries[k] if k is not None else zero)
                for (name, _), k in zip(self.supernet.plan.units, keys)]

    def call_overhead(self) -> list[float]:
        """Milliseconds of a call that does (almost) nothing: one ReLU on the
        model's input, per input set; timed once."""
        if self.overhead is None:
            self.overhead = [float(v) for v in self._timer()(nn.ReLU())]
        return self.overhead

    def raw(self, config: dict) -> list[float]:
        """``config``'s unit latencies summed per input set, each less the
        call overhead, plus the overhead once (uncalibrated)."""
        per = self.unit_latencies(config)
        over = self.call_overhead()
        return [over[j] + sum(max(ms[j] - over[j], 0.0) for _, ms in per if any(ms))
                for j in range(len(self.input_sets))]

    def predict(self, config: dict) -> list[float]:
        """Predicted milliseconds of ``config`` per input set: ``scale * raw``."""
        return [b * r for b, r in zip(self.scale, self.raw(config))]

    def measure(self, config: dict) -> list[float]:
        """Milliseconds of the whole extracted subnet per input set (timed, not predicted)."""
        self.full_measured += 1
        return [float(v) for v in self._timer()(self.supernet.extract(config))]

    # ------------------------------------------------------------ calibration
    def calibrate(self, configs: list[dict], measured: list[list[float]] | None = None) -> list[list[float]]:
        """Set the scale per input set to the median of measured / raw over
        ``configs`` measured whole (``measured``, or timed now); returns the
        measurements."""
        if not configs:
            raise ConfigError("calibrate needs at least one config")
        measured = measured if measured is not None else [self.measure(c) for c in configs]
        raws = [self.raw(c) for c in configs]
        self.scale = [_median([m[j] / r[j] for r, m in zip(raws, measured) if r[j] > 0] or [1.0])
                      for j in range(len(self.input_sets))]
        return measured

    def validate(self, configs: list[dict], measured: list[list[float]] | None = None) -> dict:
        """Predicted vs measured latency of ``configs`` (measured whole now
        unless given): per input set, the Spearman rank correlation, the mean
        absolute relative error, and the pairs."""
        measured = measured if measured is not None else [self.measure(c) for c in configs]
        preds = [self.predict(c) for c in configs]
        out = {"n": len(configs), "per_input_set": []}
        for j, s in enumerate(self.input_sets):
            p, m = [x[j] for x in preds], [x[j] for x in measured]
            out["per_input_set"].append({
                "batch_size": int(s[0].shape[0]) if s and hasattr(s[0], "shape") else None,
                "spearman": spearman(p, m) if len(p) >= 2 else float("nan"),
                "mean_abs_rel_error": sum(abs(a - b) / b for a, b in zip(p, m)) / len(m),
                "predicted_ms": p, "measured_ms": m})
        out["configs"] = [config_key(c) for c in configs]
        return out

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "threads": self.threads, "inputs": self._key_of_sets(),
                "entries": self.entries, "overhead": self.overhead, "scale": self.scale}

    def load_dict(self, data: dict) -> "LatencyTable":
        """Reuse entries timed before with the same runtime, threads and input shapes (others are ignored)."""
        if (data.get("runtime"), data.get("threads"), data.get("inputs")) == (self.runtime, self.threads,
                                                                                 self._key_of_sets()):
            self.entries.update({k: list(v) for k, v in data.get("entries", {}).items()})
            self.scale = list(data.get("scale") or self.scale)
            self.overhead = data.get("overhead") or self.overhead
        return self
