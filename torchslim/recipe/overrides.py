"""Dotted ``key=value`` overrides on a raw recipe, as on the command line:
``stages.1.sparsity=0.95``, ``stages.prune.finetune.epochs=3`` (a stage by
name), ``data.holdout=1000``, ``model=lenet5``. Values are YAML scalars or
lists. The result is validated like any recipe."""
from __future__ import annotations

import copy
import re
from typing import Any, Iterable

from ..core.errors import ConfigError

__all__ = ["parse_overrides", "apply_overrides"]

_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def parse_overrides(items: Iterable[str]) -> list[tuple[str, Any]]:
    """``["a.b=1", ...]`` -> ``[("a.b", 1), ...]`` (values parsed as YAML)."""
    import yaml

    out = []
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (example: stages.1.sparsity=0.95)")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r}: the key {key!r} is not a dotted path (example: data.holdout=1000)")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({e})") from None
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 as a string
        out.append((key, value))
    return out


def _stage_pos(stages: list, part: str, key: str) -> int:
    names = []
    for i, s in enumerate(stages):
        n = s.get("name") if isinstance(s, dict) else None
        names.append(n if n is not None else (s.get("kind") if isinstance(s, dict) else None))
    if part.lstrip("-").isdigit():
        i = int(part)
        if not -len(stages) <= i < len(stages):
            raise ConfigError(f"override {key!r}: stage index {i} is out of range; the recipe has {len(stages)} "
                              f"stages {names}")
        return i % len(stages)
    matches = [i for i, n in enumerate(names) if n == part]
    if len(matches) != 1:
        what = "no stage is" if not matches else "several stages are"
        raise ConfigError(f"override {key!r}: {what} named {part!r}; stages are {names} (or use an index)")
    return matches[0]


def apply_overrides(raw: dict, overrides: Any) -> dict:
    """A copy of ``raw`` with the overrides applied. ``overrides`` is a list of
    ``"key=value"`` strings, a list of (key, value) pairs, or a dict."""
    if isinstance(overrides, dict):
        pairs = list(overrides.items())
    else:
        items = list(overrides)
        pairs = parse_overrides(items) if all(isinstance(i, str) for i in items) else [tuple(i) for i in items]
    raw = copy.deepcopy(raw)
    for key, value in pairs:
        parts = key.split(".")
        node: Any = raw
        for depth, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                if depth == 1 and parts[0] == "stages":
                    node = node[_stage_pos(node, part, key)]
                    continue
                raise ConfigError(f"override {key!r}: {'.'.join(parts[:depth])} is a list; index it by number")
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {'.'.join(parts[:depth]) or 'recipe'} is {node!r}, not a mapping")
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif isinstance(child, str) and part in ("model", "teacher"):
                # a shorthand model spec: turn it into its mapping form
                from .schema import parse_model_spec

                child = node[part] = {k: v for k, v in parse_model_spec(child, part).to_dict().items()
                                      if v is not None and v != {}}
            node = child
        last = parts[-1]
        if isinstance(node, list):
            if len(parts) == 2 and parts[0] == "stages":
                node[_stage_pos(node, last, key)] = value
                continue
            raise ConfigError(f"override {key!r}: cannot set {last!r} inside a list")
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {'.'.join(parts[:-1])} is {node!r}, not a mapping")
        node[last] = value
    return raw
