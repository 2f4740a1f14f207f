"""Latency of a trial against the baseline, the way the constraints state it:
on ONNX Runtime (or eager PyTorch) at a stated thread count, at each of the
stated batch sizes, timed in alternating pairs with the baseline in one
process (``analysis.latency.compare_latency``: the median of per-pair
ratios), so the machine's drift cancels."""
from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from pathlib import Path
from typing import Iterator, Literal

import torch
import torch.nn as nn

from ..core.config import Config
from ..core.errors import ConfigError

__all__ = ["LatencySpec", "paired_latency"]


@dataclasses.dataclass(frozen=True)
class LatencySpec(Config):
    """Where and how latency is measured: ``runtime`` (``onnxruntime``: a
    float ONNX export in an ONNX Runtime session; ``torch``: eager), intra-op
    ``threads``, random inputs of each of ``batch_sizes``, ``repeats``
    alternating pairs after ``warmup`` calls."""

    runtime: Literal["onnxruntime", "torch"] = "onnxruntime"
    threads: int = 1
    batch_sizes: tuple[int, ...] = (1, 32)
    repeats: int = 30
    warmup: int = 5

    def validate(self) -> None:
        if self.threads < 1:
            raise ConfigError(f"LatencySpec.threads must be >= 1, got {self.threads}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ConfigError(f"LatencySpec.batch_sizes must list positive batch sizes, got {list(self.batch_sizes)}")
        if len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise ConfigError(f"LatencySpec.batch_sizes repeats a batch size: {list(self.batch_sizes)}")
        if self.repeats < 1 or self.warmup < 0:
            raise ConfigError(f"LatencySpec: repeats must be >= 1 and warmup >= 0, got {self.repeats}, {self.warmup}")


def input_sets(example_inputs: tuple, batch_sizes) -> list[tuple]:
    """Random inputs shaped like ``example_inputs`` at each batch size (floats
    in [0, 1), seeded by the batch size; integer inputs such as token ids are
    repeated along the batch)."""
    out = []
    for b in batch_sizes:
        g = torch.Generator().manual_seed(int(b))
        one = []
        for x in example_inputs:
            if x.is_floating_point():
                one.append(torch.rand(int(b), *x.shape[1:], generator=g, dtype=x.dtype))
            else:
                one.append(x[torch.arange(int(b)) % x.shape[0]])
        out.append(tuple(one))
    return out


@contextlib.contextmanager
def runnable(model: nn.Module, spec: LatencySpec, example: tuple, *, onnx_path: str | Path | None = None
             ) -> Iterator:
    """``model`` itself (``torch``) or an ONNX Runtime session of its float
    export (written to ``onnx_path``, else a temporary file)."""
    model = model.eval()
    if spec.runtime == "torch":
        yield model
        return
    from ..export import OrtModel, to_onnx

    if onnx_path is not None:
        path = Path(onnx_path)
        if not path.is_file():
            from ..artifact import atomic_write_bytes

            with tempfile.TemporaryDirectory() as tmp:
                to_onnx(model, Path(tmp) / "m.onnx", example)
                atomic_write_bytes(path, (Path(tmp) / "m.onnx").read_bytes())
        yield OrtModel(path, threads=spec.threads)
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield OrtModel(to_onnx(model, Path(tmp) / "m.onnx", example), threads=spec.threads)


def paired_latency(baseline: nn.Module, model: nn.Module, example_inputs: tuple, spec: LatencySpec, *,
                   baseline_onnx: str | Path | None = None, model_onnx: str | Path | None = None) -> dict:
    """Per batch size (keys are strings, for JSON): ``speedup`` (median of the
    per-pair ratios baseline/model), ``latency_ms`` and ``baseline_ms``
    (medians), ``speedup_p10`` / ``speedup_p90``; and the settings used."""
    sets = input_sets(tuple(example_inputs), spec.batch_sizes)
    from ..analysis.latency import compare_latency

    out: dict = {"speedup": {}, "latency_ms": {}, "baseline_ms": {}, "speedup_p10": {}, "speedup_p90": {},
                 "runtime": spec.runtime, "threads": spec.threads, "batch_sizes": list(spec.batch_sizes),
                 "repeats": spec.repeats}
    with runnable(baseline, spec, sets[0], onnx_path=baseline_onnx) as a, \
            runnable(model, spec, sets[0], onnx_path=model_onnx) as b:
        for bs, x in zip(spec.batch_sizes, sets):
            r = compare_latency(a, b, x, threads=spec.threads, repeats=spec.repeats, warmup=spec.warmup)
            k = str(bs)
            out["speedup"][k] = float(r["ratio_median"])
            out["latency_ms"][k] = float(r["b_median_ms"])
            out["baseline_ms"][k] = float(r["a_median_ms"])
            out["speedup_p10"][k] = float(r["ratio_p10"])
            out["speedup_p90"][k] = float(r["ratio_p90"])
    return out
