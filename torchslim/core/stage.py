"""What a stage handler returns: the model, the artifact file it wrote (if
it wrote the shippable one itself, as ``codec.encode`` does), and records for
the report. The runner reads nothing else from a handler: no shared dict, no
attributes attached to the model (docs/ARCHITECTURE.md, "stage handlers")."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch.nn as nn

__all__ = ["StageResult"]


@dataclasses.dataclass
class StageResult:
    model: nn.Module
    artifact: Path | None = None  # a file the stage wrote that ships the model (the runner copies it)
    records: dict[str, Any] = dataclasses.field(default_factory=dict)  # JSON-able facts for stage.json / report
