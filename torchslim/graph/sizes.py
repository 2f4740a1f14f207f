"""Which integer attributes of a layer may hold a width that structural
pruning changes (``nf`` of GPT-2's Conv1D, ``split_size``, ``all_head_size``),
as opposed to per-head sizes, indices and counts that never change."""
from __future__ import annotations

import re

__all__ = ["is_size_attr"]

# integer attributes that may hold a width (never a per-head size, an index or a count of layers)
_SIZE = re.compile(r"(head|size|dim|split|hidden|width|channel|feature|embed|^nf$|^nx$|^n_|group|units)", re.I)
_NOT_SIZE = re.compile(r"(head_dim|head_size|dim_head|d_head|d_k$|d_kv|idx|index|layer|num_layers|stride|kernel|"
                       r"vocab|position|window|patch|image|max_)", re.I)


def is_size_attr(name: str) -> bool:
    """Whether an integer attribute called ``name`` may hold a prunable width."""
    return bool(_SIZE.search(name)) and not _NOT_SIZE.search(name)
