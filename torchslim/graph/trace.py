"""Tracing: a torch.fx symbolic trace that stops at the layer types the
dependency rules know (they become leaves), followed by shape propagation on
the example inputs so every node carries its tensor shape."""
from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.passes.shape_prop import ShapeProp

from ..core.errors import ModelError

__all__ = ["trace", "TraceError"]


class TraceError(ModelError):
    """torch.fx could not trace the model (data-dependent control flow, ...)."""


class _Tracer(fx.Tracer):
    def __init__(self, leaf_types: tuple[type, ...]):
        super().__init__()
        self.leaf_types = leaf_types

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, self.leaf_types):
            return True
        return super().is_leaf_module(m, qualname)


def trace(model: nn.Module, example_inputs: tuple, leaf_types: tuple[type, ...] = ()) -> fx.GraphModule:
    """Trace ``model`` with torch.fx (modules of ``leaf_types`` kept whole) and
    record every node's output shape in ``node.meta['tensor_meta']``. The
    GraphModule shares the model's submodules; node targets are the model's
    qualified names. Runs the example in eval mode without gradients, so
    BatchNorm statistics are untouched."""
    tracer = _Tracer(tuple(leaf_types))
    try:
        graph = tracer.trace(model)
    except Exception as e:  # fx raises many types (TraceError, TypeError, ...)
        raise TraceError(f"torch.fx cannot trace {type(model).__name__}: {type(e).__name__}: {e}") from None
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*example_inputs)
    except Exception as e:
        raise TraceError(f"the traced {type(model).__name__} does not run on the example inputs: {type(e).__name__}: {e}") from None
    finally:
        model.train(was_training)
    return gm
