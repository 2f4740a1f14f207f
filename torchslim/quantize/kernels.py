"""The one rounding/clamping kernel for uniform affine quantization, and the
small pieces around it (integer ranges, scale/zero-point from a range,
per-tensor / per-channel / per-group broadcasting, power-of-two levels).

Conventions (the same as ONNX QuantizeLinear/DequantizeLinear, so the
simulation and the deployed int8 graph agree):

    q = clamp(round_half_to_even(x / scale) + zero_point, qmin, qmax)
    x_hat = (q - zero_point) * scale

Granularity: ``"tensor"`` (one scale), ``"channel"`` (one per slice of axis 0,
the output channel of a Linear/Conv weight) or ``"group"`` (axis 0 rows, each
row's flattened remaining elements cut into groups of ``group_size``; the last
group may be shorter).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch

from ..core.errors import ConfigError

__all__ = ["QuantSpec", "qrange", "round_clamp", "quantize", "dequantize", "fake_quantize", "qparams_from_range",
           "reduce_minmax", "expand_param", "pow2_quantize"]

Granularity = Literal["tensor", "channel", "group"]


@dataclasses.dataclass(frozen=True)
class QuantSpec:
    """How one tensor is quantized (plain data, kept in module specs)."""

    bits: int = 8
    signed: bool = True
    symmetric: bool = True
    granularity: Granularity = "tensor"
    group_size: int = 0

    def __post_init__(self):
        if not 2 <= self.bits <= 8:
            raise ConfigError(f"QuantSpec.bits must be between 2 and 8, got {self.bits}")
        if self.granularity not in ("tensor", "channel", "group"):
            raise ConfigError(f"QuantSpec.granularity must be tensor, channel or group, got {self.granularity!r}")
        if self.granularity == "group" and self.group_size <= 0:
            raise ConfigError("QuantSpec.group_size must be positive for granularity='group'")

    @property
    def qmin(self) -> int:
        return qrange(self.bits, self.signed)[0]

    @property
    def qmax(self) -> int:
        return qrange(self.bits, self.signed)[1]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def qrange(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range of a ``bits``-wide signed or unsigned integer."""
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def round_clamp(v: torch.Tensor, qmin: int, qmax: int, *, ste: bool = False) -> torch.Tensor:
    """THE kernel: round half to even, then clamp to [qmin, qmax]. With
    ``ste`` the rounding passes gradients straight through (the clamp still
    zeroes them outside the range), as LSQ needs."""
    r = torch.round(v)
    if ste:
        r = v + (r - v).detach()
    return torch.clamp(r, qmin, qmax)


def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Integer levels (as floats) of ``x``; ``scale``/``zero_point`` broadcast to ``x``."""
    return round_clamp(x / scale + zero_point.to(x.dtype), qmin, qmax)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    return (q - zero_point.to(q.dtype)) * scale


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    return dequantize(quantize(x, scale, zero_point, qmin, qmax), scale, zero_point)


def qparams_from_range(lo: torch.Tensor, hi: torch.Tensor, spec: QuantSpec, *, eps: float = 1e-8):
    """(scale, zero_point) covering [lo, hi] (both widened to include 0).
    Symmetric: zero_point 0 and scale = max|x| / qmax. Asymmetric: the range
    maps onto [qmin, qmax] with an integer zero point."""
    lo = torch.as_tensor(lo, dtype=torch.float32)
    hi = torch.as_tensor(hi, dtype=torch.float32)
    lo, hi = torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))
    qmin, qmax = spec.qmin, spec.qmax
    if spec.symmetric:
        amax = torch.maximum(-lo, hi)
        scale = torch.clamp(amax / qmax, min=eps)
        zp = torch.zeros_like(scale, dtype=torch.int32)
        if not spec.signed:
            # unsigned symmetric only makes sense for non-negative data
            scale = torch.clamp(hi / qmax, min=eps)
        return scale, zp
    scale = torch.clamp((hi - lo) / (qmax - qmin), min=eps)
    zp = torch.clamp(qmin - torch.round(lo / scale), qmin, qmax).to(torch.int32)
    return scale, zp


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1) if x.dim() > 1 else x.reshape(1, -1)


def reduce_minmax(x: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max of ``x`` per quantization unit (shape: [], [C] or [C, G])."""
    x = x.detach().float()
    if spec.granularity == "tensor":
        return x.min(), x.max()
    rows = _as_rows(x)
    if spec.granularity == "channel":
        return rows.min(1).values, rows.max(1).values
    g = spec.group_size
    k = rows.shape[1]
    ng = math.ceil(k / g)
    pad = ng * g - k
    if pad:
        # pad with the row's last element (it is in the last group): the range stays the same
        rows = torch.cat([rows, rows[:, -1:].expand(-1, pad)], 1)
    grouped = rows.reshape(rows.shape[0], ng, g)
    return grouped.min(2).values, grouped.max(2).values


def expand_param(p: torch.Tensor, x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Broadcast a per-unit parameter (scale or zero point) to ``x``'s shape."""
    if spec.granularity == "tensor" or p.dim() == 0:
        return p
    if spec.granularity == "channel":
        return p.reshape(-1, *([1] * (x.dim() - 1)))
    k = _as_rows(x).shape[1]
    full = p.repeat_interleave(spec.group_size, dim=1)[:, :k]
    return full.reshape(x.shape)


def pow2_quantize(x: torch.Tensor, bits: int, max_abs: float | torch.Tensor) -> torch.Tensor:
    """Power-of-two (logarithmic) levels: 0 and ±2^e for the 2^(bits-1)-1
    exponents ending at round(log2(max_abs)). |x| is rounded to the nearest
    level in the log domain; magnitudes below half the smallest level go to 0."""
    n_exp = 2 ** (bits - 1) - 1
    max_abs = torch.as_tensor(max_abs, dtype=torch.float32)
    emax = torch.round(torch.log2(torch.clamp(max_abs, min=1e-30)))
    emin = emax - (n_exp - 1)
    mag = x.abs()
    e = torch.clamp(torch.round(torch.log2(torch.clamp(mag, min=1e-30))), emin, emax)
    out = torch.sign(x) * torch.pow(2.0, e)
    return torch.where(mag < torch.pow(2.0, emin - 1), torch.zeros_like(x), out)
