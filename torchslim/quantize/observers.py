"""Observers: watch tensors during calibration and propose a quantization
range. Plain Python objects (not modules), so they never leak into a state
dict or an artifact.

* ``minmax``          running min / max
* ``moving_average``  exponential moving average of per-batch min / max
* ``percentile``      the p-th / (100-p)-th percentiles of the seen values
* ``mse``             the clipping range minimising the fake-quant MSE
* ``kl``              the TensorRT entropy threshold: the clip minimising
                      KL(P || Q) between the value histogram and its quantized version

Sample-based observers keep a bounded random sample of the values (and the
exact min/max); ``weight_qparams`` gives weight ranges directly (min/max or MSE).
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.errors import ConfigError
from .kernels import QuantSpec, expand_param, fake_quantize, qparams_from_range, reduce_minmax

__all__ = ["Observer", "MinMaxObserver", "MovingAverageObserver", "PercentileObserver", "MSEObserver",
           "KLObserver", "make_observer", "OBSERVERS", "mse_range", "kl_threshold", "weight_qparams"]


class Observer:
    def __init__(self, spec: QuantSpec):
        self.spec = spec
        self.count = 0

    def observe(self, x: torch.Tensor) -> None:
        raise NotImplementedError

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.count == 0:
            raise ConfigError(f"{type(self).__name__} saw no data; run calibration batches through the model first")
        lo, hi = self.range()
        return qparams_from_range(lo, hi, self.spec)


class MinMaxObserver(Observer):
    def __init__(self, spec: QuantSpec):
        super().__init__(spec)
        self.lo = self.hi = None

    def observe(self, x):
        lo, hi = reduce_minmax(x, self.spec)
        self.lo = lo if self.lo is None else torch.minimum(self.lo, lo)
        self.hi = hi if self.hi is None else torch.maximum(self.hi, hi)
        self.count += 1

    def range(self):
        return self.lo, self.hi


class MovingAverageObserver(MinMaxObserver):
    def __init__(self, spec: QuantSpec, momentum: float = 0.01):
        super().__init__(spec)
        self.momentum = momentum

    def observe(self, x):
        lo, hi = reduce_minmax(x, self.spec)
        if self.lo is None:
            self.lo, self.hi = lo, hi
        else:
            self.lo = self.lo + self.momentum * (lo - self.lo)
            self.hi = self.hi + self.momentum * (hi - self.hi)
        self.count += 1


class _SampleObserver(Observer):
    """Keeps exact min/max and up to ``max_samples`` values (a seeded random
    subset of every batch). Per-tensor only (activations)."""

    per_batch = 1 << 16
    max_samples = 1 << 20

    def __init__(self, spec: QuantSpec):
        if spec.granularity != "tensor":
            raise ConfigError(f"{type(self).__name__} supports per-tensor activations only; "
                              "use weight_qparams(..., method='mse') for per-channel weights")
        super().__init__(spec)
        self.samples: list[torch.Tensor] = []
        self.lo = self.hi = None
        self.gen = torch.Generator().manual_seed(0)

    def observe(self, x):
        flat = x.detach().float().reshape(-1)
        lo, hi = flat.min(), flat.max()
        self.lo = lo if self.lo is None else torch.minimum(self.lo, lo)
        self.hi = hi if self.hi is None else torch.maximum(self.hi, hi)
        if flat.numel() > self.per_batch:
            flat = flat[torch.randint(flat.numel(), (self.per_batch,), generator=self.gen)]
        self.samples.append(flat.clone())
        self.count += 1

    def values(self) -> torch.Tensor:
        v = torch.cat(self.samples)
        if v.numel() > self.max_samples:
            v = v[torch.randperm(v.numel(), generator=self.gen)[: self.max_samples]]
        return v


class PercentileObserver(_SampleObserver):
    def __init__(self, spec: QuantSpec, percentile: float = 99.99):
        if not 50 < percentile <= 100:
            raise ConfigError(f"percentile must be in (50, 100], got {percentile}")
        super().__init__(spec)
        self.percentile = percentile

    def range(self):
        v = self.values().numpy().astype(np.float64)
        lo = np.percentile(v, 100 - self.percentile)
        hi = np.percentile(v, self.percentile)
        return torch.tensor(min(lo, 0.0), dtype=torch.float32), torch.tensor(max(hi, 0.0), dtype=torch.float32)


def mse_range(x: torch.Tensor, spec: QuantSpec, *, grid: int = 100, min_ratio: float = 0.2):
    """The (lo, hi) per quantization unit minimising ||x - fq(x)||^2 over
    clipping ratios alpha in [min_ratio, 1] of the min/max range."""
    x = x.detach().float()
    lo0, hi0 = reduce_minmax(x, spec)
    lo0, hi0 = torch.clamp(lo0, max=0), torch.clamp(hi0, min=0)
    best_err = best_lo = best_hi = None
    for alpha in torch.linspace(min_ratio, 1.0, grid):
        lo, hi = lo0 * alpha, hi0 * alpha
        scale, zp = qparams_from_range(lo, hi, spec)
        err = (fake_quantize(x, expand_param(scale, x, spec), expand_param(zp, x, spec), spec.qmin, spec.qmax) - x) ** 2
        if spec.granularity == "tensor":
            err = err.sum()
        elif spec.granularity == "channel":
            err = err.reshape(err.shape[0], -1).sum(1)
        else:
            err = _group_sum(err, spec)
        if best_err is None:
            best_err, best_lo, best_hi = err, lo, hi
        else:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_lo, best_hi = torch.where(better, lo, best_lo), torch.where(better, hi, best_hi)
    return best_lo, best_hi


def _group_sum(err: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    rows = err.reshape(err.shape[0], -1)
    k, g = rows.shape[1], spec.group_size
    ng = -(-k // g)
    rows = torch.nn.functional.pad(rows, (0, ng * g - k))
    return rows.reshape(rows.shape[0], ng, g).sum(2)


class MSEObserver(_SampleObserver):
    def range(self):
        return mse_range(self.values(), self.spec)


def kl_threshold(values: np.ndarray, levels: int, *, bins: int = 2048, stride: int = 4) -> float:
    """TensorRT's entropy calibration: the clipping threshold t for |values|
    minimising KL(P || Q), P the histogram clipped at t (outliers folded into
    the last bin) and Q that histogram merged into ``levels`` bins and spread
    back over its non-empty bins. Exact zeros (e.g. after ReLU) are left out:
    zero is exactly representable, and its spike would otherwise dominate P."""
    a = np.abs(values.astype(np.float64))
    a = a[a > 0]
    amax = float(a.max()) if a.size else 0.0
    if amax == 0.0:
        return 0.0
    hist, edges = np.histogram(a, bins=bins, range=(0.0, amax))
    hist = hist.astype(np.float64)
    best_kl, best_i = np.inf, bins
    for i in range(levels, bins + 1, stride):
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()
        nonzero = hist[:i] > 0
        chunk = (np.arange(i) * levels) // i
        sums = np.bincount(chunk, weights=hist[:i], minlength=levels)
        counts = np.bincount(chunk, weights=nonzero.astype(np.float64), minlength=levels)
        q = np.where(nonzero, sums[chunk] / np.maximum(counts[chunk], 1), 0.0)
        if p.sum() == 0 or q.sum() == 0:
            continue
        p /= p.sum()
        q /= q.sum()
        m = p > 0
        kl = float(np.sum(p[m] * np.log(p[m] / np.maximum(q[m], 1e-12))))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(edges[best_i]) if best_i < len(edges) else amax


class KLObserver(_SampleObserver):
    """Entropy calibration. Symmetric specs clip |x| at one threshold. For
    asymmetric specs each side of zero gets its own threshold with its share
    of the levels (proportional to its range), so a spike at a non-zero value
    on one side (e.g. the background of a normalised image) is never clipped
    by the other side's statistics. Each threshold is floored at the
    ``floor_percentile`` of that side's magnitudes: the TensorRT criterion
    compares shapes, not clipping error, and degenerates when much of the mass
    sits at the extreme (it would clip a spike away); the floor caps the
    clipped fraction at 0.1%."""

    floor_percentile = 99.9

    def _threshold(self, side: np.ndarray, levels: int) -> float:
        if side.size == 0:
            return 0.0
        return max(kl_threshold(side, levels), float(np.percentile(side, self.floor_percentile)))

    def range(self):
        v = self.values().numpy()
        spec = self.spec
        total = spec.qmax - spec.qmin
        if spec.symmetric:
            t = self._threshold(np.abs(v), max(2, total // 2))
            return torch.clamp(self.lo, min=-t, max=0.0), torch.clamp(self.hi, min=0.0, max=t)
        lo, hi = float(min(self.lo, 0.0)), float(max(self.hi, 0.0))
        if hi - lo == 0:
            return torch.tensor(0.0), torch.tensor(0.0)
        n_neg = int(round(total * -lo / (hi - lo)))
        t_neg = self._threshold(-v[v < 0], max(2, n_neg)) if lo < 0 else 0.0
        t_pos = self._threshold(v[v > 0], max(2, total - n_neg)) if hi > 0 else 0.0
        return torch.tensor(-t_neg, dtype=torch.float32), torch.tensor(t_pos, dtype=torch.float32)


OBSERVERS = {"minmax": MinMaxObserver, "moving_average": MovingAverageObserver, "percentile": PercentileObserver,
             "mse": MSEObserver, "kl": KLObserver}


def make_observer(name: str, spec: QuantSpec, **kw) -> Observer:
    try:
        cls = OBSERVERS[name]
    except KeyError:
        raise ConfigError(f"unknown observer {name!r}; use one of {sorted(OBSERVERS)}") from None
    return cls(spec, **kw)


def weight_qparams(w: torch.Tensor, spec: QuantSpec, method: str = "minmax"):
    """(scale, zero_point) of a weight tensor: ``minmax`` or ``mse`` clipping."""
    if method == "minmax":
        lo, hi = reduce_minmax(w, spec)
    elif method == "mse":
        lo, hi = mse_range(w, spec)
    else:
        raise ConfigError(f"unknown weight range method {method!r}; use 'minmax' or 'mse'")
    return qparams_from_range(lo, hi, spec)
