"""``to_onnx``: one call for the float, static int8 (QDQ) and dynamic int8
ONNX exports, written atomically.

    >>> from torchslim.export import to_onnx, OrtModel
    >>> to_onnx(model, "m.onnx", example_inputs)                         # float
    >>> to_onnx(qmodel, "m8.onnx", example_inputs, int8="static")        # from torchslim.quantize
    >>> to_onnx(model, "m8.onnx", example_inputs, int8="static", calib=batches)   # min/max calibration
    >>> to_onnx(model, "m8.onnx", example_inputs, int8="dynamic", keep_float=1, calib=batches)
    >>> OrtModel("m8.onnx", threads=2)(*example_inputs)

Where the static scales come from: ``params`` if given; else, if ``model`` was
quantized by ``torchslim.quantize`` (fake-quant modules), its
``export_params``; else min/max calibration on ``calib`` (``calibrate.py``).
Dynamic weights use the scales of a quantized model when there are any, else
symmetric per-channel int8. ``smooth`` (dynamic only, with ``calib``): the
SmoothQuant migration strength alpha (0.7 is a good start for transformers):
outlier input features are divided down before the per-tensor int8
activation quantization and the weights multiplied up, per input feature.
Only Linears with ``in_features <= out_features`` are smoothed: the ``Mul`` on
the input costs in proportion to its width, and on MiniLM smoothing the FFN
down-projections (1536 -> 384) cost ~6% latency for +0.001 mean cosine. ``keep_float`` (dynamic only): layer names to leave
in float, or a count of layers chosen on ``calib`` by ``sensitivity.py``.
Transformer models are fused (``fuse.py``) before the dynamic rewrite.
The ONNX file's metadata records the mode and the quantized / float layers.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn as nn

from ..core.errors import ConfigError, ModelError
from ..runtime.onnx_float import default_io_names, export_float, write_model

__all__ = ["to_onnx", "is_fake_quantized"]


def _as_tuple(x) -> tuple:
    return (x,) if isinstance(x, torch.Tensor) else tuple(x)


def is_fake_quantized(model: nn.Module) -> bool:
    """True when ``model`` holds modules of ``torchslim.quantize``."""
    return any(type(m).__module__.startswith("torchslim.quantize") for m in model.modules())


def _from_quantized(model: nn.Module):
    try:
        from ..quantize import export_params
    except ImportError:
        raise ModelError("the model holds torchslim.quantize modules but torchslim.quantize.export_params is "
                         "not available; update torchslim") from None
    return export_params(model)


def _feeds(proto, inputs: tuple) -> dict:
    names = [i.name for i in proto.graph.input]
    return {n: t.detach().cpu().numpy() for n, t in zip(names, inputs)}


def to_onnx(model: nn.Module, path: str | os.PathLike, example_inputs, *, int8: str | None = None,
            params: dict | None = None, calib: Iterable | None = None,
            keep_float: int | Sequence[str] = (), smooth: float | None = None, fuse: bool = True,
            input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
            dynamic_axes: dict | None = None) -> Path:
    """Export ``model`` to ONNX at ``path`` (opset 17, legacy exporter); see
    the module docstring for the int8 modes. Returns the path."""
    if int8 not in (None, "static", "dynamic"):
        raise ConfigError(f"to_onnx: int8 must be None, 'static' or 'dynamic', got {int8!r}")
    inputs = _as_tuple(example_inputs)
    float_model = model
    if params is None and is_fake_quantized(model):
        float_model, params = _from_quantized(model)
    float_model = float_model.eval()
    names = dict(input_names=input_names, output_names=output_names or default_io_names(model, inputs)[1],
                 dynamic_axes=dynamic_axes)
    proto = export_float(float_model, inputs, **names)
    meta = {"producer": "torchslim", "int8": int8 or "none"}
    if int8 == "static":
        from .qdq import write_qdq

        if params is None:
            if calib is None:
                raise ConfigError("to_onnx(int8='static') needs scales: quantize the model with torchslim.quantize "
                                  "(e.g. quantize.ptq), or pass params=..., or calib=<calibration batches>")
            from .calibrate import minmax_params

            params = minmax_params(float_model, calib)
        proto, done = write_qdq(proto, float_model, params)
        if not done:
            raise ModelError("to_onnx(int8='static'): no Conv/Linear layer of the graph matched the quantization "
                             "parameters; check that params are keyed by the model's layer names")
        meta["quantized_layers"] = done
    elif int8 == "dynamic":
        from .dynamic import write_dynamic
        from .fuse import fuse_transformer

        keep = _float_layers(float_model, keep_float, calib)
        if fuse:
            proto = fuse_transformer(proto, float_model, _feeds(proto, inputs))
        weight_params = {k: v for k, v in (params or {}).items() if v.get("weight_scale") is not None}
        amax = None
        if smooth is not None:
            if calib is None or not 0.0 < smooth < 1.0:
                raise ConfigError(f"to_onnx: smooth={smooth!r} needs 0 < smooth < 1 and calib=<calibration batches>")
            from .calibrate import input_channel_absmax

            amax = input_channel_absmax(float_model, [_as_tuple(b) for b in calib])
            amax = {k: v for k, v in amax.items() if k not in weight_params and _widening(float_model, k)}
            meta["smooth_alpha"] = str(smooth)
        proto, done = write_dynamic(proto, float_model, keep=keep, params=weight_params, smooth_amax=amax,
                                    smooth_alpha=smooth or 0.7)
        if not done:
            raise ModelError("to_onnx(int8='dynamic'): the graph has no Linear (MatMul/Gemm) layer to quantize")
        meta["quantized_layers"] = done
        meta["float_layers"] = list(keep)
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"torchslim.{k}", v if isinstance(v, str) else json.dumps(v)
    return write_model(proto, path)


def _widening(model: nn.Module, name: str) -> bool:
    m = dict(model.named_modules())[name]
    return m.in_features <= m.out_features


def _float_layers(model: nn.Module, keep_float, calib) -> list[str]:
    if isinstance(keep_float, int) and not isinstance(keep_float, bool):
        if keep_float <= 0:
            return []
        if calib is None:
            raise ConfigError(f"to_onnx: keep_float={keep_float} picks layers on calibration data; pass calib=...")
        from .sensitivity import choose_float_layers

        return choose_float_layers(model, [_as_tuple(b) for b in calib], keep_float)
    known = {n for n, _ in model.named_modules()}
    bad = [n for n in keep_float if n not in known]
    if bad:
        raise ConfigError(f"to_onnx: keep_float names unknown layers {bad}; use names from model.named_modules()")
    return list(keep_float)
