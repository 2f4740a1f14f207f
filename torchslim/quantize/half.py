"""fp16 / bf16: convert a model's floating parameters and buffers, with a
forward pre-hook casting floating inputs to the same dtype; and autocast
mixed-precision training through fit (``TrainConfig.amp``).

Artifacts: ``torchslim.save(model, path)`` stores the half tensors as they
are (half the bytes); ``torchslim.load`` rebuilds the float32 architecture and
returns float32 weights holding exactly the half values; call ``to_half``
again to run in half precision."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..core.config import register_handler
from ..train import fit
from .configs import HalfConfig

__all__ = ["to_half", "DTYPES"]

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _cast_inputs(module, args, kwargs):
    dt = module.torchslim_half_dtype
    cast = tuple(a.to(dt) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)
    return cast, kwargs


def to_half(model: nn.Module, dtype: str | torch.dtype = "bf16") -> nn.Module:
    """Convert ``model`` in place to fp16/bf16 (inputs are cast on the way in)."""
    dt = DTYPES[dtype] if isinstance(dtype, str) else dtype
    model.to(dt)
    model.torchslim_half_dtype = dt
    if getattr(model, "_torchslim_half_hook", None) is None:
        model._torchslim_half_hook = model.register_forward_pre_hook(_cast_inputs, with_kwargs=True)
    return model


@register_handler(HalfConfig)
def _half_handler(model, cfg: HalfConfig, ctx):
    if cfg.finetune is not None and cfg.finetune.epochs > 0:
        fit(model, ctx.train_data, cfg.finetune.replace(amp=cfg.dtype), loss_fn=ctx.loss_fn, out_dir=ctx.stage_out,
            progress=ctx.progress)
    return to_half(model, cfg.dtype).eval()
