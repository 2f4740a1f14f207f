"""Which Linear layers to leave in float in a dynamic int8 export, chosen on
calibration inputs (never on the data the result is measured on).

The choice runs a PyTorch simulation of exactly what the dynamic graph
computes for a Linear: the input quantized per tensor to uint8 at run time the
way ONNX ``DynamicQuantizeLinear`` does (range widened to include 0, scale
``(max - min) / 255``, zero point rounded and saturated), the weight
quantized symmetric per output channel, the product in float. For each layer,
the score is how much the model's output improves (cosine to the float
output, averaged over the calibration batches) when that layer alone is left
in float while every other one is quantized; the layers with the largest
gains are kept.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..quantize import kernels
from .qweight import symmetric_weight_scale

__all__ = ["dynamic_quant_sim", "dynamic_sensitivity", "choose_float_layers"]


def fake_dynamic_uint8(x: torch.Tensor) -> torch.Tensor:
    """``DequantizeLinear(DynamicQuantizeLinear(x))`` in float (the shared
    fake-quant kernel, at ONNX's dynamic uint8 scale and zero point)."""
    lo = torch.clamp(x.min(), max=0.0)
    hi = torch.clamp(x.max(), min=0.0)
    scale = (hi - lo) / 255.0
    if float(scale) == 0.0:
        return x
    zp = torch.clamp(torch.round(-lo / scale), 0, 255)
    return kernels.fake_quantize(x, scale, zp, 0, 255)


def fake_weight_int8(w: torch.Tensor) -> torch.Tensor:
    s = symmetric_weight_scale(w, axis=0).reshape(-1, *([1] * (w.dim() - 1)))
    return kernels.fake_quantize(w, s, torch.zeros((), dtype=torch.int32), -128, 127)


@contextlib.contextmanager
def dynamic_quant_sim(model: nn.Module, layers: Iterable[str]):
    """Within the block, the named Linear layers of ``model`` compute like the
    dynamic int8 graph does."""
    modules = dict(model.named_modules())
    handles = []
    for name in layers:
        m = modules[name]
        wq = fake_weight_int8(m.weight.detach())

        def hook(mod, args, out, wq=wq):
            return F.linear(fake_dynamic_uint8(args[0]), wq, mod.bias)

        handles.append(m.register_forward_hook(hook))
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


def linear_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def _cosine(model, batches, ref) -> torch.Tensor:
    outs = [model(*b) for b in batches]
    return torch.cat([F.cosine_similarity(o.flatten(1), r.flatten(1), dim=1) for o, r in zip(outs, ref)])


@torch.no_grad()
def dynamic_sensitivity(model: nn.Module, batches: Sequence[tuple], *, layers: Sequence[str] | None = None) -> dict:
    """``{layer: gain}``: mean output cosine (to float) with ``layer`` left in
    float minus the cosine with every layer quantized. ``batches`` are tuples
    of model inputs."""
    model.eval()
    layers = list(layers if layers is not None else linear_layers(model))
    ref = [model(*b) for b in batches]
    with dynamic_quant_sim(model, layers):
        base = float(_cosine(model, batches, ref).mean())
    gains = {}
    for name in layers:
        with dynamic_quant_sim(model, [n for n in layers if n != name]):
            gains[name] = float(_cosine(model, batches, ref).mean()) - base
    return gains


def choose_float_layers(model: nn.Module, batches: Sequence[tuple], count: int, *,
                        layers: Sequence[str] | None = None) -> list[str]:
    """The ``count`` layers whose float execution helps the output most."""
    if count <= 0:
        return []
    gains = dynamic_sensitivity(model, batches, layers=layers)
    return sorted(gains, key=lambda n: -gains[n])[:count]
