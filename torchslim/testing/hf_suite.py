"""A suite of Hugging Face ``transformers`` architectures built from small
configs (random init, offline; nothing is downloaded), each with example
inputs: CNNs, ViT-family models, windowed attention, a conv+attention
hybrid, encoder-only and decoder-only text models (GPT-2's fused ``Conv1D``
QKV, grouped-KV-head Llama/Qwen2/Mistral).

``build(name)`` returns ``(model, example_inputs)``; ``SUITE`` lists the
names. The sizes are small enough for CI yet keep the proportions of the
real models (the MLP is 4x the width, heads of 16-32 dims).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

__all__ = ["SUITE", "build", "family"]

_SEQ = 32
_IMG = 64


def _text_inputs(vocab: int, batch: int = 2, seq: int = _SEQ, mask: bool = True) -> tuple:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (batch, seq), generator=g)
    if not mask:
        return (ids,)
    return ids, torch.ones(batch, seq, dtype=torch.long)


def _image_inputs(batch: int = 2, size: int = _IMG) -> tuple:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(batch, 3, size, size, generator=g),)


def _cfg(mod: str, cls: str, **kw):
    import importlib

    return getattr(importlib.import_module("transformers"), cls)(**kw)


def _model(auto: str, config) -> nn.Module:
    import transformers

    torch.manual_seed(0)
    model = getattr(transformers, auto).from_config(config)
    return model.eval()


_TEXT = dict(vocab_size=512, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512,
             max_position_embeddings=128)

# name -> (family, builder)
_BUILDERS: dict[str, tuple[str, Callable[[], tuple[nn.Module, tuple]]]] = {}


def _reg(name: str, fam: str):
    def deco(fn):
        _BUILDERS[name] = (fam, fn)
        return fn
    return deco


@_reg("resnet", "cnn")
def _resnet():
    c = _cfg("resnet", "ResNetConfig", embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1],
             layer_type="bottleneck", num_labels=10)
    return _model("AutoModelForImageClassification", c), _image_inputs()


@_reg("convnext", "cnn")
def _convnext():
    c = _cfg("convnext", "ConvNextConfig", hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 2, 1], num_labels=10)
    return _model("AutoModelForImageClassification", c), _image_inputs()


@_reg("mobilenet_v2", "cnn")
def _mobilenet_v2():
    c = _cfg("mobilenet_v2", "MobileNetV2Config", depth_multiplier=0.5, image_size=_IMG, num_labels=10)
    return _model("AutoModelForImageClassification", c), _image_inputs()


@_reg("efficientnet", "cnn")
def _efficientnet():
    c = _cfg("efficientnet", "EfficientNetConfig", width_coefficient=0.5, depth_coefficient=0.5, image_size=_IMG,
             hidden_dim=640, num_labels=10)
    return _model("AutoModelForImageClassification", c), _image_inputs()


@_reg("regnet", "cnn")
def _regnet():
    c = _cfg("regnet", "RegNetConfig", embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 2, 1],
             groups_width=16, layer_type="y", num_labels=10)
    return _model("AutoModelForImageClassification", c), _image_inputs()


_VIT = dict(image_size=_IMG, patch_size=8, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=512, num_labels=10)


@_reg("vit", "vit")
def _vit():
    return _model("AutoModelForImageClassification", _cfg("vit", "ViTConfig", **_VIT)), _image_inputs()


@_reg("deit", "vit")
def _deit():
    c = _cfg("deit", "DeiTConfig", architectures=["DeiTForImageClassification"], **_VIT)
    return _model("AutoModelForImageClassification", c), _image_inputs()


@_reg("dinov2", "vit")
def _dinov2():
    kw = {k: v for k, v in _VIT.items() if k != "intermediate_size"}
    c = _cfg("dinov2", "Dinov2Config", mlp_ratio=4, layerscale_value=0.5, **kw)
    return _model("AutoModelForImageClassification", c), _image_inputs()


@_reg("swin", "windowed")
def _swin():
    c = _cfg("swin", "SwinConfig", image_size=_IMG, patch_size=4, embed_dim=32, depths=[2, 2], num_heads=[2, 4],
             window_size=4, num_labels=10)
    return _model("AutoModelForImageClassification", c), _image_inputs()


@_reg("mobilevit", "hybrid")
def _mobilevit():
    c = _cfg("mobilevit", "MobileViTConfig", image_size=_IMG, hidden_sizes=[48, 64, 80],
             neck_hidden_sizes=[16, 16, 24, 32, 48, 64, 160], num_attention_heads=4, num_labels=10)
    return _model("AutoModelForImageClassification", c), _image_inputs()


@_reg("bert", "encoder")
def _bert():
    return _model("AutoModel", _cfg("bert", "BertConfig", **_TEXT)), _text_inputs(512)


@_reg("roberta", "encoder")
def _roberta():
    c = _cfg("roberta", "RobertaConfig", pad_token_id=1, **{**_TEXT, "max_position_embeddings": 130})
    return _model("AutoModel", c), _text_inputs(512)


@_reg("distilbert", "encoder")
def _distilbert():
    c = _cfg("distilbert", "DistilBertConfig", vocab_size=512, dim=128, n_layers=2, n_heads=4, hidden_dim=512,
             max_position_embeddings=128)
    return _model("AutoModel", c), _text_inputs(512)


@_reg("gpt2", "decoder")
def _gpt2():
    c = _cfg("gpt2", "GPT2Config", vocab_size=512, n_embd=128, n_layer=2, n_head=4, n_positions=128)
    return _model("AutoModelForCausalLM", c), _text_inputs(512, mask=False)


_LLAMA = dict(vocab_size=512, hidden_size=128, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
              intermediate_size=384, max_position_embeddings=128, head_dim=16)


@_reg("llama", "decoder")
def _llama():
    return _model("AutoModelForCausalLM", _cfg("llama", "LlamaConfig", **_LLAMA)), _text_inputs(512, mask=False)


@_reg("qwen2", "decoder")
def _qwen2():
    return _model("AutoModelForCausalLM", _cfg("qwen2", "Qwen2Config", **_LLAMA)), _text_inputs(512, mask=False)


@_reg("mistral", "decoder")
def _mistral():
    return _model("AutoModelForCausalLM", _cfg("mistral", "MistralConfig", **_LLAMA)), _text_inputs(512, mask=False)


@_reg("opt", "decoder")
def _opt():
    c = _cfg("opt", "OPTConfig", vocab_size=512, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
             ffn_dim=512, max_position_embeddings=128, word_embed_proj_dim=128)
    return _model("AutoModelForCausalLM", c), _text_inputs(512, mask=False)


SUITE: tuple[str, ...] = tuple(_BUILDERS)


def family(name: str) -> str:
    return _BUILDERS[name][0]


def build(name: str) -> tuple[nn.Module, tuple]:
    """A freshly initialised (seed 0) model of the named architecture, in eval
    mode, and example inputs (batch 2) for ``model(*inputs)``: pixels for
    vision models, ``(input_ids, attention_mask)`` for encoders, ``(input_ids,)``
    for decoders (their second positional argument is the cache)."""
    if name not in _BUILDERS:
        raise KeyError(f"unknown suite model {name!r}; known: {list(SUITE)}")
    return _BUILDERS[name][1]()
