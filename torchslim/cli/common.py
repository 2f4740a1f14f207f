"""Helpers shared by CLI verbs: loading a model (zoo name, artifact, Hugging Face folder, factory),
printing JSON or a rich table, parsing key=value options."""
from __future__ import annotations

import contextvars
import json
import sys
from typing import Any

import torch.nn as nn

# The --auto flag (a Hugging Face folder's Auto class) of the running verb; set by cli.main.
AUTO: contextvars.ContextVar[str | None] = contextvars.ContextVar("torchslim_cli_auto", default=None)


def load_model(spec: str, *, dataset: str | None = None, auto: str | None = None, **kwargs) -> nn.Module:
    """A zoo name (built fresh, for the data set if given), an artifact path or
    a ``torchslim run``/``train`` output folder, a Hugging Face model folder
    (loaded offline with ``auto``, default the verb's ``--auto`` or AutoModel),
    or the import path of a user's own model class or factory
    (``pkg.module:factory``, called with ``kwargs``). See ``zoo.sources``."""
    from ..zoo.sources import is_hf_dir, load_model as resolve

    if auto is None and is_hf_dir(spec):
        auto = AUTO.get()
    return resolve(spec, dataset=dataset, auto=auto, **kwargs)


def add_auto_option(parser) -> None:
    """``--auto CLASS`` for a verb that loads a model from a Hugging Face folder."""
    parser.add_argument("--auto", default=None, metavar="CLASS",
                        help="Auto class for a Hugging Face model folder (default AutoModel; e.g. "
                             "AutoModelForSequenceClassification, AutoModelForImageClassification)")


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
