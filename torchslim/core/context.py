"""The context a stage handler runs in: the training and selection splits,
example inputs, teacher, loss, output folders. Never the test split (that is
only for measuring, by the runner). Handlers report through their
``StageResult``, not through the context (docs/ARCHITECTURE.md)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch


@dataclasses.dataclass
class Context:
    train_data: Any = None  # a torchslim.zoo.data.ArrayDataset (or anything with .x/.y)
    calib_data: Any = None  # calibration / selection data (a split of train); the test split is never here
    example_inputs: tuple | None = None
    dataset: str | None = None
    teacher: torch.nn.Module | None = None
    out_dir: Path | None = None
    seed: int = 0
    progress: bool = True
    # Loss used by every fine-tuning inside a stage (``fn(net, x, y)``); None
    # means cross-entropy. The recipe runner sets a distillation loss here.
    loss_fn: Any = None
    # Output folder of the stage being run (checkpoints for resumable fine-tuning).
    stage_out: Path | None = None
