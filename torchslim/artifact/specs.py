"""Module specs: how the artifact records a layer's structure so ``load`` can
rebuild a model whose layers were resized (structured pruning), replaced
(decomposition, quantized layers) or removed (block pruning).

A table maps a module class to ``to_spec(module) -> dict`` and
``build(spec) -> module``; optionally ``patch(module, spec)`` updates an
existing instance in place (for classes whose structure lives in attributes,
such as a transformer attention's head count). Extend it for custom layers with
``register_module_spec``. Specs are plain JSON: no pickled code.
"""
from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

from ..core.errors import ArtifactError
from ..core.layers import LayerAdapter, by_key, register_layer, type_key


ModuleSpec = LayerAdapter  # the spec fields of a layer's adapter (core.layers): to_spec, build, patch
# Type-key prefixes whose specs are registered by a module imported on first
# need (keeps heavy packages such as transformers out of `import torchslim`).
_PROVIDERS: dict[str, str] = {"transformers.": "torchslim.graph.hf", "torchslim.quantize.": "torchslim.quantize.modules"}


def _spec_entry(key: str) -> LayerAdapter | None:
    a = by_key(key)
    return a if a is not None and a.to_spec is not None else None


def _entry(key: str) -> LayerAdapter | None:
    if _spec_entry(key) is None:
        for prefix, mod in _PROVIDERS.items():
            if key.startswith(prefix):
                import importlib

                importlib.import_module(mod).register_specs()
    return _spec_entry(key)


def register_module_spec(cls: type, to_spec: Callable[[nn.Module], dict],
                         build: Callable[[dict], nn.Module] | None = None,
                         patch: Callable[[nn.Module, dict], None] | None = None) -> None:
    register_layer(cls, to_spec=to_spec, build=build, patch=patch)


def plain_type(module: nn.Module) -> type:
    """The module's class, seen through torch's parametrization subclassing."""
    from torch.nn.utils import parametrize

    cls = type(module)
    if parametrize.is_parametrized(module):
        cls = cls.__bases__[0]
    return cls


def rebuildable(module: nn.Module) -> bool:
    """Whether the artifact can record this module's structure with a
    registered spec that builds or patches it."""
    entry = _spec_entry(type_key(plain_type(module)))
    return entry is not None and (entry.build is not None or entry.patch is not None)


def spec_of(module: nn.Module) -> dict | None:
    key = type_key(plain_type(module))
    entry = _spec_entry(key)
    if entry is None:
        return None
    return {"type": key, **entry.to_spec(module)}


def build_from_spec(spec: dict, where: str) -> nn.Module:
    entry = _entry(spec.get("type", ""))
    if entry is None or entry.build is None:
        raise ArtifactError(
            f"layer {where!r}: cannot rebuild a module of type {spec.get('type')!r}; "
            "import the package that registers it (torchslim.artifact.register_module_spec) before loading"
        )
    args = {k: v for k, v in spec.items() if k != "type"}
    return entry.build(args)


def patch_from_spec(module: nn.Module, spec: dict) -> bool:
    entry = _entry(spec.get("type", ""))
    if entry is None or entry.patch is None:
        return False
    entry.patch(module, {k: v for k, v in spec.items() if k != "type"})
    return True


# ---------------------------------------------------------------- built-in layers
def conv_spec(m: nn.modules.conv._ConvNd) -> dict:
    return {
        "in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
        "stride": list(m.stride), "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
        "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None, "padding_mode": m.padding_mode,
    }


for _cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_module_spec(_cls, conv_spec, (lambda c: lambda s: c(**s))(_cls))

register_module_spec(
    nn.Linear, lambda m: {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None},
    lambda s: nn.Linear(**s),
)
# widths a resized layer's shape tells (the codec records such layers by name only)
register_layer(nn.Linear, widths=("out_features", "in_features"))
for _cls in (nn.Conv1d, nn.Conv2d):
    register_layer(_cls, widths=("out_channels", "in_channels"))


def _bn_spec(m) -> dict:
    return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum, "affine": m.affine,
            "track_running_stats": m.track_running_stats}


for _cls in (nn.BatchNorm1d, nn.BatchNorm2d):
    register_module_spec(_cls, _bn_spec, (lambda c: lambda s: c(**s))(_cls))

