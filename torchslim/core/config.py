"""Configs are plain data: frozen dataclasses that validate themselves and
round-trip to dict / JSON / YAML.

A config type is registered under a dotted name (``"prune.unstructured"``); the
recipe runner and the CLI look configs up by that name, and ``apply`` looks up
the handler registered for the config's type, so adding a method is one module
plus one registration.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Callable, ClassVar, Literal, Union, get_args, get_origin

from .errors import ConfigError

_CONFIGS: dict[str, type["Config"]] = {}
_HANDLERS: dict[type, Callable[..., Any]] = {}


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert lossless cases
    (int -> float, list -> tuple, dict -> nested Config). Raise ConfigError."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not allowed; use one of {list(allowed)}")
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arg in get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        if len(errors) == 1:  # Optional[X]: X's own message says what is wrong
            raise ConfigError(errors[0])
        raise ConfigError(f"{where}: {value!r} does not fit {_type_name(tp)}")
    if origin in (tuple,):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args or [Any] * len(value))))
    if origin in (list,):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (arg,) = get_args(tp) or (Any,)
        return [_coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict,):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_coerce(k, kt, f"{where} key"): _coerce(v, vt, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Config):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return tp.from_dict(value, where=where)
        raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


_BOUNDS = {"ge": (lambda v, b: v >= b, ">="), "gt": (lambda v, b: v > b, ">"),
           "le": (lambda v, b: v <= b, "<="), "lt": (lambda v, b: v < b, "<")}


def bounded(default: Any = dataclasses.MISSING, **bounds: float):
    """A config field with a declared range, checked for every config (from
    Python, YAML or the command line) before ``validate``:
    ``ratio: float = bounded(0.5, ge=0.0, lt=1.0)``. ``None`` passes (for
    Optional fields); tuples and lists are checked element by element."""
    unknown = set(bounds) - set(_BOUNDS)
    if unknown:
        raise TypeError(f"bounded(): unknown bound(s) {sorted(unknown)}; use ge, gt, le, lt")
    return dataclasses.field(default=default, metadata={"bounds": bounds})


def _check_bounds(value: Any, bounds: dict, where: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            _check_bounds(v, bounds, f"{where}[{i}]")
        return
    if not isinstance(value, (int, float)):
        return
    for key, b in bounds.items():
        ok, sym = _BOUNDS[key]
        if not ok(value, b):
            rng = " and ".join(f"{_BOUNDS[k][1]} {x}" for k, x in bounds.items())
            raise ConfigError(f"{where} must be {rng}, got {value}")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every config. Subclasses are frozen dataclasses; ranges are
    declared on the fields (``bounded``) and checked here, once, for every
    way a config is made; override ``validate`` for cross-field checks and
    raise ``ConfigError`` there."""

    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            where = f"{type(self).__name__}.{f.name}"
            value = getattr(self, f.name)
            coerced = _coerce(value, hints.get(f.name, Any), where)
            if coerced is not value:
                object.__setattr__(self, f.name, coerced)
            if "bounds" in f.metadata:
                _check_bounds(coerced, f.metadata["bounds"], where)
        self.validate()

    def validate(self) -> None:  # pragma: no cover - default accepts everything
        """Cross-field checks; raise ConfigError naming the field."""

    # ---- serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = _plain(v)
        return out

    def changed(self) -> dict[str, Any]:
        """Only the fields that differ from their defaults (nested configs
        likewise). Equal configs give equal dicts, and a field added later with
        a default leaves the dict of an existing config unchanged, so
        fingerprints built from it survive upgrades."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = dataclasses.MISSING
            if default is not dataclasses.MISSING and v == default:
                continue
            out[f.name] = v.changed() if isinstance(v, Config) else _plain(v)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str | None = None):
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{where}: unknown field(s) {unknown}; allowed fields are {sorted(fields)}"
            )
        try:
            return cls(**data)
        except TypeError as e:  # missing required fields
            raise ConfigError(f"{where}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str):
        import yaml

        return cls.from_dict(yaml.safe_load(text) or {})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _plain(v: Any) -> Any:
    if isinstance(v, Config):
        return v.to_dict()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def register_config(name: str):
    """Class decorator: register a Config subclass under a dotted name."""

    def deco(cls):
        if name in _CONFIGS and _CONFIGS[name] is not cls:
            raise ConfigError(f"config name {name!r} is already registered by {_CONFIGS[name].__qualname__}")
        cls.name = name
        _CONFIGS[name] = cls
        return cls

    return deco


def register_handler(config_cls: type):
    """Decorator: ``fn(model, config, ctx) -> StageResult`` applies configs of
    this type (a plain model return is accepted too). One handler per type."""

    def deco(fn):
        old = _HANDLERS.get(config_cls)
        if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ConfigError(f"{config_cls.__qualname__} already has a handler ({old.__module__}.{old.__qualname__})")
        _HANDLERS[config_cls] = fn
        return fn

    return deco


def config_class(name: str) -> type[Config]:
    _load_method_modules()
    try:
        return _CONFIGS[name]
    except KeyError:
        raise ConfigError(f"unknown config {name!r}; known: {sorted(_CONFIGS)}") from None


def registered_configs() -> dict[str, type[Config]]:
    _load_method_modules()
    return dict(_CONFIGS)


def apply_stage(model, config: Config, ctx=None):
    """Apply ``config`` to ``model`` through the handler registered for its
    type; returns a ``StageResult`` (model, artifact it wrote, records)."""
    from .stage import StageResult

    _load_method_modules()
    for klass in type(config).__mro__:
        if klass in _HANDLERS:
            out = _HANDLERS[klass](model, config, ctx)
            if isinstance(out, StageResult):
                return out
            return StageResult(model if out is None else out)
    raise ConfigError(f"no handler is registered for {type(config).__name__}")


def apply(model, config: Config, ctx=None):
    """``apply_stage(...).model``: the model with ``config`` applied."""
    return apply_stage(model, config, ctx).model


# Method families register their configs on import; they are found by
# convention, not listed: every subpackage of torchslim with a ``configs``
# module is a method family (a new family is one new package; a third-party
# family registers by importing torchslim.core and calling register_config).
_LOADED = False


def method_packages() -> list[str]:
    """Subpackages of torchslim that hold a ``configs`` module."""
    import importlib.util
    import pkgutil

    import torchslim

    out = []
    for info in pkgutil.iter_modules(torchslim.__path__):
        if info.ispkg and importlib.util.find_spec(f"torchslim.{info.name}.configs") is not None:
            out.append(f"torchslim.{info.name}")
    return sorted(out)


def _load_method_modules() -> None:
    global _LOADED
    if _LOADED:
        return
    import importlib

    for mod in method_packages():
        importlib.import_module(mod)  # a family's package imports its modules (handlers may live beside configs)
    _LOADED = True
