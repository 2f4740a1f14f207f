"""Where a model's cost is: parameters, non-zero parameters, MACs and FLOPs per
layer and in total, counted from a real forward pass on example inputs.

How: forward pre/post hooks keep a stack of the modules running; a layer type
with a counter (``counters.register_module_counter``: Linear, Conv, norms,
pooling, activations, embeddings, MultiheadAttention...) is counted from its
attributes and the shapes of that call, and nothing inside it is counted
again. Every other module (containers, a transformer block's own code, an
unknown leaf) is counted from the torch functions it calls, seen through a
``TorchFunctionMode`` (``torch.matmul``, ``@``, ``F.linear``, ``F.conv*``,
``F.scaled_dot_product_attention``, softmax, elementwise arithmetic...). A layer
that calls a function nobody knows how to count, or an unknown leaf in which
no torch function was seen, is flagged ``uncounted`` (per layer and in
``Profile.uncounted``) instead of silently costing zero. Conventions are in
``torchslim.analysis.counters``.

The model runs once in eval mode under ``torch.no_grad()`` (so BatchNorm
statistics are not touched); its mode is restored afterwards. Counts are for
the batch of the example inputs.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode

from ..core.errors import ModelError
from .counters import FREE_OPS, Uncountable, Work, first_tensor, function_counter, function_name, module_counter


@dataclass
class LayerProfile:
    """One row of a profile. ``params`` of a layer with a counter include its
    sub-modules (e.g. MultiheadAttention's out_proj); otherwise only the
    parameters the module holds itself. ``kinds`` splits ``flops`` by kind of
    work (conv, linear, matmul, attention, norm, pool, activation, softmax,
    elementwise, reduction, embedding)."""

    name: str
    type: str
    params: int = 0
    nonzero: int = 0
    macs: int = 0
    flops: int = 0
    output_shape: list[int] | None = None
    calls: int = 0
    uncounted: bool = False
    uncounted_ops: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Profile:
    params: int
    nonzero_params: int
    macs: int
    flops: int
    fp32_bytes: int
    size_bytes: int | None
    uncounted: list[str]
    layers: list[LayerProfile]
    input_shapes: list[list[int]]

    @property
    def sparsity(self) -> float:
        """Fraction of parameters that are exactly zero."""
        return 1.0 - self.nonzero_params / self.params if self.params else 0.0

    def layer(self, name: str) -> LayerProfile:
        for lp in self.layers:
            if lp.name == name:
                return lp
        raise KeyError(f"no layer {name!r} in this profile; layers: {[lp.name for lp in self.layers]}")

    def to_dict(self) -> dict:
        return {
            "params": self.params,
            "nonzero_params": self.nonzero_params,
            "sparsity": self.sparsity,
            "macs": self.macs,
            "flops": self.flops,
            "fp32_bytes": self.fp32_bytes,
            "size_bytes": self.size_bytes,
            "uncounted": list(self.uncounted),
            "input_shapes": [list(s) for s in self.input_shapes],
            "layers": [lp.to_dict() for lp in self.layers],
        }


# ------------------------------------------------------------------ recording
@dataclass
class _Record:
    name: str
    module: nn.Module
    counted_by_module: bool
    work: Work = field(default_factory=Work)
    calls: int = 0
    seen_ops: int = 0
    unknown_ops: Counter = field(default_factory=Counter)
    output_shape: list[int] | None = None


class _Recorder(TorchFunctionMode):
    """Module stack (from hooks) plus the torch functions each module calls itself."""

    def __init__(self, records: dict[int, _Record], root: _Record):
        super().__init__()
        self.records = records
        self.root = root
        self.stack: list[tuple[_Record, bool]] = []
        self.suppress = 0  # > 0 while a layer with a module counter runs
        self.busy = False

    # hooks -----------------------------------------------------------
    def pre_hook(self, module, args, kwargs):
        rec = self.records[id(module)]
        counted = rec.counted_by_module and self.suppress == 0
        self.stack.append((rec, counted))
        if rec.counted_by_module:
            self.suppress += 1
        return None

    def post_hook(self, module, args, kwargs, output):
        if not self.stack or self.stack[-1][0].module is not module:
            return None  # forward raised part-way; the stack is discarded by profile()
        rec, counted = self.stack.pop()
        if rec.counted_by_module:
            self.suppress -= 1
        if self.suppress:
            return None  # a sub-module called by a counted layer: already in its count
        self.busy = True
        try:
            rec.calls += 1
            if rec.output_shape is None:
                t = first_tensor(output)
                rec.output_shape = list(t.shape) if t is not None else None
            if counted:
                try:
                    rec.work.add(module_counter(module)(module, args, kwargs, output))
                except Exception as e:  # noqa: BLE001 - a counter that cannot handle this call
                    rec.unknown_ops[f"{type(module).__name__} counter failed: {e}"] += 1
        finally:
            self.busy = False
        return None

    # functions -------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.busy or self.suppress:
            return out
        rec = self.stack[-1][0] if self.stack else self.root
        name = function_name(func)
        rec.seen_ops += 1
        if name in FREE_OPS:
            return out
        counter = function_counter(name)
        if counter is None:
            rec.unknown_ops[name] += 1
            return out
        self.busy = True
        try:
            rec.work.add(counter(args, kwargs, out))
        except Uncountable as e:
            rec.unknown_ops[f"{name} ({e})"] += 1
        except Exception as e:  # noqa: BLE001 - an unexpected form of a known op
            rec.unknown_ops[f"{name} (could not count: {e})"] += 1
        finally:
            self.busy = False
        return out


# ------------------------------------------------------------------ parameters
def _own_param_entries(m: nn.Module) -> list[tuple[int, int, int]]:
    """(id of the parameter, numel, non-zeros of the effective tensor) for the
    parameters ``m`` holds itself, seeing through torch.nn.utils.prune masks
    (``weight_orig`` * ``weight_mask``) and parametrizations."""
    out = []
    for name, p in m.named_parameters(recurse=False):
        mask = getattr(m, name[: -len("_orig")] + "_mask", None) if name.endswith("_orig") else None
        eff = p.detach() * mask if isinstance(mask, torch.Tensor) else p.detach()
        out.append((id(p), p.numel(), int(torch.count_nonzero(eff))))
    if parametrize.is_parametrized(m):
        for pname, plist in m.parametrizations.items():
            originals = [p for _, p in plist.named_parameters(recurse=False)]
            numel = sum(p.numel() for p in originals)
            eff = getattr(m, pname).detach()
            out.append((id(originals[0]) if originals else id(plist), numel, min(numel, int(torch.count_nonzero(eff)))))
            for p in originals[1:]:
                out.append((id(p), 0, 0))
            for child in plist.children():  # parameters of the parametrizations themselves
                for p in child.parameters():
                    out.append((id(p), p.numel(), int(torch.count_nonzero(p.detach()))))
    return out


def _children(m: nn.Module) -> list[nn.Module]:
    """Sub-modules, not counting the ``parametrizations`` container of a parametrized module."""
    skip = m.parametrizations if parametrize.is_parametrized(m) else None
    return [c for c in m.children() if c is not skip]


def _modules_under(m: nn.Module) -> list[nn.Module]:
    """``m`` and its sub-modules, not descending into parametrizations (their owner counts them)."""
    out = [m]
    for c in _children(m):
        out += _modules_under(c)
    return out


def _tracked_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that get their own record: all, except the inside of a layer that
    has a module counter and the inside of parametrizations."""
    out: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()

    def walk(prefix: str, m: nn.Module):
        if id(m) in seen:
            return
        seen.add(id(m))
        out.append((prefix, m))
        if module_counter(m) is not None:
            return
        skip = m.parametrizations if parametrize.is_parametrized(m) else None
        for name, c in m.named_children():
            if c is not skip:
                walk(f"{prefix}.{name}" if prefix else name, c)

    walk("", model)
    return out


def _as_call(example_inputs) -> tuple[tuple, dict]:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (list, tuple)):
        return tuple(example_inputs), {}
    raise ModelError(f"example_inputs must be a tensor, a tuple of positional inputs or a dict of keyword inputs, "
                     f"got {type(example_inputs).__name__}")


