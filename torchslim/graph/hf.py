"""Hugging Face layers: GPT-2's ``Conv1D`` (a Linear with its weight stored
(in, out)) gets a surgery and an artifact spec; BERT-style attention layers
pruned through the module patterns get their head-count attributes updated
and recorded, so ``torchslim.load`` rebuilds a pruned MiniLM/BERT.
transformers is imported only when such a model is met (``register_specs``),
or when an artifact names one."""
from __future__ import annotations

import torch.nn as nn

__all__: list[str] = []

_ATTRS = ("num_attention_heads", "attention_head_size", "all_head_size")


def _to_spec(m: nn.Module) -> dict:
    return {a: int(getattr(m, a)) for a in _ATTRS}


def _patch(m: nn.Module, spec: dict) -> None:
    for a in _ATTRS:
        setattr(m, a, int(spec[a]))


def _fix_after(m: nn.Module) -> None:
    m.all_head_size = m.query.out_features
    m.num_attention_heads = m.all_head_size // m.attention_head_size


def _conv1d_surgery(m: nn.Module, keeps) -> None:
    from .surgery import slice_tensors

    slice_tensors(m, keeps)
    m.nx, m.nf = m.weight.shape


_BASE_DONE = False


def _register_base() -> None:
    global _BASE_DONE
    if _BASE_DONE:
        return
    _BASE_DONE = True
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is installed with torchslim[minilm]
        return
    from ..artifact.specs import register_module_spec
    from .surgery import register_surgery

    register_surgery(Conv1D, _conv1d_surgery)
    register_module_spec(Conv1D, lambda m: {"nf": int(m.nf), "nx": int(m.nx)}, lambda s: Conv1D(s["nf"], s["nx"]))


def register_specs(cls: type | None = None) -> None:
    """Register the Hugging Face layer types torchslim knows (``Conv1D``) and
    the artifact spec (with a ``patch``) for HF self-attention classes."""
    from ..artifact.specs import register_module_spec
    from .surgery import register_fixup

    _register_base()
    classes = [cls] if cls is not None else []
    if cls is None:
        try:
            from transformers.models.bert.modeling_bert import BertSelfAttention

            classes.append(BertSelfAttention)
        except ImportError:  # pragma: no cover - transformers is installed with torchslim[minilm]
            return
    for c in classes:
        register_module_spec(c, _to_spec, None, _patch)
        register_fixup(c, _fix_after)
