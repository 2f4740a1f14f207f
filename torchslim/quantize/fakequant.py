"""Fake-quantization modules: quantize-dequantize in float so a model can be
simulated and trained with quantization in the loop.

* straight-through estimator (STE): the gradient passes unchanged where the
  value was inside the quantization range and is zero where it was clamped;
* LSQ (Esser et al. 2020, learned step size): ``scale`` is a Parameter whose
  gradient comes from the rounding error, scaled by 1/sqrt(numel * qmax);
* dynamic: scale and zero point computed from each batch's min/max at run time
  (dynamic quantization of activations).

``scale`` and ``zero_point`` are kept in the state dict (buffers, or a
Parameter for LSQ) so a saved artifact holds them.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .kernels import QuantSpec, expand_param, fake_quantize, qparams_from_range, reduce_minmax, round_clamp
from .observers import Observer

__all__ = ["FakeQuantize", "ste_fake_quantize", "lsq_fake_quantize"]


class _STEFakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):
        v = torch.round(x / scale + zero_point.to(x.dtype))
        ctx.save_for_backward((v >= qmin) & (v <= qmax))
        return fake_quantize(x, scale, zero_point, qmin, qmax)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def ste_fake_quantize(x, scale, zero_point, qmin, qmax):
    """Fake-quantize with the straight-through estimator (scale/zp broadcast to x)."""
    return _STEFakeQuant.apply(x, scale, zero_point, qmin, qmax)


def lsq_fake_quantize(x, scale, zero_point, qmin, qmax, grad_scale: float):
    """LSQ: differentiable in ``x`` (STE inside the range) and in ``scale``."""
    s = scale * grad_scale + (scale - scale * grad_scale).detach()
    zp = zero_point.to(x.dtype)
    q = round_clamp(x / s + zp, qmin, qmax, ste=True)
    return (q - zp) * s


class FakeQuantize(nn.Module):
    """Quantize-dequantize one tensor by ``spec``.

    ``shape`` is the shape of the scale: [] per tensor, [C] per channel,
    [C, G] per group. ``observer`` (optional) watches inputs while
    ``observing`` is on; ``calibrate()`` turns what it saw into scale/zero point.
    """

    def __init__(self, spec: QuantSpec, *, shape=(), learnable: bool = False, dynamic: bool = False,
                 observer: Observer | None = None):
        super().__init__()
        self.spec = spec
        self.learnable = learnable
        self.dynamic = dynamic
        scale = torch.ones(tuple(shape))
        if learnable:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)
        self.register_buffer("zero_point", torch.zeros(tuple(shape), dtype=torch.int32))
        self.observer = observer
        self.per_sample = False  # an activation quantizer: LSQ's N is the feature count of one sample
        self.observing = observer is not None
        self.enabled = observer is None  # a fresh quantizer with an observer calibrates first

    # ---------------------------------------------------------------- state
    def set_qparams(self, scale: torch.Tensor, zero_point: torch.Tensor) -> None:
        scale = torch.as_tensor(scale, dtype=torch.float32).detach().clone()
        zero_point = torch.as_tensor(zero_point).to(torch.int32).detach().clone()
        if self.learnable:
            self.scale = nn.Parameter(scale)
        else:
            self.scale = scale
        self.zero_point = zero_point

    def calibrate(self) -> None:
        """Set scale/zero point from the observer, stop observing, enable
        fake-quant, and drop the observer (its samples can be megabytes)."""
        if self.observer is None:
            raise RuntimeError("this FakeQuantize has no observer to calibrate from; attach one "
                               "(fq.observer = make_observer(...); fq.observing = True) and run data through it")
        self.set_qparams(*self.observer.qparams())
        self.observer = None
        self.observing = False
        self.enabled = True

    def make_learnable(self) -> None:
        """Switch to LSQ: the current scale becomes a trainable Parameter."""
        if not self.learnable:
            scale = self.scale.detach().clone()
            del self._buffers["scale"]
            self.learnable = True
            self.scale = nn.Parameter(scale)

    def to_spec(self) -> dict:
        return {**self.spec.to_dict(), "shape": list(self.scale.shape), "learnable": self.learnable,
                "dynamic": self.dynamic}

    @classmethod
    def from_spec(cls, d: dict) -> "FakeQuantize":
        d = dict(d)
        shape, learnable, dynamic = d.pop("shape"), d.pop("learnable", False), d.pop("dynamic", False)
        return cls(QuantSpec(**d), shape=shape, learnable=learnable, dynamic=dynamic)

    def extra_repr(self) -> str:
        s = self.spec
        kind = "lsq" if self.learnable else ("dynamic" if self.dynamic else "ste")
        return (f"bits={s.bits}, {'signed' if s.signed else 'unsigned'}, "
                f"{'symmetric' if s.symmetric else 'asymmetric'}, {s.granularity}, {kind}")

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing and self.observer is not None:
            self.observer.observe(x.detach())
        if not self.enabled:
            return x
        spec = self.spec
        if self.dynamic:
            with torch.no_grad():
                lo, hi = reduce_minmax(x, spec)
                scale, zp = qparams_from_range(lo, hi, spec)
            return ste_fake_quantize(x, expand_param(scale.to(x.dtype), x, spec), expand_param(zp, x, spec),
                                     spec.qmin, spec.qmax)
        scale = expand_param(self.scale.to(x.dtype), x, spec)
        zp = expand_param(self.zero_point, x, spec)
        if self.learnable:
            if spec.granularity == "tensor":
                n = x[0].numel() if self.per_sample and x.dim() > 1 else x.numel()
            else:
                n = x[0].numel() if spec.granularity == "channel" else spec.group_size
            grad_scale = 1.0 / math.sqrt(max(1, n) * max(1, spec.qmax))
            return lsq_fake_quantize(x, scale, zp, spec.qmin, spec.qmax, grad_scale)
        return ste_fake_quantize(x, scale, zp, spec.qmin, spec.qmax)
