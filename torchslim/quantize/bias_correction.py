"""Bias correction (Nagel et al. 2019, empirical form): quantizing a weight
shifts the expected output of its layer by E[(W - W_q) x]; measure that shift
per output channel on calibration inputs and subtract it through the bias.
Layers are corrected in order, each on the inputs the partly corrected model
produces, against the float layer on the same inputs."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .calib import capture_inputs
from .modules import quant_layers

__all__ = ["correct_bias", "output_shift"]


@torch.no_grad()
def output_shift(layer: nn.Module, inputs: torch.Tensor, float_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-output-channel mean of (float layer - quantized layer) on ``inputs``;
    the float weight is ``float_weight`` or the layer's stored weight."""
    w = layer.weight if float_weight is None else float_weight
    dw = w - layer.quantized_weight()
    if isinstance(layer, nn.Linear):
        d = F.linear(inputs, dw)
        return d.reshape(-1, d.shape[-1]).mean(0)
    d = layer._conv_forward(inputs, dw, None)
    return d.transpose(0, 1).reshape(d.shape[1], -1).mean(1)


@torch.no_grad()
def correct_bias(model: nn.Module, float_model: nn.Module | None, batches) -> dict[str, float]:
    """Correct every Quant* layer's bias in place (a layer without bias gets
    one). ``float_model`` (a copy taken before quantizing, same layer names)
    supplies the float weights when AdaRound/GPTQ replaced the stored ones.
    Returns the size (max |shift|) of each correction."""
    out = {}
    for name, layer in quant_layers(model):
        if layer.weight_quant is None:
            continue
        inputs = capture_inputs(model, layer, batches)
        fw = float_model.get_submodule(name).weight if float_model is not None else None
        shift = output_shift(layer, inputs, fw)
        if layer.bias is None:
            layer.bias = nn.Parameter(torch.zeros_like(shift))
        layer.bias.add_(shift)
        out[name] = float(shift.abs().max())
    return out
