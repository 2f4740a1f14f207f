"""The quantization -> export contract (see helpers' INTERFACES.md).

``export_params(model) -> (float_model, params)``: ``float_model`` is a plain
float copy (fake-quant stripped, BatchNorm folded) whose Linear/Conv layers
keep their qualified names; its weights are the *fake-quantized* weights
(exact grid values ``scale * (q - zero_point)``), so quantizing them again with
the given scales (round half to even, as ONNX QuantizeLinear) returns exactly
the integers the simulation used, including AdaRound/GPTQ roundings.

``params[name]`` = {"weight_scale": Tensor [C] (per channel) or [] (per tensor),
"weight_zero_point": int32 Tensor same shape, "weight_bits", "weight_axis": 0 or
None, "input_scale": float or None (None: not quantized, or dynamic, see
"input_dynamic"), "input_zero_point", "input_bits", "input_signed",
"input_dynamic"}. Per-group (weight-only) layers cannot be expressed in opset
17 QDQ; they are left out of ``params`` and exported as float with their
dequantized weights.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .bnfold import fold_batchnorm
from .modules import quant_layers, strip_quant

__all__ = ["export_params"]


@torch.no_grad()
def export_params(model: nn.Module) -> tuple[nn.Module, dict]:
    model = copy.deepcopy(model).eval()
    fold_batchnorm(model)
    params: dict[str, dict] = {}
    for name, layer in quant_layers(model):
        wq, iq = layer.weight_quant, layer.input_quant
        if wq is not None and wq.spec.granularity == "group":
            continue
        p: dict = {}
        if wq is not None:
            p.update(weight_scale=wq.scale.detach().clone().float(), weight_zero_point=wq.zero_point.clone(),
                     weight_bits=wq.spec.bits, weight_axis=0 if wq.spec.granularity == "channel" else None,
                     weight_signed=wq.spec.signed)
        else:
            p.update(weight_scale=None, weight_zero_point=None, weight_bits=None, weight_axis=None)
        if iq is not None and iq.enabled and not iq.dynamic:
            p.update(input_scale=float(iq.scale), input_zero_point=int(iq.zero_point), input_bits=iq.spec.bits,
                     input_signed=iq.spec.signed, input_dynamic=False)
        else:
            p.update(input_scale=None, input_zero_point=0, input_bits=iq.spec.bits if iq is not None else 8,
                     input_signed=iq.spec.signed if iq is not None else False,
                     input_dynamic=bool(iq is not None and iq.dynamic))
        params[name] = p
    strip_quant(model, bake_weights=True)
    for prm in model.parameters():
        prm.requires_grad_(False)
    return model, params
