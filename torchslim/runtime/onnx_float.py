"""Float ONNX export with PyTorch's TorchScript-based exporter (opset 17).

Conventions, so every exported model looks the same to ONNX Runtime users:
input names default to the names of ``forward``'s parameters, the output is
``output`` (``embedding`` if the model says so through ``onnx_output_names``),
dimension 0 of every input and output is the dynamic ``batch``, and dimension 1
of an integer input of rank 2 (token ids, attention masks) is the dynamic
``sequence``. Hugging Face models inside the module are exported with their
"eager" attention (a copy is switched; the original is not touched): the SDPA
path traces into a mask/NaN-guard subgraph that costs a quarter of the run time
in ONNX Runtime and that its transformer fusions cannot recognise. Arithmetic
that cannot change its input (the ``- 0`` and ``/ 1`` of a zoo model's built-in
normalisation with mean 0 and std 1) is removed from the graph
(``torchslim.export.simplify``).
"""
from __future__ import annotations

import copy
import inspect
import io
import os
import warnings
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from ..core.errors import ModelError

__all__ = ["export_float", "default_io_names", "default_dynamic_axes", "write_model"]

OPSET = 17


def _as_tuple(example_inputs) -> tuple:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    return tuple(example_inputs)


def default_io_names(model: nn.Module, example_inputs) -> tuple[list[str], list[str]]:
    inputs = _as_tuple(example_inputs)
    params = [p for p in inspect.signature(model.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = [p.name for p in params[: len(inputs)]]
    if len(names) != len(inputs) or names == ["x"]:
        names = ["input"] if len(inputs) == 1 else [f"input_{i}" for i in range(len(inputs))]
    outputs = list(getattr(model, "onnx_output_names", None) or ["output"])
    return names, outputs


def default_dynamic_axes(example_inputs, input_names: Sequence[str], output_names: Sequence[str]) -> dict:
    axes: dict[str, dict[int, str]] = {}
    for name, t in zip(input_names, _as_tuple(example_inputs)):
        a = {0: "batch"}
        if not t.is_floating_point() and t.dim() == 2:
            a[1] = "sequence"
        axes[name] = a
    for name in output_names:
        axes[name] = {0: "batch"}
    return axes


def prepare_for_export(model: nn.Module) -> nn.Module:
    """An eval-mode copy with Hugging Face attention switched to "eager"."""
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        cfg = getattr(m, "config", None)
        if getattr(cfg, "_attn_implementation", None) not in (None, "eager") and hasattr(m, "set_attn_implementation"):
            m.set_attn_implementation("eager")
    return model


def export_float(model: nn.Module, example_inputs, *, input_names: Sequence[str] | None = None,
                 output_names: Sequence[str] | None = None, dynamic_axes: dict | None = None,
                 opset: int = OPSET):
    """The float ONNX ``ModelProto`` of ``model`` (not written anywhere; see
    ``torchslim.export.to_onnx`` for files)."""
    import onnx

    inputs = _as_tuple(example_inputs)
    d_in, d_out = default_io_names(model, inputs)
    input_names = list(input_names or d_in)
    output_names = list(output_names or d_out)
    if dynamic_axes is None:
        dynamic_axes = default_dynamic_axes(inputs, input_names, output_names)
    net = prepare_for_export(model)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(net, inputs, buf, input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False,
                              do_constant_folding=True)
        except Exception as e:  # the exporter's own message, with what to try
            raise ModelError(f"ONNX export of {type(model).__name__} failed: {e}. Check that forward takes "
                             f"tensors only and that example_inputs match its signature") from e
    from .simplify import drop_identity_arithmetic

    return drop_identity_arithmetic(onnx.load_from_string(buf.getvalue()))


def write_model(proto, path: str | os.PathLike) -> Path:
    """Write an ONNX model atomically (the file appears complete or not at all)."""
    from ..core.io import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, proto.SerializeToString())
    return path
