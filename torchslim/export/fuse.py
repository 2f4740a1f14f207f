"""Transformer operator fusion before quantization: ONNX Runtime's own BERT
fusions (``onnxruntime.transformers.optimizer``, pure graph rewriting, run
offline with ``opt_level=0`` so no hardware-specific node lands in the file)
turn the traced attention / LayerNorm / GELU subgraphs into ``Attention``,
``LayerNormalization`` and ``Gelu`` operators. The Skip/Bias LayerNorm and
BiasGelu fusions are left off (``runtime.DISABLED_FUSIONS`` says why: slower on
this ONNX Runtime CPU build), and so is ``EmbedLayerNormalization``, so the
word-embedding ``Gather`` stays visible to the int8 rewrite (``dynamic.py``
stores the table in int8, per row). The fused graph is only kept if it reproduces the unfused
one on the example inputs (max abs difference below ``atol``); otherwise the
unfused graph is returned unchanged.

The fused ``Attention`` reads the attention mask as given (0/1 per token).
"""
from __future__ import annotations

import logging

import numpy as np

__all__: list[str] = []

log = logging.getLogger("torchslim.export")


def bert_shape(model) -> tuple[int, int] | None:
    """(num_heads, hidden_size) of the first BERT-like HF config in ``model``."""
    for m in model.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and getattr(cfg, "model_type", None) in ("bert", "roberta", "distilbert", "xlm-roberta"):
            return int(cfg.num_attention_heads), int(cfg.hidden_size)
    return None


def run_proto(proto, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def fuse_transformer(proto, model, feeds: dict, *, atol: float = 1e-4):
    """The fused graph, or ``proto`` itself when the model is not BERT-like or
    the fusion changes the outputs."""
    shape = bert_shape(model)
    if shape is None:
        return proto
    try:
        from onnxruntime.transformers.fusion_options import AttentionMaskFormat, FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
        heads, hidden = shape
        options = FusionOptions("bert")
        options.enable_skip_layer_norm = False
        options.enable_bias_skip_layer_norm = False
        options.enable_bias_gelu = False
        options.enable_embed_layer_norm = False
        options.attention_mask_format = AttentionMaskFormat.AttentionMask  # the 0/1 mask, any padding side
        fused = optimize_model(proto, model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0,
                               optimization_options=options).model
    except Exception as e:  # the optimizer is a best effort; the float graph stays valid
        log.warning("transformer fusion skipped: %s", e)
        return proto
    ref, got = run_proto(proto, feeds), run_proto(fused, feeds)
    err = max(float(np.abs(a - b).max()) for a, b in zip(ref, got))
    if err > atol:
        log.warning("transformer fusion changed the outputs by %.2e > %.0e; keeping the unfused graph", err, atol)
        return proto
    return fused
