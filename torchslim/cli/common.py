"""Helpers shared by CLI verbs: loading a model by zoo name or artifact path,
printing JSON or a rich table, parsing key=value options."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch.nn as nn

from ..core.errors import ModelError


def load_model(spec: str, *, dataset: str | None = None, **kwargs) -> nn.Module:
    """A zoo name (built fresh, for the data set if given), an artifact path, or
    the import path of a user's own model class (``pkg.module:Class``, built
    with ``kwargs``)."""
    from ..artifact import load
    from ..artifact.format import build_arch
    from ..zoo.models import build_model, model_names

    if spec in model_names():
        return build_model(spec, dataset=dataset, **kwargs)
    p = Path(spec)
    if p.is_dir() and (p / "report.json").exists():  # a `torchslim run` output folder
        p = p / json.loads((p / "report.json").read_text())["artifact"]
        return load(p)
    if ":" in spec and not p.exists():
        return build_arch({"class": spec, "kwargs": kwargs}, where=spec)
    if p.suffix in (".safetensors", ".tslim") or p.exists() or "/" in spec:
        return load(p)
    raise ModelError(f"{spec!r} is neither a zoo model ({', '.join(model_names())}) nor an artifact file")


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[fmt(v) for v in r])
    Console().print(t)


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3g}"
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as YAML scalars (numbers, true/false, lists)."""
    import yaml

    from ..core.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (example: train.epochs=3)")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out
