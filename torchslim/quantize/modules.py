"""Quantized layer wrappers: ``QuantLinear``, ``QuantConv1d``, ``QuantConv2d``.

Each is a subclass of its float layer (same parameters, same qualified name),
with two optional submodules: ``input_quant`` (activations entering the layer)
and ``weight_quant`` (the weight). The output stays float; the next layer's
``input_quant`` quantizes it, as a QDQ graph does. Artifact specs are
registered so ``torchslim.load`` rebuilds them with their scales.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..artifact.specs import conv_spec, register_module_spec, set_submodule
from .fakequant import FakeQuantize

__all__ = ["QuantLinear", "QuantConv1d", "QuantConv2d", "QUANT_TYPES", "to_quant", "quant_layers", "strip_quant",
           "quantizers", "set_quant_state"]


class _QuantMixin:
    input_quant: FakeQuantize | None
    weight_quant: FakeQuantize | None

    def _init_quant(self, weight_quant, input_quant):
        self.weight_quant = weight_quant
        self.input_quant = input_quant
        if input_quant is not None:
            input_quant.per_sample = True  # LSQ counts features per sample, not per batch

    def quantized_weight(self) -> torch.Tensor:
        return self.weight_quant(self.weight) if self.weight_quant is not None else self.weight

    def _quant_spec(self) -> dict:
        return {"weight_quant": self.weight_quant.to_spec() if self.weight_quant is not None else None,
                "input_quant": self.input_quant.to_spec() if self.input_quant is not None else None}

    def _load_quant_spec(self, s: dict):
        wq, iq = s.get("weight_quant"), s.get("input_quant")
        self._init_quant(FakeQuantize.from_spec(wq) if wq else None, FakeQuantize.from_spec(iq) if iq else None)


class QuantLinear(_QuantMixin, nn.Linear):
    def __init__(self, in_features, out_features, bias=True, *, weight_quant=None, input_quant=None):
        super().__init__(in_features, out_features, bias)
        self._init_quant(weight_quant, input_quant)

    def forward(self, x):
        if self.input_quant is not None:
            x = self.input_quant(x)
        return F.linear(x, self.quantized_weight(), self.bias)


class _QuantConv(_QuantMixin):
    """Fake-quantized convolution; combined with nn.Conv1d / nn.Conv2d below."""

    def __init__(self, *args, weight_quant=None, input_quant=None, **kw):
        super().__init__(*args, **kw)
        self._init_quant(weight_quant, input_quant)

    def forward(self, x):
        if self.input_quant is not None:
            x = self.input_quant(x)
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QuantConv1d(_QuantConv, nn.Conv1d):
    pass


class QuantConv2d(_QuantConv, nn.Conv2d):
    pass


QUANT_TYPES = {nn.Linear: QuantLinear, nn.Conv1d: QuantConv1d, nn.Conv2d: QuantConv2d}
FLOAT_OF = {v: k for k, v in QUANT_TYPES.items()}


def to_quant(layer: nn.Module, *, weight_quant: FakeQuantize | None, input_quant: FakeQuantize | None) -> nn.Module:
    """A Quant* copy of a float Linear/Conv sharing its weight and bias tensors."""
    float_cls = type(layer) if type(layer) in QUANT_TYPES else FLOAT_OF.get(type(layer))
    if float_cls is None:
        raise TypeError(f"cannot quantize a {type(layer).__name__}; supported: Linear, Conv1d, Conv2d")
    qcls = QUANT_TYPES[float_cls]
    if isinstance(layer, nn.Linear):
        q = QuantLinear(layer.in_features, layer.out_features, layer.bias is not None,
                        weight_quant=weight_quant, input_quant=input_quant)
    else:
        s = conv_spec(layer)
        q = qcls(**s, weight_quant=weight_quant, input_quant=input_quant)
    q.weight = layer.weight
    q.bias = layer.bias
    q.train(layer.training)
    return q


def to_float(layer: nn.Module) -> nn.Module:
    """The plain float layer of a Quant* layer (weight as stored, not quantized)."""
    float_cls = FLOAT_OF[type(layer)]
    if float_cls is nn.Linear:
        f = nn.Linear(layer.in_features, layer.out_features, layer.bias is not None)
    else:
        f = float_cls(**conv_spec(layer))
    f.weight = layer.weight
    f.bias = layer.bias
    return f


def quant_layers(model: nn.Module):
    """(name, layer) of every Quant* layer, in module order."""
    return [(n, m) for n, m in model.named_modules() if type(m) in FLOAT_OF]


def quantizers(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, FakeQuantize)]


def set_quant_state(model: nn.Module, *, observing: bool | None = None, enabled: bool | None = None,
                    which: str = "all") -> None:
    """Turn observation / fake-quant on or off for ``which`` = all | input | weight quantizers."""
    for _, layer in quant_layers(model):
        for kind, fq in (("input", layer.input_quant), ("weight", layer.weight_quant)):
            if fq is None or which not in ("all", kind):
                continue
            if observing is not None:
                fq.observing = observing and fq.observer is not None
            if enabled is not None:
                fq.enabled = enabled


def strip_quant(model: nn.Module, *, bake_weights: bool = False) -> nn.Module:
    """Replace every Quant* layer of ``model`` (in place) by its float layer;
    with ``bake_weights`` the float weight is the fake-quantized weight."""
    for name, layer in quant_layers(model):
        f = to_float(layer)
        if bake_weights and layer.weight_quant is not None:
            with torch.no_grad():
                f.weight = nn.Parameter(layer.quantized_weight().detach().clone())
        set_submodule(model, name, f)
    return model


def register_specs() -> None:
    """Register the Quant* artifact specs (idempotent). ``torchslim.load`` calls
    this when an artifact holds Quant* layers and torchslim.quantize was not imported."""
    _register()


def _register():
    register_module_spec(
        QuantLinear,
        lambda m: {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None,
                   **m._quant_spec()},
        lambda s: _build(QuantLinear, {k: s[k] for k in ("in_features", "out_features", "bias")}, s),
    )
    for cls in (QuantConv1d, QuantConv2d):
        register_module_spec(
            cls, lambda m: {**conv_spec(m), **m._quant_spec()},
            (lambda c: lambda s: _build(c, {k: v for k, v in s.items() if k not in ("weight_quant", "input_quant")}, s))(cls),
        )


def _build(cls, kwargs, s):
    m = cls(**kwargs)
    m._load_quant_spec(s)
    return m


_register()
