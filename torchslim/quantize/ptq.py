"""Static post-training quantization (fake-quant simulation).

``quantize_static(model, calib_data, config)`` = fold BatchNorm -> insert
quantizers (``prepare``) -> observe layer inputs on calibration batches ->
weight scales (min/max or MSE) -> optional AdaRound / GPTQ per layer, in
order, on the inputs the partly quantized model produces -> optional bias
correction. Weights are symmetric signed (per channel or per tensor);
activations (each quantized layer's input) asymmetric unsigned.
"""
from __future__ import annotations

import torch.nn as nn

from ..artifact.specs import set_submodule
from ..core.config import register_handler
from ..core.scope import Scope
from ..core.stage import StageResult
from .adaround import adaround_layer
from .bias_correction import correct_bias
from .bnfold import fold_batchnorm
from .calib import calib_batches, capture_inputs, run_batches
from .configs import PTQConfig
from .fakequant import FakeQuantize
from .gptq import gptq_layer
from .kernels import QuantSpec
from .modules import FLOAT_OF, QUANT_TYPES, quant_layers, set_quant_state, to_quant
from .observers import make_observer, weight_qparams

__all__ = ["weight_spec", "act_spec", "prepare", "calibrate", "set_weight_qparams", "quantize_static"]


def weight_spec(bits: int, granularity: str = "channel", group_size: int = 0, symmetric: bool = True) -> QuantSpec:
    return QuantSpec(bits, signed=True, symmetric=symmetric, granularity=granularity, group_size=group_size)


def act_spec(bits: int = 8) -> QuantSpec:
    return QuantSpec(bits, signed=False, symmetric=False, granularity="tensor")


def _scale_shape(layer: nn.Module, spec: QuantSpec) -> tuple:
    out = layer.weight.shape[0]
    if spec.granularity == "tensor":
        return ()
    if spec.granularity == "channel":
        return (out,)
    k = layer.weight[0].numel()
    return (out, -(-k // spec.group_size))


def prepare(model: nn.Module, *, wspec: QuantSpec | None, aspec: QuantSpec | None, observer: str = "minmax",
            scope: Scope = Scope(), dynamic: bool = False, observer_kw: dict | None = None) -> list[str]:
    """Replace every in-scope Linear/Conv1d/Conv2d (in place) by its Quant*
    version: a weight quantizer (``wspec``) and an input quantizer (``aspec``,
    with an observer, or ``dynamic``). Returns the names replaced. Layers that
    are already Quant* get the missing quantizers only."""
    scope.check_names(model)
    names = []
    for name, layer in list(scope.select(model, tuple(QUANT_TYPES))):
        wq = FakeQuantize(wspec, shape=_scale_shape(layer, wspec)) if wspec is not None else None
        iq = None
        if aspec is not None:
            iq = (FakeQuantize(aspec, dynamic=True) if dynamic else
                  FakeQuantize(aspec, observer=make_observer(observer, aspec, **(observer_kw or {}))))
        if type(layer) in FLOAT_OF:
            layer._init_quant(layer.weight_quant or wq, layer.input_quant or iq)
        else:
            set_submodule(model, name, to_quant(layer, weight_quant=wq, input_quant=iq))
        names.append(name)
    return names


def calibrate(model: nn.Module, batches) -> None:
    """Observe activations on ``batches`` with weights in float, then set every
    observer-backed input quantizer's scale and enable fake-quant."""
    pending = [l.input_quant for _, l in quant_layers(model)
               if l.input_quant is not None and l.input_quant.observer is not None and not l.input_quant.dynamic]
    set_quant_state(model, enabled=False)
    for fq in pending:
        fq.observing = True
    run_batches(model, batches)
    for fq in pending:
        fq.calibrate()
    set_quant_state(model, enabled=True)


def set_weight_qparams(model: nn.Module, method: str = "minmax") -> None:
    """Scale/zero point of every weight quantizer from its weight (``minmax`` or ``mse``)."""
    for _, layer in quant_layers(model):
        if layer.weight_quant is not None:
            layer.weight_quant.set_qparams(*weight_qparams(layer.weight, layer.weight_quant.spec, method))


def quantize_static(model: nn.Module, calib_data, config: PTQConfig = PTQConfig(), *, log=None) -> nn.Module:
    """Static PTQ of ``model`` in place (see the module docstring); returns it."""
    cfg = config
    batches = calib_batches(calib_data, num_batches=cfg.num_batches, batch_size=cfg.batch_size)
    model.eval()
    if cfg.fold_bn:
        fold_batchnorm(model)
    float_ref = None
    if cfg.bias_correction:
        import copy

        float_ref = copy.deepcopy(model)
    prepare(model, wspec=weight_spec(cfg.weight_bits, cfg.granularity), aspec=act_spec(cfg.act_bits),
            observer=cfg.observer, scope=cfg.scope)
    calibrate(model, batches)
    set_weight_qparams(model, "minmax" if cfg.weight_method == "rtn" else "mse")
    report = {}
    if cfg.weight_method in ("adaround", "gptq"):
        for name, layer in quant_layers(model):
            if layer.weight_quant is None:
                continue
            inputs = capture_inputs(model, layer, batches)
            if cfg.weight_method == "adaround":
                report[name] = adaround_layer(layer, inputs, iters=cfg.adaround_iters, batch_size=cfg.batch_size)
            else:
                report[name] = gptq_layer(layer, inputs)
            if log is not None:
                log(name, report[name])
    if cfg.bias_correction:
        correct_bias(model, float_ref, batches)
    model.torchslim_quant_report = report
    return model


@register_handler(PTQConfig)
def _ptq_handler(model, cfg: PTQConfig, ctx) -> StageResult:
    model = quantize_static(model, ctx.calib_data, cfg)
    return StageResult(model, records={"quant_report": getattr(model, "torchslim_quant_report", {})})
