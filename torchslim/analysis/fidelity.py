"""Embedding fidelity of a compressed sentence encoder against the original:
per-sentence cosine between the two models' embeddings (mean and minimum)
and nearest-neighbour agreement: the fraction of sentences whose most similar
*other* sentence of the set (by cosine) is the same under both models.

    >>> from torchslim.zoo.user_data import load_text
    >>> data = load_text("sentences.txt")                 # tokenised for MiniLM
    >>> embedding_fidelity(original, compressed, data)
    {'n': 500, 'mean_cosine': 0.998, 'min_cosine': 0.981, 'nn_agreement': 0.97}

A model's output becomes one embedding per sentence: a 2-D tensor as it is
(MiniLM already pools and normalises), a 3-D token tensor or a Hugging Face
output's ``last_hidden_state`` mean-pooled over the attention mask.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F

__all__ = ["fidelity", "nearest_neighbours", "embed", "embedding_fidelity", "pool"]


def nearest_neighbours(emb: torch.Tensor) -> torch.Tensor:
    """Index of each row's most cosine-similar other row (itself excluded; ties: the lowest index)."""
    e = F.normalize(emb.float(), dim=1)
    sim = e @ e.T
    sim.fill_diagonal_(-2.0)
    return sim.argmax(1)


def fidelity(emb: torch.Tensor, ref: torch.Tensor) -> dict:
    """``{"n", "mean_cosine", "min_cosine", "nn_agreement"}`` of embeddings
    ``emb`` (compressed model) against ``ref`` (original), row by row."""
    if emb.shape != ref.shape or emb.ndim != 2:
        raise ValueError(f"fidelity: embeddings of shape {tuple(emb.shape)} and {tuple(ref.shape)}; need two equal "
                         "(sentences, dim) tensors")
    cos = F.cosine_similarity(emb.float(), ref.float(), dim=1)
    agree = (nearest_neighbours(emb) == nearest_neighbours(ref)).float().mean() if len(emb) > 1 else torch.tensor(1.0)
    return {"n": int(len(emb)), "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
            "nn_agreement": float(agree)}


def pool(out, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """One embedding per sentence from a model output (see the module doc)."""
    if not isinstance(out, torch.Tensor):
        for name in ("sentence_embedding", "last_hidden_state"):
            value = getattr(out, name, None) if not isinstance(out, dict) else out.get(name)
            if value is not None:
                out = value
                break
        else:
            raise TypeError(f"cannot take an embedding from {type(out).__name__}; return a tensor")
    if out.ndim == 3:
        if attention_mask is None:
            return out.mean(1)
        m = attention_mask.unsqueeze(-1).to(out.dtype)
        return (out * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return out


@torch.no_grad()
def embed(model: Callable, data, *, batch_size: int = 64) -> torch.Tensor:
    """Embeddings of ``data``: a ``TextDataset`` (``load_text``), an
    ``(input_ids, attention_mask)`` pair, or an iterable of such batches."""
    if isinstance(model, torch.nn.Module):
        model.eval()
    if hasattr(data, "input_batches"):
        batches: Iterable = data.input_batches(batch_size)
    elif isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        ids, mask = data
        batches = [(ids[i: i + batch_size], mask[i: i + batch_size]) for i in range(0, len(ids), batch_size)]
    else:
        batches = data
    outs = []
    for b in batches:
        b = tuple(b) if isinstance(b, (tuple, list)) else (b,)
        outs.append(pool(model(*b), b[1] if len(b) > 1 else None).float())
    return torch.cat(outs)


def embedding_fidelity(original: Callable, compressed: Callable, data, *, batch_size: int = 64) -> dict:
    """``fidelity`` of ``compressed`` against ``original`` on the same sentences."""
    return fidelity(embed(compressed, data, batch_size=batch_size), embed(original, data, batch_size=batch_size))
