"""Distillation loss terms, as plain functions of tensors.

* ``soft_target_loss``: Hinton et al. (2015): KL(teacher_T || student_T) * T^2,
  so the gradient scale does not shrink as the temperature grows.
* ``hint_loss``: FitNets intermediate-feature hints (MSE or cosine).
* ``attention_map`` / ``attention_transfer_loss``: Zagoruyko & Komodakis
  (2017): spatial attention = channel mean of |A|^p, flattened and
  L2-normalised; the loss is the squared difference averaged over batch and
  positions (the reference implementation's normalisation).
* ``attention_probs_loss`` / ``hidden_state_loss``: MiniLM / TinyBERT style
  transformer distillation of attention probabilities (KL per query row) and of
  hidden states (MSE).
* ``embedding_cosine_loss``: 1 - cosine between sentence embeddings.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "soft_target_loss", "hint_loss", "attention_map", "attention_transfer_loss", "attention_probs_loss",
    "hidden_state_loss", "embedding_cosine_loss",
]


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the batch."""
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()
    return kl * t * t


def hint_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """FitNets hint: mean squared error, or 1 - cosine per sample (flattened)."""
    teacher_feat = teacher_feat.detach()
    if student_feat.shape != teacher_feat.shape:
        raise ValueError(
            f"hint: student feature shape {tuple(student_feat.shape)} differs from the teacher's "
            f"{tuple(teacher_feat.shape)}; enable an adapter for this hint"
        )
    if kind == "mse":
        return F.mse_loss(student_feat, teacher_feat)
    if kind == "cosine":
        s, t = student_feat.flatten(1), teacher_feat.flatten(1)
        return (1 - F.cosine_similarity(s, t, dim=1)).mean()
    raise ValueError(f"hint loss {kind!r} is not known; use 'mse' or 'cosine'")


def attention_map(feat: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Spatial attention of a (N, C, H, W) feature map: mean over channels of
    |A|^p, flattened to (N, H*W) and L2-normalised per sample."""
    if feat.dim() != 4:
        raise ValueError(f"attention transfer needs (N, C, H, W) feature maps, got shape {tuple(feat.shape)}")
    a = feat.abs().pow(p).mean(1).flatten(1)
    return F.normalize(a, p=2, dim=1)


def attention_transfer_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Squared difference of the normalised attention maps, averaged over the
    batch and the spatial positions (as in the authors' reference code, where
    the weight beta/2 = 500 is calibrated for this mean). The teacher map is
    pooled to the student's spatial size when they differ."""
    qs = attention_map(student_feat, p)
    qt = attention_map(teacher_feat.detach(), p)
    if qs.shape[1] != qt.shape[1]:
        hs = student_feat.shape[-2:]
        t = F.adaptive_avg_pool2d(teacher_feat.detach(), hs) if teacher_feat.shape[-1] > hs[-1] else teacher_feat.detach()
        qt = attention_map(t, p)
        if qs.shape[1] != qt.shape[1]:
            raise ValueError(f"attention transfer: spatial sizes {tuple(student_feat.shape[-2:])} and "
                             f"{tuple(teacher_feat.shape[-2:])} cannot be matched")
    return (qs - qt).pow(2).mean()


def attention_probs_loss(student_probs: torch.Tensor, teacher_probs: torch.Tensor,
                         mask: torch.Tensor | None = None, eps: float = 1e-12) -> torch.Tensor:
    """KL(teacher || student) of attention distributions (B, H, Lq, Lk), summed
    over keys and averaged over heads and (unmasked) query positions. Head
    counts may differ: then the per-query distributions are averaged over heads."""
    t = teacher_probs.detach()
    s = student_probs
    if s.shape[1] != t.shape[1]:
        s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
    kl = (t * (torch.log(t + eps) - torch.log(s + eps))).sum(-1)  # (B, H, Lq)
    if mask is None:
        return kl.mean()
    m = mask.to(kl.dtype)[:, None, :].expand_as(kl)
    return (kl * m).sum() / m.sum().clamp(min=1)


def hidden_state_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between (B, L, D) hidden states over unmasked tokens."""
    t = teacher_hidden.detach()
    d = (student_hidden - t).pow(2).mean(-1)  # (B, L)
    if mask is None:
        return d.mean()
    m = mask.to(d.dtype)
    return (d * m).sum() / m.sum().clamp(min=1)


def embedding_cosine_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(student_emb, teacher_emb.detach(), dim=-1)).mean()
