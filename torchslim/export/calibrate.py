"""Plain min/max calibration for a static int8 export when the model was not
quantized with ``torchslim.quantize`` (whose observers — percentile, MSE, KL —
are the better choice; this is the simple fallback the CLI uses).

Activations: asymmetric uint8 per tensor from the running min/max of each
layer's input over the calibration batches (range widened to include 0).
Weights: symmetric int8 per output channel, ``max|w| / 127``. The result has
the layout of ``torchslim.quantize.export_params`` so both feed the same QDQ
writer.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn as nn

from ..quantize import kernels
from .onnx_graph import QUANTIZABLE
from .qweight import symmetric_weight_scale

__all__ = ["minmax_params", "activation_qparams", "input_channel_absmax"]


def activation_qparams(lo: float, hi: float, *, bits: int = 8, signed: bool = False) -> tuple[float, int]:
    """(scale, zero point) covering ``[min(lo, 0), max(hi, 0)]``: the
    asymmetric qparams of the fake-quant simulation
    (``quantize.kernels.qparams_from_range``); an empty range gets scale 1."""
    if min(float(lo), 0.0) == max(float(hi), 0.0):
        return 1.0, 0
    spec = kernels.QuantSpec(bits=bits, signed=signed, symmetric=False)
    scale, zp = kernels.qparams_from_range(torch.tensor(float(lo)), torch.tensor(float(hi)), spec)
    return float(scale), int(zp)


def _as_inputs(batch) -> tuple:
    if isinstance(batch, torch.Tensor):
        return (batch,)
    return tuple(batch)


@torch.no_grad()
def minmax_params(model: nn.Module, batches: Iterable, *, layers: Sequence[str] | None = None,
                  per_channel: bool = True) -> dict:
    """Static int8 parameters of every Linear/Conv (or the named ``layers``)
    from min/max calibration on ``batches`` (tensors or tuples of inputs)."""
    model.eval()
    modules = {n: m for n, m in model.named_modules() if isinstance(m, QUANTIZABLE)}
    names = list(layers) if layers is not None else list(modules)
    ranges: dict[str, list[float]] = {}
    handles = []
    for name in names:
        def hook(mod, args, name=name):
            x = args[0].detach()
            r = ranges.setdefault(name, [float("inf"), float("-inf")])
            r[0], r[1] = min(r[0], float(x.min())), max(r[1], float(x.max()))
        handles.append(modules[name].register_forward_pre_hook(hook))
    try:
        n = 0
        for batch in batches:
            model(*_as_inputs(batch))
            n += 1
    finally:
        for h in handles:
            h.remove()
    if n == 0:
        raise ValueError("minmax_params needs at least one calibration batch")
    params = {}
    for name in names:
        if name not in ranges:
            continue  # layer not reached by forward
        w = modules[name].weight.detach()
        axis = 0 if per_channel else None
        scale = symmetric_weight_scale(w, axis=axis)
        s, z = activation_qparams(*ranges[name])
        params[name] = {
            "weight_scale": scale, "weight_zero_point": torch.zeros_like(scale, dtype=torch.int64),
            "weight_bits": 8, "weight_axis": axis,
            "input_scale": s, "input_zero_point": z, "input_bits": 8, "input_signed": False,
        }
    return params


@torch.no_grad()
def input_channel_absmax(model: nn.Module, batches: Iterable, *, layers: Sequence[str] | None = None) -> dict:
    """``{layer: max |input| per input feature}`` of every Linear (or the named
    ``layers``) over the calibration ``batches`` (last dimension = features)."""
    model.eval()
    modules = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    names = list(layers) if layers is not None else list(modules)
    amax: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:
        def hook(mod, args, name=name):
            a = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0)
            amax[name] = torch.maximum(amax[name], a) if name in amax else a
        handles.append(modules[name].register_forward_pre_hook(hook))
    try:
        for batch in batches:
            model(*_as_inputs(batch))
    finally:
        for h in handles:
            h.remove()
    return amax
