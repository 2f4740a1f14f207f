"""Dynamic int8 ONNX graphs: weights quantized ahead (int8, per output
channel), activations quantized per tensor at run time.

Every Linear that became a ``MatMul`` or ``Gemm`` is rewritten in standard
ONNX operators as::

    x ─ DynamicQuantizeLinear ─ xq(uint8), xs, xz
    MatMulInteger(xq, Wq int8 [K, N], xz, wz int8 [N]) ─ Cast(float) ─ Mul(xs * ws[N]) ─ (+ bias)

which ONNX Runtime fuses at load time into one ``DynamicQuantizeMatMul``
kernel (int8 GEMM, per-column scales, bias). A fused transformer
``Attention`` node (see ``fuse.py``) becomes ``DynamicQuantizeLinear`` +
``QAttention`` with per-column weight scales. A vocabulary table read by ``Gather``
(an embedding of at least ``MIN_TABLE_ROWS`` rows) is stored in int8 with one
symmetric scale per row and dequantized after the lookup (only the gathered
rows are touched at run time). The weights are quantized by
torchslim (``qweight.quantize_weight``): symmetric per channel with
``max|w| / 127`` by default, or with the scales of a quantized model
(``params`` from ``torchslim.quantize.export_params``). Layers named in
``keep`` stay float.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from .onnx_graph import GraphEditor, ensure_opset, match_array, match_weights
from .qweight import quantize_weight, symmetric_weight_scale

__all__ = ["write_dynamic"]

MIN_TABLE_ROWS = 1024

_QATTENTION_ATTRS = ("num_heads", "unidirectional", "mask_filter_value", "scale", "do_rotary",
                     "past_present_share_buffer")


def smoothing_factors(amax: torch.Tensor, weights: list[torch.Tensor], alpha: float) -> torch.Tensor:
    """SmoothQuant per input feature: ``s = amax**alpha / max|W[:, j]|**(1 - alpha)``
    (over all ``weights`` that read the same input); x / s goes to int8, W * s too."""
    wmax = torch.stack([w.detach().abs().reshape(w.shape[0], -1).amax(0) for w in weights]).amax(0)
    s = amax.clamp(min=1e-5) ** alpha / wmax.clamp(min=1e-5) ** (1 - alpha)
    return s.float()


def _layer_qweight(weight: torch.Tensor, params: dict | None):
    """(int8 [out, in...], scale [out] float32, zero point [out] int8) of one layer."""
    out_ch = weight.shape[0]
    if params is not None:
        bits = int(params.get("weight_bits", 8))
        scale = torch.as_tensor(params["weight_scale"], dtype=torch.float32)
        zp = torch.as_tensor(params.get("weight_zero_point", 0))
        axis = params.get("weight_axis", 0)
        q = quantize_weight(weight, scale, zp, bits=bits, axis=axis if scale.dim() else None)
    else:
        scale = symmetric_weight_scale(weight, axis=0)
        zp = torch.zeros(out_ch, dtype=torch.int64)
        q = quantize_weight(weight, scale, 0, axis=0)
    scale = scale.expand(out_ch) if scale.dim() == 0 else scale
    zp = zp.expand(out_ch) if zp.dim() == 0 else zp
    return q, scale.float().numpy().astype(np.float32), zp.numpy().astype(np.int8)


class _Writer:
    def __init__(self, proto, model, keep: set[str], params: dict | None, amax: dict | None = None,
                 alpha: float = 0.7):
        self.ed = GraphEditor(proto)
        self.modules = dict(model.named_modules())
        self.wmap = match_weights(proto, model)
        self.model = model
        self.keep = keep
        self.params = params or {}
        self.quantized: list[str] = []
        self.amax = amax or {}
        self.alpha = alpha

    def _smooth(self, x: str, layers: list[str], tag: str) -> tuple[list, str, torch.Tensor | None]:
        """(nodes, new input, s): ``x / s`` when the layers are smoothed."""
        from onnx import helper

        if not all(n in self.amax for n in layers):
            return [], x, None
        s = smoothing_factors(self.amax[layers[0]], [self.modules[n].weight for n in layers], self.alpha)
        inv = self.ed.add_init(f"{tag}_smooth_inv", (1.0 / s).numpy().astype(np.float32))
        xs = self.ed.fresh(f"{tag}_smoothed")
        return [helper.make_node("Mul", [x, inv], [xs], name=self.ed.fresh(f"{tag}_Smooth"))], xs, s

    def _qparams(self, layer: str):
        p = self.params.get(layer)
        return None if p is None or p.get("weight_scale") is None else p

    def _dql(self, x: str, tag: str):
        from onnx import helper

        xq, xs, xz = (self.ed.fresh(f"{tag}_{s}") for s in ("quantized", "scale", "zero_point"))
        return helper.make_node("DynamicQuantizeLinear", [x], [xq, xs, xz], name=self.ed.fresh(f"{tag}_DQL")), xq, xs, xz

    def _int_matmul(self, x: str, layer: str, y: str, bias: str | None) -> list:
        """Nodes computing y = x @ W.T (+ bias) with int8 weights of ``layer``."""
        from onnx import TensorProto, helper

        weight = self.modules[layer].weight.detach()
        tag = layer.replace(".", "_")
        pre, x, s_in = self._smooth(x, [layer], tag)
        if s_in is not None:
            weight = weight * s_in
        q, scale, zp = _layer_qweight(weight, None if s_in is not None else self._qparams(layer))
        wq = self.ed.add_init(f"{layer}.weight_int8", np.ascontiguousarray(q.reshape(q.shape[0], -1).T))
        ws = self.ed.add_init(f"{layer}.weight_scale", scale)
        wz = self.ed.add_init(f"{layer}.weight_zero_point", zp)
        dql, xq, xs, xz = self._dql(x, tag)
        acc, accf, s, = self.ed.fresh(f"{tag}_int32"), self.ed.fresh(f"{tag}_acc"), self.ed.fresh(f"{tag}_out_scale")
        out = self.ed.fresh(f"{tag}_mm") if bias else y
        nodes = pre + [
            dql,
            helper.make_node("MatMulInteger", [xq, wq, xz, wz], [acc], name=self.ed.fresh(f"{tag}_MatMulInteger")),
            helper.make_node("Cast", [acc], [accf], to=TensorProto.FLOAT, name=self.ed.fresh(f"{tag}_Cast")),
            helper.make_node("Mul", [xs, ws], [s], name=self.ed.fresh(f"{tag}_ScaleMul")),
            helper.make_node("Mul", [accf, s], [out], name=self.ed.fresh(f"{tag}_Mul")),
        ]
        if bias:
            nodes.append(helper.make_node("Add", [out, bias], [y], name=self.ed.fresh(f"{tag}_BiasAdd")))
        self.quantized.append(layer)
        return nodes

    def matmul(self, idx: int, node) -> None:
        hit = self.wmap.get(node.input[1])
        if hit is None or not hit[1] or hit[0] in self.keep:
            return
        self.ed.replace[idx] = self._int_matmul(node.input[0], hit[0], node.output[0], None)

    def gemm(self, idx: int, node) -> None:
        attrs = {a.name: a for a in node.attribute}
        if attrs.get("transA") and attrs["transA"].i or any(
                k in attrs and abs(attrs[k].f - 1.0) > 0 for k in ("alpha", "beta")):
            return
        trans_b = bool(attrs["transB"].i) if "transB" in attrs else False
        hit = self.wmap.get(node.input[1])
        if hit is None or hit[1] == trans_b or hit[0] in self.keep:
            return
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        self.ed.replace[idx] = self._int_matmul(node.input[0], hit[0], node.output[0], bias)

    def gather(self, idx: int, node) -> None:
        from onnx import TensorProto, helper

        table = self.ed.array(node.input[0])
        attrs = {a.name: a.i for a in node.attribute}
        if (table is None or table.ndim != 2 or table.dtype != np.float32 or table.shape[0] < MIN_TABLE_ROWS
                or attrs.get("axis", 0) != 0 or node.input[1] in self.ed.inits):
            return
        w = torch.from_numpy(table.copy())
        scale = symmetric_weight_scale(w, axis=0)
        q = quantize_weight(w, scale, 0, axis=0)
        name = node.input[0].removesuffix(".weight")
        tag = name.replace(".", "_")
        tq = self.ed.add_init(f"{name}.weight_int8", q)
        ts = self.ed.add_init(f"{name}.weight_scale", scale.numpy().astype(np.float32))
        ax = self.ed.add_init(f"{tag}_unsqueeze_axes", np.array([-1], dtype=np.int64))
        rows, rows_f, s, s1 = (self.ed.fresh(f"{tag}_{k}") for k in ("rows_int8", "rows", "row_scale", "row_scale_1"))
        ids = node.input[1]
        self.ed.replace[idx] = [
            helper.make_node("Gather", [tq, ids], [rows], name=self.ed.fresh(f"{tag}_GatherInt8"), axis=0),
            helper.make_node("Gather", [ts, ids], [s], name=self.ed.fresh(f"{tag}_GatherScale"), axis=0),
            helper.make_node("Unsqueeze", [s, ax], [s1], name=self.ed.fresh(f"{tag}_Unsqueeze")),
            helper.make_node("Cast", [rows], [rows_f], to=TensorProto.FLOAT, name=self.ed.fresh(f"{tag}_Cast")),
            helper.make_node("Mul", [rows_f, s1], [node.output[0]], name=self.ed.fresh(f"{tag}_Dequantize")),
        ]
        self.quantized.append(name)

    def attention(self, idx: int, node) -> None:
        from onnx import helper

        w = self.ed.array(node.input[1])
        if w is None or w.ndim != 2 or w.shape[1] % 3:
            return
        blocks = np.split(w, 3, axis=1)
        layers = [match_array(b, self.model) for b in blocks]
        if any(h is None or not h[1] or h[0] in self.keep for h in layers):
            return
        ins = list(node.input) + [""] * (4 - len(node.input))
        if len(ins) > 4 and any(ins[4:]):
            return  # past state / attention bias: not supported by this rewrite, keep float
        tag = layers[0][0].rsplit(".", 1)[0].replace(".", "_") + "_qkv"
        pre, x, s_in = self._smooth(node.input[0], [n for n, _ in layers], tag)
        qs, scales, zps = [], [], []
        for (layer, _) in layers:
            wt = self.modules[layer].weight.detach()
            wt = wt * s_in if s_in is not None else wt
            q, s, z = _layer_qweight(wt, None if s_in is not None else self._qparams(layer))
            qs.append(q.T)
            scales.append(s)
            zps.append(z)
            self.quantized.append(layer)
        wq = self.ed.add_init(f"{tag}_weight_int8", np.ascontiguousarray(np.concatenate(qs, axis=1)))
        ws = self.ed.add_init(f"{tag}_weight_scale", np.concatenate(scales).astype(np.float32))
        wz = self.ed.add_init(f"{tag}_weight_zero_point", np.concatenate(zps).astype(np.int8))
        dql, xq, xs, xz = self._dql(x, tag)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name in _QATTENTION_ATTRS}
        qatt = helper.make_node("QAttention", [xq, wq, ins[2], xs, ws, ins[3], xz, wz], list(node.output),
                                name=self.ed.fresh(f"{tag}_QAttention"), domain="com.microsoft", **attrs)
        self.ed.replace[idx] = pre + [dql, qatt]


def write_dynamic(proto, model: torch.nn.Module, *, keep: Iterable[str] = (), params: dict | None = None,
                  smooth_amax: dict | None = None, smooth_alpha: float = 0.7):
    """Rewrite the float ``proto`` (exported from ``model``) into a dynamic
    int8 graph; returns ``(proto, quantized_layer_names)``. ``keep``: layer
    names left in float. ``params``: per-layer weight scales (as returned by
    ``torchslim.quantize.export_params``); missing layers get symmetric
    per-channel scales. ``smooth_amax``: per-layer input-feature max |x| from
    calibration; those layers are smoothed (SmoothQuant, ``smooth_alpha``): an
    explicit ``Mul`` by 1/s on the input, weights times s, so the per-tensor
    int8 range of the input is not spent on a few outlier features."""
    w = _Writer(proto, model, set(keep), params, smooth_amax, smooth_alpha)
    for idx, node in enumerate(list(w.ed.graph.node)):
        if node.op_type == "MatMul" and node.domain in ("", "ai.onnx"):
            w.matmul(idx, node)
        elif node.op_type == "Gemm" and node.domain in ("", "ai.onnx"):
            w.gemm(idx, node)
        elif node.op_type == "Attention" and node.domain == "com.microsoft":
            w.attention(idx, node)
        elif node.op_type == "Gather" and node.domain in ("", "ai.onnx"):
            w.gather(idx, node)
    out = w.ed.commit()
    if any(n.domain == "com.microsoft" for n in out.graph.node):
        ensure_opset(out, "com.microsoft", 1)
    return out, w.quantized
