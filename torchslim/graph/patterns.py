"""Module-pattern rules: channel groups found from a model's module structure
instead of its traced graph, used when torch.fx cannot trace the model (Hugging
Face transformers have data-dependent control flow).

A pattern only claims groups that are closed inside one block, whatever runs
around it: the attention heads (query/key/value rows, output-projection
columns) and the MLP hidden units (first dense rows, second dense columns) of
a transformer layer. The residual stream width is never touched on this
path. Register a pattern for another block type with ``register_pattern``.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from .deps import DependencyGraph

__all__ = ["register_pattern", "pattern_groups", "bert_layer_pattern"]

# pattern(graph, qualified name, module) -> True when it claimed the module
_PATTERNS: list[Callable[[DependencyGraph, str, nn.Module], bool]] = []


def register_pattern(fn: Callable[[DependencyGraph, str, nn.Module], bool]) -> None:
    _PATTERNS.append(fn)


def _has(m: nn.Module, path: str) -> bool:
    try:
        m.get_submodule(path)
        return True
    except AttributeError:
        return False


def _linear_out(g: DependencyGraph, sid: int, name: str, lin: nn.Linear, repeat: int) -> None:
    g.member(sid, name, "weight", 0, 0, repeat, "out")
    if lin.bias is not None:
        g.member(sid, name, "bias", 0, 0, repeat, "out")


def bert_layer_pattern(g: DependencyGraph, name: str, m: nn.Module) -> bool:
    """A BERT-style encoder layer (BertLayer, RobertaLayer, ...):
    ``attention.self.{query,key,value}``, ``attention.output.dense``,
    ``intermediate.dense``, ``output.dense``."""
    need = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
            "intermediate.dense", "output.dense")
    if not all(_has(m, p) for p in need):
        return False
    att = m.get_submodule("attention.self")
    if not all(hasattr(att, a) for a in ("num_attention_heads", "attention_head_size", "all_head_size")):
        return False
    from . import hf

    hf.register_specs(type(att))
    p = f"{name}." if name else ""
    hd = int(att.attention_head_size)
    heads = g.new_space(int(att.num_attention_heads), "heads")
    for lin in ("query", "key", "value"):
        _linear_out(g, heads, f"{p}attention.self.{lin}", getattr(att, lin), hd)
    g.member(heads, f"{p}attention.output.dense", "weight", 1, 0, hd, "in")
    g.observe(heads, f"{p}attention.output.dense", -1, 0, hd)
    inter = m.get_submodule("intermediate.dense")
    units = g.new_space(inter.out_features, "neurons")
    _linear_out(g, units, f"{p}intermediate.dense", inter, 1)
    g.member(units, f"{p}output.dense", "weight", 1, 0, 1, "in")
    g.observe(units, f"{p}output.dense", -1, 0, 1)
    return True


register_pattern(bert_layer_pattern)


def pattern_groups(model: nn.Module, g: DependencyGraph) -> int:
    """Apply every registered pattern to the model's modules (outermost match
    wins); return how many blocks were claimed."""
    claimed: list[str] = []
    for name, m in model.named_modules():
        if any(name.startswith(c + ".") for c in claimed):
            continue
        for pat in _PATTERNS:
            if pat(g, name, m):
                claimed.append(name)
                break
    return len(claimed)
