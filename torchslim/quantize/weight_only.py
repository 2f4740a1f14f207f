"""Weight-only low-bit quantization (activations stay float): per group of
``group_size`` input elements (or per output channel), by round-to-nearest
or by GPTQ error compensation on a small calibration set. Layers GPTQ cannot
handle (grouped/depthwise convolutions) fall back to round-to-nearest.

``method="pow2"``: non-uniform power-of-two levels (0, ±2^e, 2^(bits-1)-1
exponents per output channel ending at the channel's max); the weights are
set to those levels directly (plain float layers; a codec finds the levels)."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..core.config import register_handler
from ..core.stage import StageResult
from .calib import calib_batches, capture_inputs
from .configs import WeightOnlyConfig
from .gptq import gptq_layer
from .kernels import pow2_quantize
from .modules import quant_layers
from .ptq import prepare, set_weight_qparams, weight_spec

__all__ = ["quantize_weight_only"]


def quantize_weight_only(model: nn.Module, calib_data=None, cfg: WeightOnlyConfig = WeightOnlyConfig()) -> nn.Module:
    """Quantize the weights of ``model`` in place; returns it. The per-layer
    GPTQ errors are in ``model.torchslim_quant_report``."""
    if cfg.method == "pow2":
        return _pow2(model, cfg)
    gran = "group" if cfg.group_size else "channel"
    prepare(model, wspec=weight_spec(cfg.bits, gran, cfg.group_size, cfg.symmetric), aspec=None, scope=cfg.scope)
    set_weight_qparams(model, "minmax")
    report = {}
    if cfg.method == "gptq":
        batches = calib_batches(calib_data, num_batches=cfg.num_batches, batch_size=cfg.batch_size)
        for name, layer in quant_layers(model):
            if getattr(layer, "groups", 1) != 1 or isinstance(getattr(layer, "padding", 0), str):
                report[name] = {"method": "rtn (GPTQ does not handle grouped convolutions)"}
                continue
            report[name] = gptq_layer(layer, capture_inputs(model, layer, batches), damp=cfg.damp)
    model.torchslim_quant_report = report
    return model.eval()


@torch.no_grad()
def _pow2(model: nn.Module, cfg: WeightOnlyConfig) -> nn.Module:
    cfg.scope.check_names(model)
    for _, layer in cfg.scope.select(model):
        w = layer.weight
        amax = w.reshape(w.shape[0], -1).abs().amax(1).reshape(-1, *([1] * (w.dim() - 1)))
        w.copy_(pow2_quantize(w, cfg.bits, amax))
    model.torchslim_quant_report = {}
    return model.eval()


@register_handler(WeightOnlyConfig)
def _weight_only_handler(model, cfg: WeightOnlyConfig, ctx) -> StageResult:
    model = quantize_weight_only(model, ctx.calib_data, cfg)
    return StageResult(model, records={"quant_report": getattr(model, "torchslim_quant_report", {})})
