"""Unstructured importance criteria: one score per weight element (higher =
more important), for every layer asked about.

* ``l1`` / ``l2`` / ``max``  magnitude. Per element these rank identically
  (|w|, w^2, |w|); they differ when scores are pooled over blocks
  (``block=(rows, cols)``: L1 sum, L2 norm, max of |w| in each block).
* ``random``    uniform random scores (a control), seeded.
* ``gradient``  mean |dL/dw| over a few batches (gradient sensitivity).
* ``taylor``    mean |w * dL/dw| over a few batches (first-order Taylor).
* ``obd_fisher`` Optimal Brain Damage, 0.5 * H_ii * w^2, with the diagonal
  Hessian estimated by the empirical Fisher: the mean of squared *per-sample*
  gradients (computed with torch.func.vmap, or one sample at a time when the
  model cannot be vmapped).
* ``obd_hutchinson`` OBD with diag(H) ~ E[z * (H z)], Rademacher z,
  Hessian-vector products by double backward (Hutchinson's estimator).

Scores are taken with respect to the *effective* weight: on a layer that is
already masked (``weight_orig``/``weight_mask``), gradients are those of the
masked weight and the criterion sees ``weight_orig * weight_mask``.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import ConfigError, DataError

__all__ = ["CRITERIA", "DATA_CRITERIA", "importance_scores", "effective_weight"]

MAGNITUDE = ("l1", "l2", "max")
DATA_CRITERIA = ("gradient", "taylor", "obd_fisher", "obd_hutchinson")
CRITERIA = MAGNITUDE + ("random",) + DATA_CRITERIA


def _param(module: nn.Module) -> nn.Parameter:
    """The trainable tensor behind ``module.weight`` (``weight_orig`` when masked)."""
    return getattr(module, "weight_orig", None) if hasattr(module, "weight_orig") else module.weight


def effective_weight(module: nn.Module) -> torch.Tensor:
    if hasattr(module, "weight_orig"):
        return (module.weight_orig * module.weight_mask).detach()
    return module.weight.detach()


def _pool_blocks(score: torch.Tensor, block: tuple[int, int], how: str, where: str) -> torch.Tensor:
    """Pool element scores over (rows, cols) blocks of the 2-D view (out, in*k) and
    broadcast each block's score back to its elements."""
    br, bc = block
    w2 = score.reshape(score.shape[0], -1)
    rows, cols = w2.shape
    if rows % br or cols % bc:
        raise ConfigError(f"layer {where!r}: weight view {rows}x{cols} is not divisible by block {br}x{bc}; "
                          "choose a block that divides it or exclude the layer with the scope")
    b = w2.reshape(rows // br, br, cols // bc, bc)
    if how == "l1":
        pooled = b.abs().sum((1, 3))
    elif how == "l2":
        pooled = b.pow(2).sum((1, 3)).sqrt()
    else:
        pooled = b.abs().amax((1, 3))
    return pooled[:, None, :, None].expand_as(b).reshape(score.shape).clone()


def _default_loss(net, x, y):
    return F.cross_entropy(net(x), y)


def _loss_value(loss_fn, net, x, y) -> torch.Tensor:
    out = loss_fn(net, x, y)
    return out[0] if isinstance(out, tuple) else out


def _batches(data, batches: int, batch_size: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if data is None:
        raise DataError("this importance criterion needs data (a few batches of calibration data); "
                        "pass data=ctx.calib_data or use a magnitude criterion")
    g = torch.Generator().manual_seed(seed)
    n = len(data)
    idx = torch.randperm(n, generator=g)[: batches * batch_size]
    return [(data.x[idx[i: i + batch_size]], data.y[idx[i: i + batch_size]])
            for i in range(0, len(idx), batch_size)]


def importance_scores(model: nn.Module, modules: dict[str, nn.Module], criterion: str = "l1", *,
                      data=None, loss_fn: Callable | None = None, batches: int = 4, batch_size: int = 128,
                      block: tuple[int, int] | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Scores shaped like each module's weight, keyed by the module's name.

    ``data`` (an ArrayDataset, normally ``ctx.calib_data``) and ``loss_fn``
    (``fn(net, x, y)``; cross-entropy when None) are used by the gradient,
    Taylor and OBD criteria, accumulated over ``batches`` batches."""
    if criterion not in CRITERIA:
        raise ConfigError(f"unknown importance criterion {criterion!r}; use one of {list(CRITERIA)}")
    if block is not None and criterion not in MAGNITUDE:
        raise ConfigError(f"block pooling is defined for magnitude criteria {list(MAGNITUDE)}, not {criterion!r}")
    if criterion in MAGNITUDE:
        out = {}
        for name, m in modules.items():
            w = effective_weight(m)
            if block:
                out[name] = _pool_blocks(w.abs(), block, criterion, name)
            else:
                out[name] = w.pow(2) if criterion == "l2" else w.abs()
        return out
    if criterion == "random":
        g = torch.Generator().manual_seed(seed)
        return {name: torch.rand(m.weight.shape, generator=g) for name, m in modules.items()}
    loss_fn = loss_fn or _default_loss
    data_batches = _batches(data, batches, batch_size, seed)
    was_training = model.training
    model.eval()
    try:
        if criterion in ("gradient", "taylor"):
            acc = _grad_abs(model, modules, data_batches, loss_fn, taylor=criterion == "taylor")
        elif criterion == "obd_fisher":
            h = _fisher_diag(model, modules, data_batches, loss_fn)
            acc = {n: 0.5 * h[n] * effective_weight(m).pow(2) for n, m in modules.items()}
        else:
            h = _hutchinson_diag(model, modules, data_batches, loss_fn, seed=seed)
            acc = {n: 0.5 * h[n].clamp_min(0) * effective_weight(m).pow(2) for n, m in modules.items()}
    finally:
        model.train(was_training)
    return acc


def _grad_abs(model, modules, data_batches, loss_fn, *, taylor: bool) -> dict[str, torch.Tensor]:
    params = {n: _param(m) for n, m in modules.items()}
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    for x, y in data_batches:
        loss = _loss_value(loss_fn, model, x, y)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (n, m), g in zip(modules.items(), grads):
            if g is None:
                continue
            g = g.detach()
            acc[n] += (g * effective_weight(m)).abs() if taylor else g.abs()
    return {n: a / len(data_batches) for n, a in acc.items()}


def _fisher_diag(model, modules, data_batches, loss_fn, chunk: int = 32) -> dict[str, torch.Tensor]:
    """Mean over samples of the squared per-sample gradient (empirical Fisher)."""
    from torch.func import functional_call, grad, vmap

    named = dict(model.named_parameters())
    by_id = {id(p): k for k, p in named.items()}
    keys = {n: by_id[id(_param(m))] for n, m in modules.items()}
    acc = {n: torch.zeros_like(_param(m)) for n, m in modules.items()}
    count = 0
    selected = {k: named[k].detach() for k in keys.values()}
    others = {k: p.detach() for k, p in named.items() if k not in selected}
    buffers = dict(model.named_buffers())

    def sample_loss(sel, x, y):  # per-sample gradients only for the scored weights (memory ~ chunk x their size)
        net = lambda inp: functional_call(model, ({**others, **sel}, buffers), (inp,))  # noqa: E731
        return _loss_value(loss_fn, net, x[None], y[None])

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    for x, y in data_batches:
        for i in range(0, len(y), chunk):
            xs, ys = x[i: i + chunk], y[i: i + chunk]
            try:
                grads = per_sample(selected, xs, ys)
                for n, k in keys.items():
                    acc[n] += grads[k].pow(2).sum(0)
            except Exception:  # a model vmap cannot trace (data-dependent control flow): one sample at a time
                for j in range(len(ys)):
                    loss = _loss_value(loss_fn, model, xs[j: j + 1], ys[j: j + 1])
                    gs = torch.autograd.grad(loss, [_param(m) for m in modules.values()], allow_unused=True)
                    for n, g in zip(modules, gs):
                        if g is not None:
                            acc[n] += g.detach().pow(2)
            count += len(ys)
    return {n: a / max(1, count) for n, a in acc.items()}


def _hutchinson_diag(model, modules, data_batches, loss_fn, *, seed: int, probes: int = 4) -> dict[str, torch.Tensor]:
    """diag(H) ~ mean over probes z (Rademacher) of z * (H z), per batch, averaged."""
    params = [_param(m) for m in modules.values()]
    acc = [torch.zeros_like(p) for p in params]
    g = torch.Generator().manual_seed(seed)
    n = 0
    for x, y in data_batches:
        loss = _loss_value(loss_fn, model, x, y)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        live = [(i, gr) for i, gr in enumerate(grads) if gr is not None]
        for k in range(probes):
            zs = [torch.randint(0, 2, params[i].shape, generator=g).to(params[i].dtype) * 2 - 1 for i, _ in live]
            hz = torch.autograd.grad([gr for _, gr in live], [params[i] for i, _ in live], grad_outputs=zs,
                                     retain_graph=k < probes - 1, allow_unused=True)
            for (i, _), z, h in zip(live, zs, hz):
                if h is not None:
                    acc[i] += z * h.detach()
            n += 1
    return {name: a / max(1, n) for name, a in zip(modules, acc)}

