"""Dynamic quantization: weights quantized ahead of time (symmetric signed,
per channel or per tensor); each layer's input quantized at run time from the
batch's own min/max (asymmetric unsigned), so no calibration data is needed."""
from __future__ import annotations

import torch.nn as nn

from ..core.config import register_handler
from .configs import DynamicConfig
from .ptq import act_spec, prepare, set_weight_qparams, weight_spec

__all__ = ["quantize_dynamic"]


def quantize_dynamic(model: nn.Module, cfg: DynamicConfig = DynamicConfig()) -> nn.Module:
    """Dynamic quantization of ``model`` in place; returns it."""
    prepare(model, wspec=weight_spec(cfg.bits, cfg.granularity), aspec=act_spec(cfg.bits), dynamic=True,
            scope=cfg.scope)
    set_weight_qparams(model, "minmax")
    return model.eval()


@register_handler(DynamicConfig)
def _dynamic_handler(model, cfg: DynamicConfig, ctx):
    return quantize_dynamic(model, cfg)
