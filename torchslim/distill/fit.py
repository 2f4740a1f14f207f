"""Student-teacher training: one call, through the foundation's ``fit`` (so
checkpoints, exact resume and DDP come for free)."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from ..train import fit
from .configs import DistillConfig
from .objective import make_loss

__all__ = ["distill", "init_from_teacher_layers"]


def distill(student: nn.Module, teacher: nn.Module, train_data, config: DistillConfig | None = None, *,
            eval_data=None, out_dir: str | Path | None = None, progress: bool = True, callbacks=()):
    """Train ``student`` in place to imitate ``teacher`` (left unchanged, eval
    mode, no gradients). Returns the ``FitResult``; ``result.teacher_stats``
    counts teacher cache hits and misses (samples)."""
    config = config or DistillConfig()
    loss = make_loss(config, teacher, student)
    try:
        result = fit(student, train_data, config.train, eval_data=eval_data, loss_fn=loss,
                     callbacks=[loss.callback(), *callbacks], out_dir=out_dir, progress=progress)
    finally:
        loss.close()
    result.teacher_stats = {"cache_hits": loss.teacher.hits, "teacher_samples": loss.teacher.misses}
    return result


def init_from_teacher_layers(student: nn.Module, teacher: nn.Module, layers) -> nn.Module:
    """Initialise a shallower Hugging Face encoder from chosen teacher layers
    (e.g. every other layer, as in DistilBERT): embeddings and the listed
    teacher layers are copied in order into the student's layers."""
    from .teacher import hf_encoder

    s_enc, t_enc = hf_encoder(student), hf_encoder(teacher)
    s_layers, t_layers = s_enc.encoder.layer, t_enc.encoder.layer
    layers = list(layers)
    if len(layers) != len(s_layers):
        raise ValueError(f"init_from_teacher_layers: {len(layers)} teacher layers listed for a student "
                         f"with {len(s_layers)} layers")
    s_enc.embeddings.load_state_dict(t_enc.embeddings.state_dict())
    for i, j in enumerate(layers):
        s_layers[i].load_state_dict(t_layers[j].state_dict())
    return student
