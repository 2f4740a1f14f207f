"""Static int8 as a QDQ graph: the float graph with QuantizeLinear /
DequantizeLinear pairs where the fake-quant simulation rounds.

For every Conv / Gemm / MatMul whose weight belongs to a layer in ``params``
(the layout of ``torchslim.quantize.export_params``):

* the weight becomes an int8 initializer (quantized here with the layer's
  scales, per channel along the output axis — axis 0 for Conv and Gemm with
  ``transB=1``, axis 1 for MatMul) read through ``DequantizeLinear``;
* the layer input goes through ``QuantizeLinear`` -> ``DequantizeLinear`` with
  the calibrated scale and zero point (uint8, or int8 when ``input_signed``;
  one pair shared by all layers reading the same tensor with the same
  parameters); activations below 8 bits get a ``Clip`` to their narrower range;
* a Conv / Gemm bias becomes int32 with scale ``input_scale * weight_scale``
  (the form ONNX Runtime's QDQ fusions require).

ONNX Runtime then fuses DQ -> Conv/Gemm/MatMul -> Q groups into integer kernels
(QLinearConv, QGemm, MatMulIntegerToFloat ...). Agreement with the simulation
(documented tolerance, tested in tests/export): weights and input rounding are
identical by construction; the int32 bias adds at most ``0.5 * input_scale *
weight_scale`` per output, and fused kernels requantize in fixed point, so an
intermediate value on a rounding boundary can move by one step. In practice
the logits agree to a few hundredths and the predicted classes to >= 99%.
"""
from __future__ import annotations

import numpy as np
import torch

from .onnx_graph import GraphEditor, match_weights
from .qweight import qrange, quantize_weight, to_numpy_scale

__all__ = ["write_qdq"]


# Ops with f(Q(x)) == Q(f(x)) for a per-tensor quantizer (monotone or pure data movement).
_PASSTHROUGH = {"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity"}


def _weight_axis_layout(op: str, node, transposed: bool) -> int:
    """Axis of the output channels in the ONNX weight initializer."""
    if op == "Conv":
        return 0
    return 1 if transposed else 0


