"""The context a stage runs in: data, example inputs, teacher, output folder."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch


@dataclasses.dataclass
class Context:
    train_data: Any = None  # a torchslim.zoo.data.ArrayDataset (or anything with .x/.y)
    test_data: Any = None  # held-out split: only for measuring, never for choosing
    calib_data: Any = None  # calibration / selection data (a split of train)
    example_inputs: tuple | None = None
    dataset: str | None = None
    teacher: torch.nn.Module | None = None
    device: str = "cpu"
    out_dir: Path | None = None
    num_threads: int | None = None
    seed: int = 0
    progress: bool = True
    logger: logging.Logger = dataclasses.field(default_factory=lambda: logging.getLogger("torchslim"))
    # Loss used by every fine-tuning inside a stage (``fn(net, x, y)``); None
    # means cross-entropy. The recipe runner sets a distillation loss here.
    loss_fn: Any = None
    # Output folder of the stage being run (checkpoints for resumable fine-tuning).
    stage_out: Path | None = None
    extras: dict = dataclasses.field(default_factory=dict)

    def stage_dir(self, name: str) -> Path | None:
        if self.out_dir is None:
            return None
        p = Path(self.out_dir) / name
        p.mkdir(parents=True, exist_ok=True)
        return p
