"""GPTQ (Frantar et al. 2023): quantize a layer's weight column by column and
spread each column's rounding error over the not-yet-quantized columns,
weighted by the inverse Hessian H = 2 X X^T of the layer's inputs, so the
layer output on calibration data changes least. Works for Linear and Conv
(inputs unfolded to patches), per channel or per group (group scales come
from the partly updated weights when the group starts)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kernels import QuantSpec, expand_param, fake_quantize, qparams_from_range, reduce_minmax

__all__ = ["input_hessian", "gptq_quantize", "gptq_layer"]


def _columns(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Inputs as (K, M): one column per output position."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1]).t()
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1 or isinstance(layer.padding, str):
            raise ValueError("GPTQ supports ungrouped Conv2d with numeric padding")
        cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
        return cols.permute(1, 0, 2).reshape(cols.shape[1], -1)
    if isinstance(layer, nn.Conv1d):
        if layer.groups != 1 or isinstance(layer.padding, str):
            raise ValueError("GPTQ supports ungrouped Conv1d with numeric padding")
        x4 = x.unsqueeze(2)
        cols = F.unfold(x4, (1, layer.kernel_size[0]), dilation=(1, layer.dilation[0]),
                        padding=(0, layer.padding[0]), stride=(1, layer.stride[0]))
        return cols.permute(1, 0, 2).reshape(cols.shape[1], -1)
    raise TypeError(f"GPTQ does not support {type(layer).__name__}")


@torch.no_grad()
def input_hessian(layer: nn.Module, inputs: torch.Tensor, *, chunk: int = 256) -> torch.Tensor:
    """H = 2/M sum x x^T over the layer's input columns (float64)."""
    H = None
    m = 0
    for i in range(0, len(inputs), chunk):
        X = _columns(layer, inputs[i: i + chunk]).double()
        H = X @ X.t() if H is None else H + X @ X.t()
        m += X.shape[1]
    return 2 * H / max(1, m)


@torch.no_grad()
def gptq_quantize(W: torch.Tensor, H: torch.Tensor, spec: QuantSpec, *, scale: torch.Tensor | None = None,
                  zero_point: torch.Tensor | None = None, damp: float = 0.01, block: int = 128):
    """Quantize ``W`` (out, K) with Hessian ``H`` (K, K). Per channel, the
    given (or min/max) scales are used; per group, each group's scale is
    taken from the updated weights when the group starts. Returns
    (Q dequantized (out, K), scale, zero_point)."""
    W = W.clone().double()
    out, K = W.shape
    H = H.clone().double()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(K, dtype=H.dtype)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    group = spec.granularity == "group"
    g = spec.group_size if group else 0
    if group:
        block = g * max(1, block // g)
        ng = -(-K // g)
        scale = torch.zeros(out, ng)
        zero_point = torch.zeros(out, ng, dtype=torch.int32)
    else:
        if scale is None:
            lo, hi = reduce_minmax(W.float(), spec)
            scale, zero_point = qparams_from_range(lo, hi, spec)
        scale = scale.double().expand(out) if scale.dim() == 0 else scale.double()
        zero_point = zero_point.expand(out) if zero_point.dim() == 0 else zero_point
    col_spec = QuantSpec(spec.bits, spec.signed, spec.symmetric, "channel")
    Q = torch.zeros_like(W)
    for i1 in range(0, K, block):
        i2 = min(i1 + block, K)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if group and col % g == 0:
                gi = col // g
                lo, hi = reduce_minmax(W1[:, i: i + g].float(), col_spec)
                s, z = qparams_from_range(lo, hi, col_spec)
                scale[:, gi], zero_point[:, gi] = s, z
            if group:
                s_col, z_col = scale[:, col // g].double(), zero_point[:, col // g]
            else:
                s_col, z_col = scale, zero_point
            w = W1[:, i]
            q = fake_quantize(w, s_col, z_col, spec.qmin, spec.qmax)
            Q[:, col] = q
            err = (w - q) / Hinv1[i, i]
            W1[:, i:] -= err[:, None] * Hinv1[i, i:][None, :]
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return Q.float(), scale.float(), zero_point.to(torch.int32)


@torch.no_grad()
def gptq_layer(layer: nn.Module, inputs: torch.Tensor, *, damp: float = 0.01) -> dict:
    """GPTQ for a Quant* layer with a ``weight_quant``: replaces its weight by
    grid values and sets the quantizer's scales. Returns the output MSE of
    round-to-nearest vs GPTQ on ``inputs``."""
    fq = layer.weight_quant
    spec = fq.spec
    w = layer.weight.detach()
    W = w.reshape(w.shape[0], -1)
    H = input_hessian(layer, inputs)
    group = spec.granularity == "group"
    scale, zp = (None, None) if group else (fq.scale.detach(), fq.zero_point)
    Q, scale, zp = gptq_quantize(W, H, spec, scale=scale, zero_point=zp, damp=damp)
    if spec.granularity == "tensor":
        scale, zp = scale[0], zp[0]
    if group:
        fq.set_qparams(scale, zp)  # round-to-nearest is compared with the same group scales
    near = fake_quantize(w, expand_param(fq.scale.detach(), w, spec), expand_param(fq.zero_point, w, spec),
                         spec.qmin, spec.qmax)
    fq.set_qparams(scale, zp)
    Wq = Q.reshape(w.shape)

    def out_err(wt):
        d = (wt - w).reshape(W.shape).double()
        return float(torch.trace(d @ H @ d.t()) / 2 / d.shape[0])

    e_near, e_gptq = out_err(near), out_err(Wq)
    layer.weight.data.copy_(Wq)
    return {"err_nearest": e_near, "err_gptq": e_gptq}
