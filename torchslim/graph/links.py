"""Layer-to-layer links read off the executed graph (``graph.export``): the
same trace the dependency analysis walks, used by the other passes that need
to know which layer feeds which.

* ``bn_pairs``: (layer, BatchNorm) where the BatchNorm's input is the layer's
  output and nothing else reads it (foldable).
* ``unit_links``: {A: (B, k)}: layer A's outputs reach layer B alone, through
  ops that keep units apart (activations, BatchNorm, dropout, pooling,
  flatten); unit j of A is read by B's input columns ``j*k .. j*k+k-1``
  (k > 1 when a conv channel is flattened into a Linear).

Both name modules by their qualified names in the model; layers are only
linked when their weights are the module's own parameters (``PRef``), so a
pass can act on the module.
"""
from __future__ import annotations

import torch.fx as fx
import torch.nn as nn

from .aten import op_name as _op
from .aten import tensor_shape as _shape
from .export import ExportedGraph, export_graph

__all__ = ["bn_pairs", "unit_links", "unit_links_with_path"]

_LAYER_OPS = {"linear": 1, "conv1d": 1, "conv2d": 1, "convolution": 1}  # op -> index of the weight argument
_BN_OPS = ("batch_norm", "_native_batch_norm_legit_no_training")
_PER_UNIT = ("relu", "relu_", "gelu", "silu", "sigmoid", "tanh", "hardtanh", "hardswish", "leaky_relu", "elu",
             "dropout", "dropout_", "max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d", "adaptive_avg_pool2d",
             "adaptive_avg_pool1d", "contiguous", "clone", "alias", "detach")


def _owner(eg: ExportedGraph, n) -> tuple[str, str] | None:
    return eg.tensors.get(n.name) if isinstance(n, fx.Node) and n.op == "placeholder" else None


def _layer(eg: ExportedGraph, node: fx.Node, *, grouped: bool = False) -> str | None:
    """The module a linear/conv node's weight belongs to (groups 1 only,
    unless ``grouped``)."""
    op = _op(node)
    if op not in _LAYER_OPS or len(node.args) < 2:
        return None
    w = _owner(eg, node.args[1])
    if w is None or w[1] != "weight":
        return None
    groups = node.args[6] if op in ("conv1d", "conv2d") and len(node.args) > 6 else (
        node.args[8] if op == "convolution" and len(node.args) > 8 else 1)
    return w[0] if groups == 1 or grouped else None


def _single_data_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    if len(users) != 1:
        return None
    nxt = users[0]
    if not nxt.args or nxt.args[0] is not node:
        return None
    if any(a is node for a in list(nxt.args[1:]) + list(nxt.kwargs.values())):
        return None
    return nxt


def _exported(model: nn.Module, example_inputs) -> ExportedGraph:
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    return export_graph(model, inputs)


def bn_pairs(model: nn.Module, example_inputs, *, graph: ExportedGraph | None = None) -> list[tuple[str, str]]:
    """(layer, BatchNorm) module pairs that can be folded; raises
    ``TraceError`` if the model cannot be exported."""
    eg = graph or _exported(model, example_inputs)
    out = []
    for node in eg.gm.graph.nodes:
        if node.op != "call_function" or _op(node) not in _BN_OPS:
            continue
        src = node.args[0]
        if not isinstance(src, fx.Node) or len(src.users) != 1:
            continue
        layer = _layer(eg, src, grouped=True)
        stats = _owner(eg, node.args[3]) if len(node.args) > 3 else None
        if layer is not None and stats is not None:
            out.append((layer, stats[0]))
    return out


def unit_links(model: nn.Module, example_inputs, *, graph: ExportedGraph | None = None
               ) -> dict[str, tuple[str, int]]:
    """{A: (B, k)} (see the module docstring); raises ``TraceError`` if the
    model cannot be exported."""
    return {a: (b, k) for a, (b, k, _) in unit_links_with_path(model, example_inputs, graph=graph).items()}


def unit_links_with_path(model: nn.Module, example_inputs, *, graph: ExportedGraph | None = None
                         ) -> dict[str, tuple[str, int, list[str]]]:
    """``unit_links`` plus, per link, the BatchNorm modules between A and B
    (the only stateful ops a link passes through)."""
    eg = graph or _exported(model, example_inputs)
    links = {}
    for node in eg.gm.graph.nodes:
        a = _layer(eg, node) if node.op == "call_function" else None
        if a is None:
            continue
        units = _shape(node)[1] if _op(node) != "linear" else _shape(node)[-1]
        cur, flattened, path = node, False, []
        while True:
            nxt = _single_data_user(cur)
            if nxt is None or nxt.op != "call_function":
                break
            op = _op(nxt)
            b = _layer(eg, nxt)
            if b is not None:
                if flattened and op != "linear":
                    break
                n_in = _shape(nxt.args[0])[-1] if op == "linear" else _shape(nxt.args[0])[1]
                if n_in % units == 0 and (flattened or n_in == units):
                    links[a] = (b, n_in // units, path)
                break
            if op in _BN_OPS:
                stats = _owner(eg, nxt.args[3]) if len(nxt.args) > 3 else None
                if stats is None:
                    break
                path.append(stats[0])
                cur = nxt
                continue
            if op in _PER_UNIT:
                cur = nxt
                continue
            if op in ("flatten", "view", "reshape", "_unsafe_view") and _op(node) != "linear":
                src, dst = _shape(nxt.args[0]), _shape(nxt)
                if len(dst) == 2 and dst[0] == src[0]:
                    flattened = True
                    cur = nxt
                    continue
            break
    return links
