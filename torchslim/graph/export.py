"""Tracing by execution: ``torch.export`` (non-strict) runs the model's own
Python on the example inputs with fake tensors and records the ATen ops it
executes. Data-dependent Python, ``*args`` signatures, tuple and
``ModelOutput`` results, computed ``view`` sizes and Hugging Face attention
code are followed because they simply run; what is recorded is the ops.

Parameters and buffers appear as graph inputs; ``ExportedGraph.tensors`` maps
each to its owner module and tensor name, so the dependency rules speak in
the model's own names. Outputs are flattened to their tensors; key/value
caches (``DynamicCache`` and the like) are left out: they are state handed
back to the same model, not the model's answer.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from .trace import TraceError

__all__ = ["ExportedGraph", "export_graph", "output_tensors"]


def output_tensors(out: Any) -> list[torch.Tensor]:
    """The tensors of a model's output, in order: a tensor, tuples/lists,
    dicts and ``ModelOutput``s (by field order), dataclasses; caches (objects
    whose class name ends in ``Cache``) and non-tensors are skipped."""
    if isinstance(out, torch.Tensor):
        return [out]
    if out is None or type(out).__name__.endswith("Cache"):
        return []
    if isinstance(out, dict):  # includes transformers' ModelOutput (an OrderedDict)
        return [t for v in out.values() for t in output_tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in output_tensors(v)]
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return [t for f in dataclasses.fields(out) for t in output_tensors(getattr(out, f.name))]
    return []


class _Flat(nn.Module):
    """The model with its output flattened to a tuple of tensors."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        return tuple(output_tensors(self.model(*args, **kwargs)))


@dataclasses.dataclass
class ExportedGraph:
    gm: fx.GraphModule
    tensors: dict[str, tuple[str, str]]  # placeholder name -> (owner module path, tensor name)
    inputs: list[str]  # placeholder names of the user inputs


def export_graph(model: nn.Module, example_inputs: tuple, example_kwargs: dict | None = None) -> ExportedGraph:
    """Export ``model`` (in eval mode, no gradients) on the example inputs;
    raises TraceError when torch.export cannot run it."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.export(_Flat(model), tuple(example_inputs), kwargs=example_kwargs or {}, strict=False)
    except Exception as e:  # export raises many error types
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise TraceError(f"torch.export cannot run {type(model).__name__}: {type(e).__name__}: {first[:300]}") from None
    finally:
        model.train(was)
    sig = ep.graph_signature
    owned: dict[str, str] = {}
    owned.update(sig.inputs_to_parameters)
    owned.update(sig.inputs_to_buffers)
    tensors = {}
    for ph, fqn in owned.items():
        fqn = fqn.removeprefix("model.")
        mod, _, t = fqn.rpartition(".")
        tensors[ph] = (mod, t)
    inputs = [s.arg.name for s in sig.input_specs if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
    return ExportedGraph(ep.graph_module, tensors, inputs)
