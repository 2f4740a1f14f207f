"""The "codec.encode" stage: write the compact artifact of the model."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..core.config import Config, register_config, register_handler
from ..core.errors import ConfigError
from ..core.stage import StageResult
from .tensorcodec import MAX_INDEX_BITS

__all__ = ["EncodeConfig"]


@register_config("codec.encode")
@dataclasses.dataclass(frozen=True)
class EncodeConfig(Config):
    """Write ``filename`` (in the stage folder, else the run folder) as a
    compact artifact. ``index_bits`` fixes the relative sparse-index width
    (the paper uses 8 for conv and 5 for fc layers; None chooses per tensor);
    ``huffman`` entropy-codes indices and gaps; ``fp16`` stores float32
    tensors as float16 (lossy)."""
    filename: str = "model.tslim"
    index_bits: int | None = None
    huffman: bool = True
    fp16: bool = False

    def validate(self) -> None:
        if self.index_bits is not None and not 1 <= self.index_bits <= MAX_INDEX_BITS:
            raise ConfigError(f"EncodeConfig.index_bits: {self.index_bits} is outside 1..{MAX_INDEX_BITS}; "
                              "use null to choose per tensor")
        if not self.filename or Path(self.filename).name != self.filename:
            raise ConfigError(f"EncodeConfig.filename: {self.filename!r} must be a plain file name (no folders)")


@register_handler(EncodeConfig)
def _encode(model, config: EncodeConfig, ctx):
    from .compact import save_compact
    from .stats import stats_records

    folder = None if ctx is None else (ctx.stage_out or ctx.out_dir)
    if folder is None:
        raise ConfigError("codec.encode: the context has no output folder (ctx.stage_out or ctx.out_dir); "
                          "run it inside a recipe or pass Context(out_dir=...)")
    path = Path(folder) / config.filename
    stats = save_compact(model, path, index_bits=config.index_bits, huffman=config.huffman, fp16=config.fp16)
    return StageResult(model, artifact=path, records={
        "codec": {k: stats[k] for k in ("file_bytes", "header_bytes", "dense_fp32_bytes", "compression_ratio")},
        "codec_layers": stats_records(stats)})  # per layer: bits before/after Huffman, entropy bound
