"""Dead-channel oracles on Hugging Face architectures built from configs.

Each test makes some internal units exactly dead by hand, from the model's
own module names (a head's query/key/value rows and output columns, an MLP's
hidden units, a convolution's filters and their BatchNorm), then prunes with
the plain call restricted to those producers at exactly that fraction: the
pruned model must give the same outputs, and its head counts must follow."""
from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("transformers")

from torchslim.core.scope import Scope  # noqa: E402
from torchslim.graph.export import output_tensors  # noqa: E402
from torchslim.prune import structured  # noqa: E402
from torchslim.testing.hf_suite import build  # noqa: E402


def _zero(model, path: str, tensor: str, axis: int, idx) -> None:
    t = getattr(model.get_submodule(path), tensor)
    with torch.no_grad():
        t.index_fill_(axis, torch.as_tensor(idx, dtype=torch.long), 0.0)


def _rows(units, width):
    return [u * width + j for u in units for j in range(width)]


def _prune_same(model, x, producers, ratio, **kw):
    model.eval()
    with torch.no_grad():
        ref = output_tensors(model(*x))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no group may be dropped by the check
        p = structured(model, x, ratio=ratio, target="channels", importance="l2", scope=Scope(names=tuple(producers)),
                       **kw)
    with torch.no_grad():
        out = output_tensors(p(*x))
    assert len(out) == len(ref)
    for a, b in zip(out, ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    return p


def _qkv_heads(m, base, q, k, v, o, heads, hd):
    rows = _rows(heads, hd)
    for lin in (q, k, v):
        _zero(m, f"{base}.{lin}", "weight", 0, rows)
        if getattr(m.get_submodule(f"{base}.{lin}"), "bias", None) is not None:
            _zero(m, f"{base}.{lin}", "bias", 0, rows)
    _zero(m, o, "weight", 1, rows)
    return [f"{base}.{n}" for n in (q, k, v)]


def _mlp(m, up, down, units):
    _zero(m, up, "weight", 0, units)
    _zero(m, up, "bias", 0, units)
    _zero(m, down, "weight", 1, units)
    return [up]


def test_bert_heads_and_mlp_dead():
    m, x = build("bert")
    base = "encoder.layer.0.attention.self"
    prods = _qkv_heads(m, base, "query", "key", "value", "encoder.layer.0.attention.output.dense", [1, 3], 32)
    p = _prune_same(m, x, prods, 0.5)
    a = p.encoder.layer[0].attention.self
    assert a.query.out_features == 64 and a.num_attention_heads == 2 and a.all_head_size == 64
    m, x = build("bert")
    units = list(range(0, 512, 4))
    _prune_same(m, x, _mlp(m, "encoder.layer.1.intermediate.dense", "encoder.layer.1.output.dense", units), 0.25)


def test_distilbert_heads_dead():
    m, x = build("distilbert")
    base = "transformer.layer.1.attention"
    prods = _qkv_heads(m, base, "q_lin", "k_lin", "v_lin", f"{base}.out_lin", [0], 32)
    p = _prune_same(m, x, prods, 0.25)
    assert p.transformer.layer[1].attention.n_heads == 3


def test_gpt2_fused_qkv_heads_dead():
    m, x = build("gpt2")
    hd, e = 32, 128
    heads = [2]
    cols = [part * e + c for part in range(3) for c in _rows(heads, hd)]  # q, k and v thirds of c_attn
    _zero(m, "transformer.h.0.attn.c_attn", "weight", 1, cols)
    _zero(m, "transformer.h.0.attn.c_attn", "bias", 0, cols)
    _zero(m, "transformer.h.0.attn.c_proj", "weight", 0, _rows(heads, hd))
    p = _prune_same(m, x, ["transformer.h.0.attn.c_attn"], 0.25)
    att = p.transformer.h[0].attn
    assert att.c_attn.weight.shape == (128, 288) and att.c_attn.nf == 288 and att.split_size == 96
    assert att.num_heads == 3


def test_llama_grouped_kv_head_dead():
    """Key/value head 1 and the four query heads that share it (grouped-query attention)."""
    m, x = build("llama")
    base = "model.layers.0.self_attn"
    hd = 16
    _zero(m, f"{base}.k_proj", "weight", 0, _rows([1], hd))
    _zero(m, f"{base}.v_proj", "weight", 0, _rows([1], hd))
    _zero(m, f"{base}.q_proj", "weight", 0, _rows([4, 5, 6, 7], hd))
    _zero(m, f"{base}.o_proj", "weight", 1, _rows([4, 5, 6, 7], hd))
    p = _prune_same(m, x, [f"{base}.{n}" for n in ("q_proj", "k_proj", "v_proj")], 0.5)
    att = p.model.layers[0].self_attn
    assert att.q_proj.out_features == 64 and att.k_proj.out_features == 16 and att.num_key_value_groups == 4
    m, x = build("llama")
    units = list(range(1, 384, 3))
    mlp = "model.layers.1.mlp"
    for lin in ("gate_proj", "up_proj"):
        _zero(m, f"{mlp}.{lin}", "weight", 0, units)
    _zero(m, f"{mlp}.down_proj", "weight", 1, units)
    _prune_same(m, x, [f"{mlp}.gate_proj", f"{mlp}.up_proj"], len(units) / 384)


def test_opt_heads_read_from_an_attribute():
    """OPT views with ``self.num_heads``: it must follow the pruned count."""
    m, x = build("opt")
    base = "model.decoder.layers.1.self_attn"
    prods = _qkv_heads(m, base, "q_proj", "k_proj", "v_proj", f"{base}.out_proj", [0, 2], 32)
    p = _prune_same(m, x, prods, 0.5)
    assert p.model.decoder.layers[1].self_attn.num_heads == 2


def test_vit_heads_dead():
    m, x = build("vit")
    base = "vit.layers.1.attention"
    prods = _qkv_heads(m, base, "q_proj", "k_proj", "v_proj", f"{base}.o_proj", [3], 32)
    _prune_same(m, x, prods, 0.25)


def test_swin_heads_with_relative_position_bias_dead():
    """Swin adds a per-head relative position bias table: it is sliced with the heads."""
    m, x = build("swin")
    base = "swin.encoder.layers.1.blocks.0.attention"
    prods = _qkv_heads(m, base, "q_proj", "k_proj", "v_proj", f"{base}.o_proj", [1], 16)
    p = _prune_same(m, x, prods, 0.25)
    assert p.get_submodule(base).relative_position_bias.relative_position_bias_table.shape == (49, 3)


def test_mobilevit_attention_heads_dead():
    m, x = build("mobilevit")
    base = "mobilevit.encoder.layer.2.transformer.layer.0.attention.attention"
    out = "mobilevit.encoder.layer.2.transformer.layer.0.attention.output.dense"
    hd = m.get_submodule(base).attention_head_size
    prods = _qkv_heads(m, base, "query", "key", "value", out, [0], hd)
    p = _prune_same(m, x, prods, 0.25)
    assert p.get_submodule(base).all_head_size == 3 * hd  # read by its reshape at run time


def _dead_conv_bn(m, conv, bn, idx):
    _zero(m, conv, "weight", 0, idx)
    _zero(m, bn, "weight", 0, idx)
    _zero(m, bn, "bias", 0, idx)


def test_resnet_bottleneck_channels_dead():
    m, x = build("resnet")
    blk = "resnet.encoder.stages.2.layers.0.layer"
    idx = [0, 5, 7, 20]
    _dead_conv_bn(m, f"{blk}.0.convolution", f"{blk}.0.normalization", idx)
    p = _prune_same(m, x, [f"{blk}.0.convolution"], len(idx) / 32)
    assert p.get_submodule(f"{blk}.1.convolution").in_channels == 28


def test_mobilenet_v2_expanded_channels_dead():
    """Expansion 1x1 conv -> depthwise 3x3 -> projection: one coupled group."""
    m, x = build("mobilenet_v2")
    blk = "mobilenet_v2.layer.3"
    n = m.get_submodule(f"{blk}.expand_1x1.convolution").out_channels
    idx = list(range(0, n, 4))
    _dead_conv_bn(m, f"{blk}.expand_1x1.convolution", f"{blk}.expand_1x1.normalization", idx)
    _zero(m, f"{blk}.conv_3x3.normalization", "weight", 0, idx)
    _zero(m, f"{blk}.conv_3x3.normalization", "bias", 0, idx)
    p = _prune_same(m, x, [f"{blk}.expand_1x1.convolution"], len(idx) / n)
    dw = p.get_submodule(f"{blk}.conv_3x3.convolution")
    assert dw.groups == dw.in_channels == dw.out_channels == n - len(idx)


def test_convnext_mlp_units_dead():
    m, x = build("convnext")
    blk = "convnext.encoder.stages.1.layers.0"
    units = list(range(0, 256, 2))
    _prune_same(m, x, _mlp(m, f"{blk}.pwconv1", f"{blk}.pwconv2", units), 0.5)
