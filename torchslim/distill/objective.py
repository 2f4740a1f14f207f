"""The distillation objective as a ``loss_fn(net, x, y)`` for ``fit``.

``make_loss(config, teacher)`` is what every method uses as its fine-tuning
loss (``ctx.loss_fn``): soft targets, hints, attention transfer and
transformer layer terms, all from one ``DistillConfig``.

Learned hint adapters live in the loss object, not in the student (so the
student's artifact stays clean). They train themselves: each training call
first applies the gradient the previous backward left on them (one Adam step,
``adapter_lr``), so they learn under any ``fit`` call without the caller
knowing about them. ``loss.callback()`` saves and restores them with the
fit checkpoint (exact resume). Under DDP the adapters are not synchronised
across ranks (each rank keeps its own; they are discarded after training).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..train.callbacks import Callback
from .configs import DistillConfig
from .losses import (attention_probs_loss, attention_transfer_loss, embedding_cosine_loss, hidden_state_loss,
                     hint_loss, soft_target_loss)
from .teacher import EncoderTap, FeatureTap, Teacher, unwrap

__all__ = ["DistillLoss", "make_loss"]


def _adapter(s: torch.Tensor, t: torch.Tensor) -> nn.Module:
    if s.dim() == 4:
        return nn.Conv2d(s.shape[1], t.shape[1], 1, bias=False)
    return nn.Linear(s.shape[-1], t.shape[-1], bias=False)


def _apply_adapter(adapter: nn.Module | None, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if adapter is not None:
        s = adapter(s)
    if s.dim() == 4 and s.shape[-2:] != t.shape[-2:]:
        s = F.interpolate(s, size=t.shape[-2:], mode="bilinear", align_corners=False)
    return s


class DistillLoss:
    """Callable ``loss(net, x, y) -> (loss, student_output)``; see module doc."""

    def __init__(self, config: DistillConfig, teacher: nn.Module, student: nn.Module | None = None):
        self.config = config
        if config.layers is not None:
            n_t = len(hf_layers(teacher))
            bad = [j for j in config.layers.teacher_layers if not 0 <= j < n_t]
            if bad:
                raise ValueError(f"distill: teacher layers {bad} do not exist (the teacher has {n_t} layers)")
        feats = [h.teacher for h in config.hints] + [a.teacher for a in config.attention]
        self.teacher = Teacher(teacher, feature_names=feats, encoder=config.layers is not None,
                               cache=config.cache_teacher, call=self.call)
        self.adapters = nn.ModuleDict()
        self._adapters_built = False
        self._opt: torch.optim.Optimizer | None = None
        self._pending: dict | None = None
        self._student_ref = None
        self._tap: FeatureTap | None = None
        self._enc: EncoderTap | None = None
        self.last_terms: dict[str, float] = {}
        if student is not None:
            try:
                self._attach(student)
            except Exception:
                self.close()
                raise

    # ---------------------------------------------------------------- plumbing
    def call(self, model: nn.Module, x: torch.Tensor):
        if self.config.inputs == "token_ids":
            return model(x, (x != self.config.pad_id).long())
        return model(x)

    def _attach(self, student: nn.Module) -> None:
        student = unwrap(student)
        if self._student_ref is student:
            return
        self.detach_student()
        names = [h.student for h in self.config.hints] + [a.student for a in self.config.attention]
        self._tap = FeatureTap(student, names, role="student") if names else None
        self._enc = EncoderTap(student) if self.config.layers is not None else None
        if self._enc is not None:
            n_s = len(hf_layers(student))
            bad = [i for i in self.config.layers.student_layers if not 0 <= i < n_s]
            if bad:
                raise ValueError(f"distill: student layers {bad} do not exist (the student has {n_s} layers)")
        self._student_ref = student

    def detach_student(self) -> None:
        if self._tap is not None:
            self._tap.remove()
        if self._enc is not None:
            self._enc.remove()
        self._tap = self._enc = None
        self._student_ref = None

    def close(self) -> None:
        """Remove every hook (student and teacher); restores attention settings."""
        self.detach_student()
        self.teacher.close()

    def parameters(self):
        return self.adapters.parameters()

    def _build_adapters(self, t: dict) -> None:
        for i, h in enumerate(self.config.hints):
            s_feat, t_feat = self._tap.outputs[h.student], t["feat:" + h.teacher]
            s_c = s_feat.shape[1] if s_feat.dim() == 4 else s_feat.shape[-1]
            t_c = t_feat.shape[1] if t_feat.dim() == 4 else t_feat.shape[-1]
            if h.adapter and s_c != t_c:
                self.adapters[f"hint{i}"] = _adapter(s_feat, t_feat).to(s_feat.device)
        self._adapters_built = True
        if len(self.adapters):
            self._opt = torch.optim.Adam(self.adapters.parameters(), lr=self.config.adapter_lr)
        if self._pending is not None:
            self.load_state_dict(self._pending)
            self._pending = None

    def _step_adapters(self) -> None:
        if self._opt is None:
            return
        if any(p.grad is not None for p in self.adapters.parameters()):
            self._opt.step()
            self._opt.zero_grad(set_to_none=True)

    # ---------------------------------------------------------------- the loss
    def __call__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor):
        cfg = self.config
        self._attach(net)
        training = unwrap(net).training
        if training:
            self._step_adapters()
        t = self.teacher(x)
        s_out = self.call(net, x)
        terms: dict[str, torch.Tensor] = {}
        if cfg.alpha < 1.0:
            terms["hard"] = (1 - cfg.alpha) * F.cross_entropy(s_out, y)
        if cfg.alpha > 0 and cfg.output_loss != "none":
            t_out = t["output"]
            if cfg.output_loss == "kl":
                term = soft_target_loss(s_out, t_out, cfg.temperature)
            elif cfg.output_loss == "mse":
                term = F.mse_loss(s_out, t_out)
            else:
                term = embedding_cosine_loss(s_out, t_out)
            terms["output"] = cfg.alpha * term
        if cfg.hints:
            if not self._adapters_built:
                self._build_adapters(t)
            for i, h in enumerate(cfg.hints):
                t_feat = t["feat:" + h.teacher]
                s_feat = _apply_adapter(self.adapters[f"hint{i}"] if f"hint{i}" in self.adapters else None,
                                        self._tap.outputs[h.student], t_feat)
                terms[f"hint{i}"] = h.weight * hint_loss(s_feat, t_feat, h.loss)
        for i, a in enumerate(cfg.attention):
            terms[f"at{i}"] = a.weight * attention_transfer_loss(self._tap.outputs[a.student],
                                                                 t["feat:" + a.teacher], a.p)
        if cfg.layers is not None:
            mask = (x != cfg.pad_id) if cfg.inputs == "token_ids" else None
            s_att, s_hid = self._enc.layers()
            lm = cfg.layers
            att = hid = 0.0
            for i, j in zip(lm.student_layers, lm.teacher_layers):
                if lm.attention_weight:
                    att = att + attention_probs_loss(s_att[i], t[f"att:{j}"], mask)
                if lm.hidden_weight:
                    hid = hid + hidden_state_loss(s_hid[i], t[f"hid:{j}"], mask)
            n = len(lm.student_layers)
            if lm.attention_weight:
                terms["attention"] = lm.attention_weight * att / n
            if lm.hidden_weight:
                terms["hidden"] = lm.hidden_weight * hid / n
        if not terms:
            raise ValueError("distill: the configured loss has no terms")
        loss = sum(terms.values())
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        return loss, s_out

    # ---------------------------------------------------------------- state (resume)
    def state_dict(self) -> dict:
        return {"adapters": self.adapters.state_dict(),
                "optimizer": self._opt.state_dict() if self._opt is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if not self._adapters_built:
            self._pending = state
            return
        self.adapters.load_state_dict(state["adapters"])
        if self._opt is not None and state.get("optimizer") is not None:
            self._opt.load_state_dict(state["optimizer"])

    def callback(self) -> Callback:
        """A fit callback that steps the adapters after each optimizer step and
        checkpoints them with the run (exact resume)."""
        return _AdapterState(self)


class _AdapterState(Callback):
    def __init__(self, loss: DistillLoss):
        self.loss = loss

    def on_batch_end(self, state) -> None:
        # step the adapters with the student, so a checkpoint never holds unapplied gradients
        self.loss._step_adapters()

    def state_dict(self) -> dict:
        return self.loss.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loss.load_state_dict(state)


def hf_layers(model: nn.Module):
    from .teacher import hf_encoder

    return hf_encoder(model).encoder.layer


def make_loss(config: DistillConfig, teacher: nn.Module, student: nn.Module | None = None) -> DistillLoss:
    """``loss_fn(net, x, y)`` for ``fit`` (and ``ctx.loss_fn``) distilling ``teacher`` into the trained net."""
    return DistillLoss(config, teacher, student)
