"""Integer weights for ONNX, through the quantization primitives the
fake-quant simulation uses (``torchslim.quantize.kernels``: divide by the
scale, round half to even, add the zero point, saturate, as ONNX
``QuantizeLinear`` specifies), so the int8 initializers dequantize to exactly
what the simulation with the same scales computes.

Bit widths below 8 are stored in int8 with the clamped range
``[-2**(bits-1), 2**(bits-1) - 1]`` (ONNX Runtime runs int8 kernels).
"""
from __future__ import annotations

import numpy as np
import torch

from ..quantize import kernels

__all__ = ["quantize_weight", "symmetric_weight_scale", "qrange"]


def qrange(bits: int, signed: bool = True) -> tuple[int, int]:
    """``kernels.qrange`` for widths int8 storage holds (2..8 bits)."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in 2..8 for int8 storage, got {bits}")
    return kernels.qrange(bits, signed)


def _broadcast(v: torch.Tensor, w: torch.Tensor, axis: int | None) -> torch.Tensor:
    v = torch.as_tensor(v)
    if v.dim() == 0 or axis is None:
        return v.reshape(())
    shape = [1] * w.dim()
    shape[axis] = -1
    return v.reshape(shape)


def quantize_weight(w: torch.Tensor, scale, zero_point=0, *, bits: int = 8, axis: int | None = 0) -> np.ndarray:
    """int8 array ``clamp(round_half_even(w / scale) + zero_point)``; ``scale``
    and ``zero_point`` are scalars or per-channel vectors along ``axis``."""
    w = torch.as_tensor(w).detach().float()
    s = _broadcast(torch.as_tensor(scale, dtype=torch.float32), w, axis)
    z = _broadcast(torch.as_tensor(zero_point, dtype=torch.float32), w, axis)
    lo, hi = qrange(bits, True)
    q = kernels.quantize(w, s, z, lo, hi)
    return q.to(torch.int8).cpu().numpy()


def symmetric_weight_scale(w: torch.Tensor, *, bits: int = 8, axis: int | None = 0) -> torch.Tensor:
    """Per-channel (``axis``) or per-tensor (``axis=None``) symmetric scale
    ``max|w| / qmax`` (a channel of zeros gets scale 1)."""
    w = torch.as_tensor(w).detach().float()
    qmax = qrange(bits, True)[1]
    if axis is None:
        m = w.abs().max()
    else:
        dims = [d for d in range(w.dim()) if d != axis]
        m = w.abs().amax(dim=dims) if dims else w.abs()
    return torch.where(m > 0, m / qmax, torch.ones_like(m)).float()


def to_numpy_scale(scale) -> np.ndarray:
    return np.asarray(torch.as_tensor(scale, dtype=torch.float32).cpu().numpy(), dtype=np.float32)
