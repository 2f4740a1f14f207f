"""Training the supernet: the sandwich rule with in-place distillation
(Yu & Huang, "Universally slimmable networks", 2019; once-for-all).

Every step runs the largest subnet on the labels, then the smallest and
``random_subnets`` random subnets on the largest one's (detached) soft
predictions; the losses are summed, so one backward pass accumulates every
subnet's gradients into the shared weights and one optimizer step follows.
Training goes through ``torchslim.train.fit`` (checkpoints, exact resume):
the random subnets of a step are drawn from a generator seeded by (seed,
global step), so a resumed run trains exactly the subnets an uninterrupted
one would.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..train import Callback, TrainConfig, fit
from .supernet import ElasticSupernet

__all__ = ["SandwichLoss", "train_supernet"]


class SandwichLoss(Callback):
    """``fit`` loss (and callback: it reads the global step) of the sandwich
    rule. ``distill``: the smaller subnets learn from the largest one's soft
    predictions at ``temperature`` (else from the labels)."""

    def __init__(self, supernet: ElasticSupernet, *, random_subnets: int = 2, distill: bool = True,
                 temperature: float = 1.0, label_smoothing: float = 0.0, seed: int = 0):
        if random_subnets < 0:
            raise ConfigError(f"random_subnets must be >= 0, got {random_subnets}")
        if temperature <= 0:
            raise ConfigError(f"temperature must be positive, got {temperature}")
        self.supernet, self.random_subnets, self.distill = supernet, int(random_subnets), distill
        self.temperature, self.label_smoothing, self.seed = float(temperature), label_smoothing, int(seed)
        self.step = 0

    def on_batch_start(self, state) -> None:
        self.step = state.global_step

    def configs(self) -> list[dict]:
        """The subnets of the current step after the largest: the smallest, then the random ones."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
        return [self.supernet.min_config()] + [self.supernet.sample(g) for _ in range(self.random_subnets)]

    def _soft(self, logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        return F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean",
                        log_target=True) * (t * t)

    def __call__(self, model, x, y):
        sn = self.supernet
        try:
            sn.set_config(None)
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
            teacher = logits.detach()
            for cfg in self.configs():
                sn.set_config(cfg)
                out = model(x)
                loss = loss + (self._soft(out, teacher) if self.distill else
                               F.cross_entropy(out, y, label_smoothing=self.label_smoothing))
        finally:
            sn.set_config(None)
        return loss, logits


def train_supernet(supernet: ElasticSupernet, train_data, config: TrainConfig | None = None, *,
                   random_subnets: int = 2, distill: bool = True, temperature: float = 1.0, eval_data=None,
                   out_dir=None, resume: bool = True, progress: bool = True):
    """Train ``supernet`` in place with the sandwich rule (see the module
    docstring) through ``fit``; ``out_dir`` keeps checkpoints (a rerun
    resumes). Returns fit's ``FitResult``; the largest subnet is selected."""
    cfg = config or TrainConfig()
    loss = SandwichLoss(supernet, random_subnets=random_subnets, distill=distill, temperature=temperature,
                        label_smoothing=cfg.label_smoothing, seed=cfg.seed)
    res = fit(supernet, train_data, cfg, loss_fn=loss, callbacks=[loss], eval_data=eval_data, out_dir=out_dir,
              resume=resume, progress=progress)
    supernet.set_config(None)
    return res