register_module_spec(
    nn.LayerNorm,
    lambda m: {"normalized_shape": list(m.normalized_shape), "eps": m.eps,
               "elementwise_affine": m.elementwise_affine, "bias": getattr(m, "bias", None) is not None},
    lambda s: nn.LayerNorm(**s),
)
register_module_spec(
    nn.Embedding,
    lambda m: {"num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim, "padding_idx": m.padding_idx},
    lambda s: nn.Embedding(**s),
)
register_module_spec(
    nn.Sequential, lambda m: {"length": len(m)},
    lambda s: nn.Sequential(*[nn.Identity() for _ in range(s["length"])]),
)
register_module_spec(nn.Flatten, lambda m: {"start_dim": m.start_dim, "end_dim": m.end_dim}, lambda s: nn.Flatten(**s))
for _cls in (nn.Identity, nn.ReLU, nn.ReLU6, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU):
    register_module_spec(_cls, lambda m: {}, (lambda c: lambda s: c())(_cls))
register_module_spec(nn.Dropout, lambda m: {"p": m.p}, lambda s: nn.Dropout(**s))
for _cls in (nn.MaxPool2d, nn.AvgPool2d):
    register_module_spec(
        _cls, lambda m: {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding},
        (lambda c: lambda s: c(**s))(_cls),
    )
register_module_spec(nn.AdaptiveAvgPool2d, lambda m: {"output_size": m.output_size}, lambda s: nn.AdaptiveAvgPool2d(**s))


def _zoo_specs() -> None:
    from ..zoo import models as zm

    register_module_spec(
        zm.SelfAttention,
        lambda m: {"dim": m.q.in_features, "num_heads": m.num_heads, "head_dim": m.head_dim},
        lambda s: zm.SelfAttention(s["dim"], s["num_heads"], s["head_dim"]),
    )
    register_module_spec(zm.Normalize, lambda m: {}, lambda s: zm.Normalize())
    register_module_spec(zm.ToImage, lambda m: {"shape": list(m.shape)}, lambda s: zm.ToImage(s["shape"]))


_zoo_specs()


def _get(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path) if path else model
    except AttributeError:
        return None


def set_submodule(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    if isinstance(parent, (nn.Sequential, nn.ModuleList)) and leaf.isdigit() and int(leaf) < len(parent):
        parent[int(leaf)] = new
    else:
        setattr(parent, leaf, new)


def generic_spec(module: nn.Module) -> dict | None:
    """For a layer of a type with no registered spec that structural pruning
    resized (``torchslim_attrs``, set by the surgery): the shapes of its own
    tensors and the size attributes that were changed; ``load`` patches a
    fresh instance with them."""
    marked = getattr(module, "torchslim_attrs", None)
    if marked is None:
        return None
    attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(module).items()
             if not k.startswith("_") and k != "torchslim_attrs" and _plain_size(v)}
    tensors = {n: list(t.shape) for n, t in list(module._parameters.items()) + list(module._buffers.items())
               if t is not None}
    return {"type": type_key(plain_type(module)), "generic": {"attrs": attrs, "tensors": tensors}}


def _plain_size(v) -> bool:
    """An int, or a tuple of ints (a subclass of a known layer keeps its
    sizes in such attributes: ``normalized_shape``, ``groups``...)."""
    if type(v) is int:
        return True
    return isinstance(v, tuple) and all(type(x) is int for x in v)


def _patch_generic(module: nn.Module, spec: dict, where: str) -> None:
    import torch

    g = spec["generic"]
    for n, shape in g.get("tensors", {}).items():
        if n in module._parameters and module._parameters[n] is not None:
            old = module._parameters[n]
            if list(old.shape) != shape:
                module._parameters[n] = nn.Parameter(torch.zeros(shape, dtype=old.dtype), requires_grad=old.requires_grad)
        elif n in module._buffers and module._buffers[n] is not None:
            old = module._buffers[n]
            if list(old.shape) != shape:
                module._buffers[n] = torch.zeros(shape, dtype=old.dtype)
        else:
            raise ArtifactError(f"{where}: layer {type(module).__name__} has no tensor {n!r} to resize; the artifact "
                                "was saved from another version of the model's code")
    for k, v in g.get("attrs", {}).items():
        setattr(module, k, tuple(v) if isinstance(v, list) else v)
    module.torchslim_attrs = {}


def record_structure(model: nn.Module) -> dict[str, dict]:
    """Specs of every module of a known type, and of resized modules of
    other types (``generic_spec``), by qualified name."""
    out: dict[str, dict] = {}
    for name, module in model.named_modules():
        if "parametrizations" in name.split("."):
            continue
        s = spec_of(module) if name else None
        if s is None:
            s = generic_spec(module)
        if s is not None:
            out[name] = s
    return out


def apply_structure(model: nn.Module, structure: dict[str, Any], where: str = "artifact") -> nn.Module:
    """Make ``model`` (a fresh build of the architecture) structurally match the
    recorded specs: replace or patch every module whose spec differs."""
    # parents first, so a replaced container gets its children set afterwards
    for name in sorted(structure, key=lambda n: n.count(".")):
        spec = structure[name]
        cur = _get(model, name)
        if "generic" in spec:
            if cur is None or type_key(plain_type(cur)) != spec.get("type"):
                raise ArtifactError(f"{where}: layer {name!r} is not a {spec.get('type')} in the rebuilt model; "
                                    "load with the model code the artifact was saved from")
            _patch_generic(cur, spec, f"{where}: layer {name!r}")
            continue
        if cur is not None and spec_of(cur) == spec:
            continue
        if cur is not None and type_key(type(cur)) == spec.get("type") and patch_from_spec(cur, spec):
            continue
        parent_path = name.rpartition(".")[0]
        if parent_path and _get(model, parent_path) is None:
            raise ArtifactError(f"{where}: layer {name!r} has no parent {parent_path!r} in the rebuilt model")
        set_submodule(model, name, build_from_spec(spec, name))
    return model
