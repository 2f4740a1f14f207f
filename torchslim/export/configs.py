"""The ``export.onnx`` stage: write the current model as an ONNX file (float,
static int8 QDQ or dynamic int8) into the stage folder; the model itself is
returned unchanged and the file's path is recorded in
the stage's records (``onnx``).

Calibration for static int8 (when the model was not quantized by
``torchslim.quantize``) and the choice of float layers for dynamic int8 use
``ctx.calib_data`` only.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..core.config import Config, register_config, register_handler
from ..core.errors import ConfigError
from ..core.stage import StageResult

__all__ = ["ExportOnnxConfig"]


@register_config("export.onnx")
@dataclasses.dataclass(frozen=True)
class ExportOnnxConfig(Config):
    """file: output name (relative to the stage folder); int8: "none",
    "static" or "dynamic"; keep_float: number of Linear layers left in float
    in a dynamic export (chosen on calibration data); calib_batches /
    batch_size: how much calibration data to use."""

    file: str = "model.onnx"
    int8: str = "none"
    keep_float: int = 0
    calib_batches: int = 8
    batch_size: int = 64

    def validate(self) -> None:
        if self.int8 not in ("none", "static", "dynamic"):
            raise ConfigError(f"ExportOnnxConfig.int8: {self.int8!r} is not allowed; use 'none', 'static' or 'dynamic'")
        if not self.file.endswith(".onnx"):
            raise ConfigError(f"ExportOnnxConfig.file: {self.file!r} should end with .onnx")
        for f in ("keep_float", "calib_batches", "batch_size"):
            if getattr(self, f) < 0 or (f != "keep_float" and getattr(self, f) == 0):
                raise ConfigError(f"ExportOnnxConfig.{f}: must be positive, got {getattr(self, f)}")


def _calib_batches(data, cfg: ExportOnnxConfig) -> list:
    if data is None:
        return []
    n = min(len(data), cfg.calib_batches * cfg.batch_size)
    return [data.x[i: i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]


@register_handler(ExportOnnxConfig)
def export_onnx_stage(model, cfg: ExportOnnxConfig, ctx):
    from ..zoo import example_inputs
    from .exporter import is_fake_quantized, to_onnx

    out_dir = Path((ctx.stage_out or ctx.out_dir or ".") if ctx is not None else ".")
    inputs = (ctx.example_inputs if ctx is not None and ctx.example_inputs is not None
              else example_inputs(model, getattr(ctx, "dataset", None)))
    calib = _calib_batches(getattr(ctx, "calib_data", None), cfg)
    int8 = None if cfg.int8 == "none" else cfg.int8
    if (int8 == "static" and not is_fake_quantized(model) or cfg.keep_float) and not calib:
        raise ConfigError("export.onnx: this export needs calibration data (ctx.calib_data); "
                          "a recipe provides it with data.calib")
    path = to_onnx(model, out_dir / cfg.file, inputs, int8=int8, calib=calib or None, keep_float=cfg.keep_float)
    return StageResult(model, records={"onnx": str(path)})
