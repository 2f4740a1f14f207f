"""ONNX graph clean-up after export: arithmetic that cannot change its input.

The zoo models carry their input normalisation inside (``(x - mean) / std``),
and for data sets with ``mean=0, std=1`` the traced graph keeps a ``Sub`` of 0
and a ``Div`` by 1. ONNX Runtime does not remove them, and at batch 1 each node
costs a few microseconds of a small model's ~0.1-0.2 ms, the same in every
model exported, pruned or not. ``drop_identity_arithmetic`` bypasses exactly

* ``Add(x, 0)``, ``Add(0, x)``, ``Sub(x, 0)``,
* ``Mul(x, 1)``, ``Mul(1, x)``, ``Div(x, 1)``,

where the constant is a one-element scalar (rank 0, so broadcasting cannot
change the shape) initializer or ``Constant`` node of the same float type as
the graph computes in, and the node's output is not a graph output. Anything
else is left as it is. The outputs are unchanged bit for bit (x - 0.0, x * 1.0
and x / 1.0 are x in IEEE arithmetic; x + 0.0 is x except that -0.0 becomes
+0.0).
"""
from __future__ import annotations

import numpy as np

__all__ = ["drop_identity_arithmetic"]

_NEUTRAL = {"Add": (0.0, (0, 1)), "Sub": (0.0, (1,)), "Mul": (1.0, (0, 1)), "Div": (1.0, (1,))}


def _scalar_constants(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    out: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        if len(init.dims) == 0:
            out[init.name] = numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and len(node.output) == 1:
            for attr in node.attribute:
                if attr.name == "value" and len(attr.t.dims) == 0:
                    out[node.output[0]] = numpy_helper.to_array(attr.t)
    return out


def drop_identity_arithmetic(proto):
    """Remove the identity Add/Sub/Mul/Div nodes of ``proto`` (in place; the
    proto is also returned), then the constants only they read."""
    graph = proto.graph
    consts = _scalar_constants(graph)
    graph_outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    keep = []
    for node in graph.node:
        inputs = [rename.get(i, i) for i in node.input]
        del node.input[:]
        node.input.extend(inputs)
        rule = _NEUTRAL.get(node.op_type)
        if rule is not None and len(inputs) == 2 and node.output[0] not in graph_outputs:
            neutral, positions = rule
            for pos in positions:
                c = consts.get(inputs[pos])
                other = inputs[1 - pos]
                if (c is not None and c.dtype.kind == "f" and c.size == 1 and float(c) == neutral
                        and other not in consts):
                    rename[node.output[0]] = other
                    break
            else:
                keep.append(node)
            continue
        keep.append(node)
    if rename:
        del graph.node[:]
        graph.node.extend(keep)
        used = {i for n in graph.node for i in n.input} | graph_outputs
        # Constant nodes whose only reader was removed
        live = [n for n in graph.node if not (n.op_type == "Constant" and n.output[0] not in used)]
        del graph.node[:]
        graph.node.extend(live)
        dead = [init for init in graph.initializer if init.name not in used]
        for init in dead:
            graph.initializer.remove(init)
    return proto
