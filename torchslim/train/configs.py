"""The ``train`` stage: plain training (or fine-tuning) through ``fit``, with
the recipe's loss (cross-entropy, or distillation from the teacher) and the
stage folder for checkpoints, so a killed stage resumes at its last epoch.
``TrainConfig`` itself lives in ``train.config`` (every method's fine-tune
embeds it); this module makes it a stage."""
from __future__ import annotations

from ..core.config import register_handler
from ..core.errors import DataError
from ..core.stage import StageResult
from .config import TrainConfig
from .loop import fit

__all__ = ["train_stage"]


@register_handler(TrainConfig)
def train_stage(model, config: TrainConfig, ctx) -> StageResult:
    if ctx is None or ctx.train_data is None:
        raise DataError("the train stage needs ctx.train_data; run it from a recipe or pass a Context")
    result = fit(model, ctx.train_data, config, eval_data=ctx.calib_data, loss_fn=ctx.loss_fn,
                 out_dir=ctx.stage_out, progress=ctx.progress)
    return StageResult(model, records={"fit_history": result.history, "fit_resumed_from": result.resumed_from})
