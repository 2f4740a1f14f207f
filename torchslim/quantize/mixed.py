"""Mixed precision: choose each layer's weight bit width under a size budget.

Sensitivity of layer L at b bits, measured on calibration data:

* ``loss``: the calibration loss with only L's weights quantized to b bits,
  minus the float loss (a direct probe);
* ``hessian``: HAWQ-v2's Tr(H_L)/n_L * ||W_L - Q_b(W_L)||^2 with the Hessian
  trace of the loss w.r.t. W_L estimated by Hutchinson's method.

Selection (greedy): start every layer at the widest candidate and, while
the average weight bits exceed the budget, take the step (one layer one
candidate narrower) that adds the least sensitivity per bit saved; then spend
any budget left on the upgrades that remove the most sensitivity per bit. The chosen bits are returned (and in the stage's records, ``mixed_bits``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.config import register_handler
from ..core.scope import Scope
from ..core.stage import StageResult
from .calib import calib_batches
from .configs import MixedConfig
from .kernels import expand_param, fake_quantize
from .observers import weight_qparams
from .ptq import act_spec, calibrate, prepare, set_weight_qparams, weight_spec

__all__ = ["layer_sensitivity", "hessian_traces", "choose_bits", "quantize_mixed"]


def _qweight(w: torch.Tensor, bits: int, granularity: str, method: str) -> torch.Tensor:
    spec = weight_spec(bits, granularity)
    s, z = weight_qparams(w, spec, "minmax" if method == "rtn" else method)
    return fake_quantize(w, expand_param(s, w, spec), expand_param(z, w, spec), spec.qmin, spec.qmax)


@torch.no_grad()
def _loss(model, data, loss_fn) -> float:
    total, n = 0.0, 0
    for x, y in data:
        out = loss_fn(model, x, y)
        loss = out[0] if isinstance(out, tuple) else out
        total += float(loss) * len(x)
        n += len(x)
    return total / max(1, n)


def _ce(model, x, y):
    return F.cross_entropy(model(x), y)


def hessian_traces(model: nn.Module, layers: dict[str, nn.Module], data, *, samples: int = 8, loss_fn=None,
                   seed: int = 0) -> dict[str, float]:
    """Hutchinson estimates of Tr(d^2 loss / dW_L^2) per layer: mean of v^T H v, v Rademacher."""
    loss_fn = loss_fn or _ce
    g = torch.Generator().manual_seed(seed)
    params = [l.weight for l in layers.values()]
    traces = {n: 0.0 for n in layers}
    model.eval()
    for x, y in data:
        out = loss_fn(model, x, y)
        loss = out[0] if isinstance(out, tuple) else out
        grads = torch.autograd.grad(loss, params, create_graph=True)
        for s in range(samples):
            vs = [torch.randint(0, 2, p.shape, generator=g).to(p.dtype) * 2 - 1 for p in params]
            hv = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=s < samples - 1)
            for n, v, h in zip(layers, vs, hv):
                traces[n] += float((v * h).sum()) / samples / len(data)
    return traces


def layer_sensitivity(model: nn.Module, data, cfg: MixedConfig = MixedConfig(), *, loss_fn=None) -> dict:
    """{layer: {bits: sensitivity}} for every in-scope layer and candidate."""
    layers = dict(cfg.scope.select(model))
    model.eval()
    out: dict[str, dict[int, float]] = {n: {} for n in layers}
    if cfg.sensitivity == "hessian":
        traces = hessian_traces(model, layers, data, samples=cfg.hutchinson_samples, loss_fn=loss_fn)
        for n, layer in layers.items():
            w = layer.weight.detach()
            for b in cfg.candidate_bits:
                d = _qweight(w, b, cfg.granularity, cfg.weight_method) - w
                out[n][b] = max(traces[n], 0.0) / w.numel() * float((d ** 2).sum())
        return out
    loss_fn = loss_fn or _ce
    base = _loss(model, data, loss_fn)
    for n, layer in layers.items():
        w = layer.weight.data.clone()
        for b in cfg.candidate_bits:
            layer.weight.data.copy_(_qweight(w, b, cfg.granularity, cfg.weight_method))
            out[n][b] = _loss(model, data, loss_fn) - base
        layer.weight.data.copy_(w)
    return out


def choose_bits(sens: dict[str, dict[int, float]], sizes: dict[str, int], avg_bits: float) -> dict[str, int]:
    """Greedy choice of bits per layer so that sum(size*bits)/sum(size) <= avg_bits."""
    bits = {n: max(s) for n, s in sens.items()}
    budget = avg_bits * sum(sizes.values())
    # make sensitivity monotone in bits (fewer bits never look better than more)
    mono = {}
    for n, s in sens.items():
        best, m = float("-inf"), {}
        for b in sorted(s, reverse=True):
            best = max(best, s[b])
            m[b] = best
        mono[n] = m

    def used():
        return sum(sizes[n] * bits[n] for n in bits)

    while used() > budget + 1e-9:
        best = None
        for n, s in mono.items():
            lower = [b for b in s if b < bits[n]]
            if not lower:
                continue
            b2 = max(lower)
            cost = (s[b2] - s[bits[n]]) / (sizes[n] * (bits[n] - b2))
            if best is None or cost < best[0]:
                best = (cost, n, b2)
        if best is None:
            break
        bits[best[1]] = best[2]
    # the steps are coarse (a big layer's step can overshoot): spend what is
    # left of the budget on the upgrades that remove the most sensitivity per bit
    while True:
        best = None
        for n, s in mono.items():
            higher = [b for b in s if b > bits[n]]
            if not higher:
                continue
            b2 = min(higher)
            if used() + sizes[n] * (b2 - bits[n]) > budget + 1e-9:
                continue
            gain = (s[bits[n]] - s[b2]) / (sizes[n] * (b2 - bits[n]))
            if best is None or gain > best[0]:
                best = (gain, n, b2)
        if best is None:
            break
        bits[best[1]] = best[2]
    return bits


def quantize_mixed(model: nn.Module, calib_data, cfg: MixedConfig = MixedConfig(), *, loss_fn=None) -> tuple[nn.Module, dict]:
    """Choose per-layer bits and quantize (weights; activations at
    ``cfg.act_bits`` unless null). Returns (model, report) where
    report = {"bits": {layer: bits}, "sensitivity": ..., "avg_bits": ...}."""
    cfg.scope.check_names(model)
    xs = calib_batches(calib_data, num_batches=cfg.num_batches, batch_size=cfg.batch_size)
    ys = [calib_data.y[i * cfg.batch_size: i * cfg.batch_size + len(x)] for i, x in enumerate(xs)]
    data = list(zip(xs, ys))
    sens = layer_sensitivity(model, data, cfg, loss_fn=loss_fn)
    sizes = {n: l.weight.numel() for n, l in cfg.scope.select(model)}
    bits = choose_bits(sens, sizes, cfg.avg_bits)
    for n, b in bits.items():
        prepare(model, wspec=weight_spec(b, cfg.granularity),
                aspec=act_spec(cfg.act_bits) if cfg.act_bits else None, scope=Scope(names=(n,)))
    if cfg.act_bits:
        calibrate(model, xs)
    set_weight_qparams(model, "minmax" if cfg.weight_method == "rtn" else cfg.weight_method)
    avg = sum(sizes[n] * bits[n] for n in bits) / max(1, sum(sizes.values()))
    report = {"bits": bits, "avg_bits": avg, "sensitivity": {n: {str(b): v for b, v in s.items()} for n, s in sens.items()}}
    model.torchslim_mixed_bits = bits
    return model.eval(), report


@register_handler(MixedConfig)
def _mixed_handler(model, cfg: MixedConfig, ctx):
    model, report = quantize_mixed(model, ctx.calib_data, cfg, loss_fn=ctx.loss_fn)
    return StageResult(model, records={"mixed_bits": report["bits"], "mixed_report": report})
