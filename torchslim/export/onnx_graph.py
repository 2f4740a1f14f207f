"""Small ONNX graph-editing helpers shared by the QDQ and dynamic writers:
initializer lookup, fresh names, node insertion in topological order, and the
map from ONNX weight initializers back to the PyTorch layers they came from.

The TorchScript exporter names a Linear's weight ``<layer>.weight`` when it
becomes a Gemm, but constant-folds the transpose into a fresh
``onnx::MatMul_*`` initializer when the Linear becomes a MatMul (inputs of rank
3, as in transformers). So layers are matched by value: an initializer belongs
to the layer whose weight (or its transpose) it equals bit for bit.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn as nn

__all__: list[str] = []

QUANTIZABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _key(a: np.ndarray) -> tuple:
    a = np.ascontiguousarray(a, dtype=np.float32)
    return a.shape, hashlib.sha1(a.tobytes()).hexdigest()


def layer_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: m.weight.detach() for name, m in model.named_modules() if isinstance(m, QUANTIZABLE)}


def match_weights(proto, model: nn.Module) -> dict[str, tuple[str, bool]]:
    """``{initializer name: (layer name, transposed)}``; ``transposed`` means
    the initializer holds ``weight.T`` (a Linear exported as MatMul)."""
    from onnx import numpy_helper

    keys: dict[tuple, tuple[str, bool]] = {}
    for name, w in layer_weights(model).items():
        a = w.float().cpu().numpy()
        keys.setdefault(_key(a), (name, False))
        if a.ndim == 2:
            keys.setdefault(_key(a.T), (name, True))
    out = {}
    for init in proto.graph.initializer:
        if init.data_type != 1 or len(init.dims) < 2:
            continue
        hit = keys.get(_key(numpy_helper.to_array(init)))
        if hit is not None:
            out[init.name] = hit
    return out


def match_array(a: np.ndarray, model: nn.Module) -> tuple[str, bool] | None:
    """The layer whose weight (or transpose) equals ``a``."""
    k = _key(a)
    for name, w in layer_weights(model).items():
        b = w.float().cpu().numpy()
        if _key(b) == k:
            return name, False
        if b.ndim == 2 and _key(b.T) == k:
            return name, True
    return None


class GraphEditor:
    """Collects replacements for a graph and rebuilds it in order: every node
    is replaced by the list of nodes that should stand in its place."""

    def __init__(self, proto):
        self.proto = proto
        self.graph = proto.graph
        self.inits = {i.name: i for i in self.graph.initializer}
        self._names = {n for n in self.inits} | {o for n in self.graph.node for o in n.output} \
            | {i.name for i in self.graph.input} | {n.name for n in self.graph.node}
        self.new_inits: list = []
        self.replace: dict[int, list] = {}
        self.before: dict[int, list] = {}
        self.consumers: dict[str, list] = {}
        for node in self.graph.node:
            for i in node.input:
                self.consumers.setdefault(i, []).append(node)
        self.producer = {o: n for n in self.graph.node for o in n.output}

    def fresh(self, base: str) -> str:
        base = base.replace("/", "_").strip("_") or "t"
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def array(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        init = self.inits.get(name)
        return None if init is None else numpy_helper.to_array(init)

    def add_init(self, base: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.fresh(base)
        t = numpy_helper.from_array(np.asarray(value), name)
        self.new_inits.append(t)
        self.inits[name] = t
        return name

    def commit(self):
        """Rebuild the graph and drop initializers nothing reads any more."""
        nodes = []
        for idx, node in enumerate(self.graph.node):
            nodes.extend(self.before.get(idx, []))
            nodes.extend(self.replace.get(idx, [node]))
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        self.graph.initializer.extend(self.new_inits)
        self.new_inits = []
        used = {i for n in self.graph.node for i in n.input} | {o.name for o in self.graph.output}
        keep = [i for i in self.graph.initializer if i.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep)
        return self.proto


def ensure_opset(proto, domain: str, version: int = 1) -> None:
    for op in proto.opset_import:
        if op.domain == domain:
            return
    from onnx import helper

    proto.opset_import.append(helper.make_opsetid(domain, version))
