"""Calibration data plumbing: iterate N batches of a data set, and capture the
inputs a given layer sees (after its own input quantizer) in the current model."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..core.errors import DataError

__all__ = ["calib_batches", "capture_inputs", "run_batches"]


def calib_batches(data, *, num_batches: int, batch_size: int):
    """The first ``num_batches`` batches of ``data`` inputs (no shuffling: the
    calibration split is already a random holdout of train)."""
    if data is None:
        raise DataError("calibration needs data: set ctx.calib_data (a split of train, e.g. zoo.split_train)")
    x = data.x if hasattr(data, "x") else data
    n = min(len(x), num_batches * batch_size)
    if n == 0:
        raise DataError("the calibration data set is empty")
    return [x[i: i + batch_size] for i in range(0, n, batch_size)]


@torch.no_grad()
def run_batches(model: nn.Module, batches) -> None:
    was = model.training
    model.eval()
    try:
        for x in batches:
            model(x)
    finally:
        model.train(was)


@torch.no_grad()
def capture_inputs(model: nn.Module, layer: nn.Module, batches, *, quantized: bool = True) -> torch.Tensor:
    """Concatenated inputs of ``layer`` over ``batches`` (run through ``model``);
    with ``quantized`` they pass through the layer's enabled input quantizer."""
    seen: list[torch.Tensor] = []

    def hook(mod, args):
        x = args[0]
        iq = getattr(mod, "input_quant", None)
        if quantized and iq is not None and iq.enabled:
            observing, iq.observing = iq.observing, False
            x = iq(x)
            iq.observing = observing
        seen.append(x.detach().clone())

    h = layer.register_forward_pre_hook(hook)
    try:
        run_batches(model, batches)
    finally:
        h.remove()
    return torch.cat(seen)
