"""Small configs + handlers registered by the recipe tests (not part of the
library): a magnitude-zeroing stage, a stage that fails once, and a
fine-tuning stage killed mid-way once."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from torchslim.core import Config, ConfigError, StageResult, register_config, register_handler
from torchslim.train import Callback, TrainConfig, fit

CALLS: list[str] = []


@register_config("test.zero_small")
@dataclasses.dataclass(frozen=True)
class ZeroSmall(Config):
    """Zero the smallest-magnitude fraction of every Linear weight."""

    fraction: float = 0.5
    fail_once_flag: str | None = None  # a file path: fail (like a kill) if it does not exist yet, then create it

    def validate(self) -> None:
        if not 0 <= self.fraction < 1:
            raise ConfigError(f"ZeroSmall.fraction must be in [0, 1), got {self.fraction}")


@register_handler(ZeroSmall)
def _zero_small(model, cfg: ZeroSmall, ctx):
    CALLS.append("zero_small")
    if cfg.fail_once_flag is not None and not Path(cfg.fail_once_flag).exists():
        Path(cfg.fail_once_flag).write_text("failed once")
        raise RuntimeError("simulated kill")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                w = m.weight
                k = int(cfg.fraction * w.numel())
                if k:
                    thr = w.abs().reshape(-1).kthvalue(k).values
                    w[w.abs() <= thr] = 0
    return StageResult(model, records={"zeroed": cfg.fraction,
                                       "sensitivity": {"fc": {"x": [0.0, 0.5, 0.9], "accuracy": [0.9, 0.85, 0.5]}}})


class _KillAt(Callback):
    def __init__(self, epoch: int, flag: Path):
        self.epoch, self.flag = epoch, flag

    def on_epoch_start(self, state):
        if state.epoch == self.epoch and not self.flag.exists():
            self.flag.write_text("killed")
            raise KeyboardInterrupt("simulated kill inside the stage")


@register_config("test.finetune")
@dataclasses.dataclass(frozen=True)
class Finetune(Config):
    finetune: TrainConfig = TrainConfig(epochs=3, max_steps_per_epoch=5)
    kill_at_epoch: int | None = None
    flag: str | None = None


@register_handler(Finetune)
def _finetune(model, cfg: Finetune, ctx):
    CALLS.append("finetune")
    cbs = [_KillAt(cfg.kill_at_epoch, Path(cfg.flag))] if cfg.kill_at_epoch is not None else []
    res = fit(model, ctx.train_data, cfg.finetune, loss_fn=ctx.loss_fn, out_dir=ctx.stage_out, callbacks=cbs,
              progress=False)
    return StageResult(model, records={
        "loss": None if ctx.loss_fn is None else type(ctx.loss_fn).__name__,
        "teacher_params": None if ctx.teacher is None else sum(p.numel() for p in ctx.teacher.parameters()),
        "resumed_from": res.resumed_from, "epochs_run": len(res.history)})
