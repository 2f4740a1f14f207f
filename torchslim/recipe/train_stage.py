"""The ``train`` stage: plain training (or fine-tuning) through ``fit``, with
the recipe's loss (cross-entropy, or distillation from the teacher) and the
stage folder for checkpoints, so a killed stage resumes at its last epoch."""
from __future__ import annotations

from ..core.config import _HANDLERS, register_handler
from ..train import TrainConfig, fit

__all__ = ["train_stage"]


def train_stage(model, config: TrainConfig, ctx):
    if ctx is None or ctx.train_data is None:
        from ..core.errors import DataError

        raise DataError("the train stage needs ctx.train_data; run it from a recipe or pass a Context")
    result = fit(model, ctx.train_data, config, eval_data=ctx.calib_data, loss_fn=ctx.loss_fn,
                 out_dir=ctx.stage_out, progress=ctx.progress)
    ctx.extras["fit_history"] = result.history
    ctx.extras["fit_resumed_from"] = result.resumed_from
    return model


if TrainConfig not in _HANDLERS:
    register_handler(TrainConfig)(train_stage)
