"""Helpers shared by CLI verbs: loading a model (zoo name, artifact, Hugging Face folder, factory),
printing JSON or a rich table, parsing key=value options."""
from __future__ import annotations

import contextvars
import json
import sys
from pathlib import Path
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


from ..report.format import fmt  # noqa: E402  (one formatting rule for terminal, HTML and CLI)


# ---------------------------------------------------------------- argument checks
def bounded(kind: type, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
            hi_open: bool = False):
    """An argparse ``type`` that parses ``kind`` (int or float) and rejects
    values outside the range with a message naming it ("use an integer in
    1..8", "use a number in [0, 1)"), so an out-of-range number is an error,
    never replaced by a default."""
    import argparse
    import math

    if kind is int:
        lo = None if lo is None else int(lo) + (1 if lo_open else 0)
        hi = None if hi is None else int(hi) - (1 if hi_open else 0)
        if lo is not None and hi is not None:
            what = f"an integer in {lo}..{hi}"
        elif lo is not None:
            what = f"an integer >= {lo}"
        else:
            what = f"an integer <= {hi}"
    elif lo is not None and hi is not None:
        what = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        what = f"a number {'>' if lo_open else '>='} {lo:g}"
    else:
        what = f"a number {'<' if hi_open else '<='} {hi:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}; use {what}") from None
        bad = isinstance(value, float) and not math.isfinite(value)
        if lo is not None:
            bad |= value <= lo if (lo_open and kind is float) else value < lo
        if hi is not None:
            bad |= value >= hi if (hi_open and kind is float) else value > hi
        if bad:
            raise argparse.ArgumentTypeError(f"{text} is out of range; use {what}")
        return value

    parse.__name__ = kind.__name__
    return parse


POSITIVE_INT = bounded(int, 1)
NONNEGATIVE_INT = bounded(int, 0)
POSITIVE_FLOAT = bounded(float, 0, lo_open=True)
NONNEGATIVE_FLOAT = bounded(float, 0)


def check_out(path: str, *, flag: str = "--out", folder: bool = False, example: str = "model.safetensors") -> Path:
    """Fail before any work when ``path`` cannot be written as an output:
    a file where a folder is expected (or the reverse), or a parent that is a
    file. Returns the path."""
    from ..core.errors import ConfigError

    p = Path(path).expanduser()
    if folder and p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {path}: is an existing file, not a folder; give a folder path (it is created "
                          "if missing)")
    if not folder and p.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; give a file path, e.g. {p / example}")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {path}: {parent} is a file, so nothing can be written under it; "
                                  "choose an output path inside a folder")
            break
    return p


def check_fits(model, data, *, dataset: str, role: str | None = None) -> None:
    """Before any work: ``model`` takes ``data``'s inputs and has an output
    for each of its labels; else one DataError naming ``--dataset`` (and the
    model's role, e.g. ``--teacher``) with the expected and given shapes."""
    from ..zoo.data import dataset_info
    from ..zoo.user_data import check_data_fits

    where = f"--dataset {dataset}" + (f" for {role}" if role else "")
    made_on = (getattr(model, "torchslim_metadata", None) or {}).get("dataset")
    fix = None
    if isinstance(made_on, str) and made_on != dataset:  # an artifact records the data it was made on
        fix = f"give the data set it was made on (--dataset {made_on}) or data of that shape"
    check_data_fits(model, data, where=where, num_classes=dataset_info(dataset).num_classes, fix=fix)


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