def _shapes(args: tuple, kwargs: dict) -> list[list[int]]:
    return [list(v.shape) for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]


# ------------------------------------------------------------------ profile
def profile(model: nn.Module, example_inputs, *, artifact_path: str | os.PathLike | None = None) -> Profile:
    """Profile ``model`` on ``example_inputs`` (a tensor, a tuple of positional
    inputs, or a dict of keyword inputs). With ``artifact_path``, ``size_bytes``
    is that file's size on disk."""
    if not isinstance(model, nn.Module):
        raise ModelError(f"profile needs an nn.Module, got {type(model).__name__}; "
                         "to time any callable use torchslim.analysis.latency")
    args, kwargs = _as_call(example_inputs)
    size_bytes = None
    if artifact_path is not None:
        if not os.path.isfile(artifact_path):
            raise ModelError(f"artifact file {str(artifact_path)!r} does not exist; save the model first "
                             "(torchslim.save) or pass artifact_path=None")
        size_bytes = os.path.getsize(artifact_path)

    tracked = _tracked_modules(model)
    records = {id(m): _Record(name, m, module_counter(m) is not None) for name, m in tracked}
    recorder = _Recorder(records, records[id(model)])
    handles = []
    was_training = model.training
    try:
        for _, m in tracked:
            handles.append(m.register_forward_pre_hook(recorder.pre_hook, prepend=True, with_kwargs=True))
            handles.append(m.register_forward_hook(recorder.post_hook, with_kwargs=True))
        model.eval()
        with torch.no_grad(), recorder:
            try:
                model(*args, **kwargs)
            except Exception as e:
                where = recorder.stack[-1][0] if recorder.stack else records[id(model)]
                raise ModelError(
                    f"profile: the forward pass on example inputs of shapes {_shapes(args, kwargs)} failed in layer "
                    f"{where.name or '<model>'!r} ({type(where.module).__name__}): {e}; "
                    "pass example inputs the model accepts (e.g. torchslim.zoo.example_inputs(model, dataset))"
                ) from e
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    layers: list[LayerProfile] = []
    nonzero_of: dict[int, int] = {}
    with torch.no_grad():
        for name, m in tracked:
            rec = records[id(m)]
            if rec.counted_by_module:
                entries = [e for sub in _modules_under(m) for e in _own_param_entries(sub)]
            else:
                entries = _own_param_entries(m)
            for pid, _, nz in entries:
                nonzero_of.setdefault(pid, nz)
            leaf = not _children(m)
            reasons = [f"{op} x{n}" if n > 1 else op for op, n in rec.unknown_ops.items()]
            if not rec.counted_by_module and leaf and rec.calls and rec.seen_ops == 0 and not reasons:
                reasons.append("no torch function seen inside this layer")
            if not (rec.counted_by_module or leaf or entries or rec.work.flops or reasons):
                continue  # a pure container: its children have the rows
            layers.append(LayerProfile(
                name=name, type=type(m).__name__,
                params=sum(n for _, n, _ in entries), nonzero=sum(nz for _, _, nz in entries),
                macs=rec.work.macs, flops=rec.work.flops, output_shape=rec.output_shape, calls=rec.calls,
                uncounted=bool(reasons), uncounted_ops=reasons, kinds=dict(rec.work.kinds),
            ))
        params = sum(p.numel() for p in model.parameters())
        nonzero = sum(nonzero_of[id(p)] if id(p) in nonzero_of else int(torch.count_nonzero(p))
                      for p in model.parameters())
    return Profile(
        params=params, nonzero_params=nonzero,
        macs=sum(lp.macs for lp in layers), flops=sum(lp.flops for lp in layers),
        fp32_bytes=4 * params, size_bytes=size_bytes,
        uncounted=[lp.name for lp in layers if lp.uncounted],
        layers=layers, input_shapes=_shapes(args, kwargs),
    )


def format_count(n: float) -> str:
    """1234567 -> '1.23M' (for tables)."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n)) if float(n).is_integer() else f"{n:.2f}"


__all__ = ["profile", "Profile", "LayerProfile", "format_count"]
