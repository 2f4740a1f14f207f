"""Quantization-aware training: fake-quantized weights and activations in the
forward pass, straight-through gradients, optionally learned step sizes
(LSQ), trained by ``torchslim.train.fit`` (so checkpoints, resume and DDP under
torchrun come for free). Starts from a float model (BN folded, quantizers
inserted and calibrated here) or from a PTQ result (its quantizers are kept)."""
from __future__ import annotations

import torch.nn as nn

from ..core.config import register_handler
from ..train import fit
from .bnfold import fold_batchnorm
from .calib import calib_batches
from .configs import QATConfig
from .modules import quant_layers, quantizers
from .ptq import act_spec, calibrate, prepare, set_weight_qparams, weight_spec

__all__ = ["prepare_qat", "quantize_qat"]


def prepare_qat(model: nn.Module, calib_data, cfg: QATConfig = QATConfig()) -> nn.Module:
    """Insert and calibrate quantizers (unless the model already has them),
    then make the scales learnable if ``cfg.lsq``. In place."""
    if not quant_layers(model):
        model.eval()
        if cfg.fold_bn:
            fold_batchnorm(model)
        prepare(model, wspec=weight_spec(cfg.weight_bits, cfg.granularity), aspec=act_spec(cfg.act_bits),
                observer=cfg.observer, scope=cfg.scope)
        calibrate(model, calib_batches(calib_data, num_batches=cfg.num_batches, batch_size=cfg.batch_size))
        set_weight_qparams(model, cfg.weight_method)
    if cfg.lsq:
        for fq in quantizers(model):
            if not fq.dynamic:
                fq.make_learnable()
    return model


def quantize_qat(model: nn.Module, train_data, calib_data, cfg: QATConfig = QATConfig(), *, loss_fn=None,
                 out_dir=None, eval_data=None, progress: bool = True) -> nn.Module:
    """Prepare (see ``prepare_qat``) and fine-tune with ``cfg.finetune`` through fit. In place."""
    prepare_qat(model, calib_data, cfg)
    if cfg.finetune is not None and cfg.finetune.epochs > 0:
        fit(model, train_data, cfg.finetune, loss_fn=loss_fn, out_dir=out_dir, eval_data=eval_data,
            progress=progress)
    return model.eval()


@register_handler(QATConfig)
def _qat_handler(model, cfg: QATConfig, ctx):
    return quantize_qat(model, ctx.train_data, ctx.calib_data, cfg, loss_fn=ctx.loss_fn, out_dir=ctx.stage_out,
                        progress=ctx.progress)
