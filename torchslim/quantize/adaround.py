"""AdaRound (Nagel et al. 2020): learn, per weight, whether to round down or
up, by minimising the layer's output reconstruction error on calibration
inputs plus a regulariser that pushes the soft rounding h(V) to 0 or 1
(temperature beta annealed 20 -> 2 after a 20% warm-up). Trains through
``torchslim.train.fit``. The result replaces the layer's weight by grid values
``scale * (q - zero_point)``, so the ordinary fake-quant reproduces it exactly."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..train import Callback, TrainConfig, fit
from ..zoo.data import ArrayDataset
from .kernels import expand_param

__all__ = ["adaround_layer"]

ZETA, GAMMA = 1.1, -0.1


class _SoftRounded(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        fq = layer.weight_quant
        w = layer.weight.detach()
        self.spec = fq.spec
        self.register_buffer("scale", expand_param(fq.scale.detach(), w, fq.spec).expand_as(w).clone())
        self.register_buffer("zp", expand_param(fq.zero_point, w, fq.spec).to(w.dtype).expand_as(w).clone())
        v = w / self.scale
        self.register_buffer("w_floor", torch.floor(v))
        rest = (v - self.w_floor).clamp(0.01, 0.99)
        self.V = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))
        self.layer = layer
        self.bias = None if layer.bias is None else layer.bias.detach().clone()
        self.beta = 20.0
        self.reg_on = False

    def h(self) -> torch.Tensor:
        return torch.clamp(torch.sigmoid(self.V) * (ZETA - GAMMA) + GAMMA, 0, 1)

    def weight(self, hard: bool = False) -> torch.Tensor:
        up = (self.V >= 0).to(self.V.dtype) if hard else self.h()
        q = torch.clamp(self.w_floor + up + self.zp, self.spec.qmin, self.spec.qmax)
        return (q - self.zp) * self.scale

    def forward(self, x, hard: bool = False):
        w = self.weight(hard)
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, w, self.bias)
        return self.layer._conv_forward(x, w, self.bias)

    def reg(self) -> torch.Tensor:
        return (1 - (2 * self.h() - 1).abs().pow(self.beta)).sum()


class _Anneal(Callback):
    def __init__(self, warmup: float = 0.2, beta=(20.0, 2.0)):
        self.warmup, self.beta = warmup, beta

    def on_batch_start(self, state):
        net = state.model
        p = state.progress
        net.reg_on = p >= self.warmup
        t = max(0.0, (p - self.warmup) / (1 - self.warmup))
        net.beta = self.beta[1] + 0.5 * (self.beta[0] - self.beta[1]) * (1 + math.cos(math.pi * t))


def adaround_layer(layer: nn.Module, inputs: torch.Tensor, *, iters: int = 1000, batch_size: int = 128,
                   lr: float = 1e-2, reg_weight: float = 0.01, seed: int = 0) -> dict:
    """Optimise the rounding of ``layer`` (a Quant* layer with calibrated
    ``weight_quant``) on its captured ``inputs``; sets the weight in place.
    Returns reconstruction errors (mean squared output error) before/after."""
    soft = _SoftRounded(layer)
    with torch.no_grad():
        w_float = layer.weight.detach().clone()
        if isinstance(layer, nn.Linear):
            target = F.linear(inputs, w_float, soft.bias)
        else:
            target = layer._conv_forward(inputs, w_float, soft.bias)
        nearest = torch.clamp(torch.round(w_float / soft.scale) + soft.zp, soft.spec.qmin, soft.spec.qmax)
        w_near = (nearest - soft.zp) * soft.scale
        out_near = F.linear(inputs, w_near, soft.bias) if isinstance(layer, nn.Linear) else \
            layer._conv_forward(inputs, w_near, soft.bias)
        err_before = float(((out_near - target) ** 2).mean())

    def loss_fn(net, x, y):
        out = net(x)
        rec = (out - y).pow(2).reshape(len(x), -1).sum(1).mean()
        if net.reg_on:
            rec = rec + reg_weight * net.reg()
        return rec

    steps = max(1, math.ceil(len(inputs) / batch_size))
    cfg = TrainConfig(epochs=max(1, math.ceil(iters / steps)), batch_size=batch_size, lr=lr, optimizer="adam",
                      scheduler="none", eval_every=0, seed=seed)
    fit(soft, ArrayDataset(inputs, target), cfg, loss_fn=loss_fn, callbacks=[_Anneal()], progress=False,
        params=[soft.V])
    with torch.no_grad():
        w_hard = soft.weight(hard=True)
        out = soft(inputs, hard=True)
        err_after = float(((out - target) ** 2).mean())
        layer.weight.data.copy_(w_hard)
    return {"mse_nearest": err_before, "mse_adaround": err_after,
            "flipped": float((w_hard != w_near).float().mean())}
