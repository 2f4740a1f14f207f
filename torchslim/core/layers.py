"""One adapter per layer type: everything torchslim knows about a layer class
in one record, filled by the packages that know each part and read by all of
them (docs/ARCHITECTURE.md, "How to add a method", step 5):

* ``slice``: the surgery that removes channels (``graph.surgery``);
* ``to_spec`` / ``build`` / ``patch``: how the artifact records and rebuilds
  it (``artifact.specs``);
* ``macs``: its multiply-accumulate count (``analysis.counters``);
* ``widths``: the attributes holding its output and input widths, read back
  from a weight's shape (``codec``: layers resized by structured pruning).

``register_layer(cls, **fields)`` sets fields; ``field_for(module, name)``
finds the field for a module through its class's MRO (a subclass inherits its
base's adapter unless it registers its own); ``exact(cls)`` gives a class's
own record (specs are recorded per exact type)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

__all__ = ["LayerAdapter", "register_layer", "adapter_of", "field_for", "exact", "by_key", "type_key"]


@dataclasses.dataclass
class LayerAdapter:
    cls: type
    slice: Callable | None = None
    to_spec: Callable | None = None
    build: Callable | None = None
    patch: Callable | None = None
    macs: Callable | None = None
    widths: tuple[str, str] | None = None


_ADAPTERS: dict[type, LayerAdapter] = {}
_BY_KEY: dict[str, type] = {}


def type_key(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_layer(cls: type, **fields: Any) -> LayerAdapter:
    """Set ``fields`` (slice, to_spec, build, patch, macs, widths) of ``cls``'s adapter."""
    unknown = set(fields) - {f.name for f in dataclasses.fields(LayerAdapter)} - {"cls"}
    if unknown or "cls" in fields:
        raise TypeError(f"register_layer: unknown field(s) {sorted(unknown | ({'cls'} & set(fields)))}")
    a = _ADAPTERS.setdefault(cls, LayerAdapter(cls))
    for k, v in fields.items():
        setattr(a, k, v)
    _BY_KEY[type_key(cls)] = cls
    return a


def exact(cls: type) -> LayerAdapter | None:
    return _ADAPTERS.get(cls)


def by_key(key: str) -> LayerAdapter | None:
    cls = _BY_KEY.get(key)
    return _ADAPTERS.get(cls) if cls is not None else None


def adapter_of(module_or_cls: Any) -> list[LayerAdapter]:
    """The adapters of a module's class and its bases, most specific first."""
    cls = module_or_cls if isinstance(module_or_cls, type) else type(module_or_cls)
    return [_ADAPTERS[k] for k in cls.__mro__ if k in _ADAPTERS]


def field_for(module_or_cls: Any, name: str):
    """The first non-empty ``name`` field along the MRO (None if none)."""
    for a in adapter_of(module_or_cls):
        v = getattr(a, name)
        if v is not None:
            return v
    return None