class _QDQWriter:
    def __init__(self, proto, model, params: dict):
        self.ed = GraphEditor(proto)
        self.modules = dict(model.named_modules())
        self.wmap = match_weights(proto, model)
        self.params = params
        self.shared: dict[tuple, str] = {}
        self.input_q: dict[str, tuple] = {}  # tensor -> (scale name, zero point name) of its 8-bit QDQ
        self.layer_nodes: list[tuple[int, str]] = []  # (node index, output tensor) of rewritten layers
        self.quantized: list[str] = []
        self._graph_outputs = {o.name for o in self.ed.graph.output}

    def _input_qdq(self, x: str, p: dict, layer: str) -> tuple[list, str]:
        from onnx import helper

        scale = float(p["input_scale"])
        zp = int(p.get("input_zero_point", 0))
        bits = int(p.get("input_bits", 8))
        signed = bool(p.get("input_signed", False))
        key = (x, scale, zp, bits, signed)
        if key in self.shared:
            return [], self.shared[key]
        tag = layer.replace(".", "_") + "_input"
        s = self.ed.add_init(f"{tag}_scale", np.array(scale, dtype=np.float32))
        z = self.ed.add_init(f"{tag}_zero_point", np.array(zp, dtype=np.int8 if signed else np.uint8))
        xq, xd = self.ed.fresh(f"{tag}_quantized"), self.ed.fresh(f"{tag}_dequantized")
        nodes = [helper.make_node("QuantizeLinear", [x, s, z], [xq], name=self.ed.fresh(f"{tag}_Q")),
                 helper.make_node("DequantizeLinear", [xq, s, z], [xd], name=self.ed.fresh(f"{tag}_DQ"))]
        if bits < 8:
            lo, hi = qrange(bits, signed)
            mn = self.ed.add_init(f"{tag}_min", np.array((lo - zp) * scale, dtype=np.float32))
            mx = self.ed.add_init(f"{tag}_max", np.array((hi - zp) * scale, dtype=np.float32))
            xc = self.ed.fresh(f"{tag}_clipped")
            nodes.append(helper.make_node("Clip", [xd, mn, mx], [xc], name=self.ed.fresh(f"{tag}_Clip")))
            xd = xc
        self.shared[key] = xd
        if bits == 8:
            self.input_q.setdefault(x, (s, z, tag))
        return nodes, xd

    def rewrite(self, idx: int, node) -> None:
        from onnx import helper

        op = node.op_type
        hit = self.wmap.get(node.input[1]) if len(node.input) > 1 else None
        if hit is None:
            return
        layer, transposed = hit
        p = self.params.get(layer)
        if p is None or p.get("input_scale") is None:
            return
        if op == "Gemm":
            attrs = {a.name: a for a in node.attribute}
            trans_b = bool(attrs["transB"].i) if "transB" in attrs else False
            if trans_b == transposed or (attrs.get("transA") and attrs["transA"].i):
                return
        elif op == "MatMul" and not transposed:
            return
        weight = self.modules[layer].weight.detach()
        bits = int(p.get("weight_bits", 8))
        w_scale = torch.as_tensor(p["weight_scale"], dtype=torch.float32)
        w_zp = torch.as_tensor(p.get("weight_zero_point", 0))
        per_channel = w_scale.dim() > 0 and w_scale.numel() > 1
        q = quantize_weight(weight, w_scale, w_zp, bits=bits, axis=0 if per_channel else None)
        if transposed:
            q = np.ascontiguousarray(q.T)
        axis = _weight_axis_layout(op, node, transposed)
        tag = layer
        wq = self.ed.add_init(f"{tag}.weight_quantized", q)
        ws = self.ed.add_init(f"{tag}.weight_scale", to_numpy_scale(w_scale if per_channel else w_scale.reshape(())))
        wz = self.ed.add_init(f"{tag}.weight_zero_point",
                              np.asarray(w_zp.numpy() if per_channel else w_zp.reshape(()).numpy(), dtype=np.int8))
        wd = self.ed.fresh(f"{tag}.weight_dequantized")
        dq_kw = {"axis": axis} if per_channel else {}
        nodes = [helper.make_node("DequantizeLinear", [wq, ws, wz], [wd], name=self.ed.fresh(f"{tag}_weight_DQ"), **dq_kw)]
        in_nodes, xd = self._input_qdq(node.input[0], p, layer)
        nodes = in_nodes + nodes
        inputs = [xd, wd] + list(node.input[2:])
        if op in ("Conv", "Gemm") and len(node.input) > 2 and node.input[2] in self.ed.inits:
            bias = self.ed.array(node.input[2]).astype(np.float64)
            bscale = float(p["input_scale"]) * w_scale.double().numpy()
            bscale = np.broadcast_to(bscale, bias.shape) if not per_channel else bscale
            bq = np.clip(np.round(bias / bscale), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
            bq_name = self.ed.add_init(f"{tag}.bias_quantized", bq)
            bs_name = self.ed.add_init(f"{tag}.bias_scale", np.asarray(bscale, dtype=np.float32))
            bz_name = self.ed.add_init(f"{tag}.bias_zero_point", np.zeros(bias.shape, dtype=np.int32))
            bd = self.ed.fresh(f"{tag}.bias_dequantized")
            nodes.append(helper.make_node("DequantizeLinear", [bq_name, bs_name, bz_name], [bd],
                                          name=self.ed.fresh(f"{tag}_bias_DQ"), axis=0))
            inputs[2] = bd
        new = helper.make_node(op, inputs, list(node.output), name=node.name or self.ed.fresh(f"{tag}_{op}"))
        new.attribute.extend(node.attribute)
        nodes.append(new)
        self.ed.replace[idx] = nodes
        self.layer_nodes.append((idx, node.output[0]))
        self.quantized.append(layer)

    def requantize_outputs(self) -> None:
        """Q/DQ right after a quantized layer whose output reaches the next
        quantized input only through ops that commute with rounding (MaxPool,
        Reshape, Flatten, ...): same scale as that input, so the values are
        unchanged, and ONNX Runtime can fuse the layer into an integer kernel
        with a quantized output (QLinearConv) instead of leaving it in float."""
        from onnx import helper

        for idx, y in self.layer_nodes:
            t = y
            while t not in self.input_q:
                users = self.ed.consumers.get(t, [])
                if len(users) != 1 or users[0].op_type not in _PASSTHROUGH or t in self._graph_outputs:
                    break
                t = users[0].output[0]
            if t not in self.input_q or t == y:
                continue  # the layer output is itself quantized by its consumer already
            s, z, tag = self.input_q[t]
            layer_node = self.ed.replace[idx][-1]
            pre = self.ed.fresh(f"{y}_float")
            layer_node.output[0] = pre
            yq = self.ed.fresh(f"{tag}_requantized")
            self.ed.replace[idx] += [
                helper.make_node("QuantizeLinear", [pre, s, z], [yq], name=self.ed.fresh(f"{tag}_outQ")),
                helper.make_node("DequantizeLinear", [yq, s, z], [y], name=self.ed.fresh(f"{tag}_outDQ")),
            ]


def write_qdq(proto, model: torch.nn.Module, params: dict):
    """Rewrite the float ``proto`` (exported from ``model``) as a static int8
    QDQ graph; returns ``(proto, quantized_layer_names)``. Layers missing from
    ``params`` or without an ``input_scale`` stay float."""
    w = _QDQWriter(proto, model, params)
    for idx, node in enumerate(list(w.ed.graph.node)):
        if node.op_type in ("Conv", "Gemm", "MatMul") and node.domain in ("", "ai.onnx"):
            w.rewrite(idx, node)
    w.requantize_outputs()
    return w.ed.commit(), w.quantized
