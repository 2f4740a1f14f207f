"""Bring your own model: one resolver for the Python API, the CLI and recipes.

``load_model(source)`` accepts

* a zoo name (``"lenet300"``), built fresh (for ``dataset`` if given);
* a saved artifact file (``.safetensors`` / ``.tslim``) or a ``torchslim run``
  output folder (its ``report.json`` names the artifact);
* an import path ``"pkg.module:factory"``: a class or any callable returning an
  ``nn.Module``, called with ``kwargs``;
* a Hugging Face model folder (``config.json`` plus ``model.safetensors`` or
  ``pytorch_model.bin``, as written by ``save_pretrained``), loaded offline
  with ``transformers.<auto>.from_pretrained(folder)``; ``auto`` picks the
  Auto class (``AutoModel`` by default, ``AutoModelForSequenceClassification``,
  ``AutoModelForImageClassification``, ``AutoModelForCausalLM``, ...);
* a mapping or a recipe ``ModelSpec`` with one of ``zoo``, ``artifact``,
  ``import_path``, ``hf`` (plus ``kwargs`` and, with ``hf``, ``auto``);
* an ``nn.Module``, returned as it is.

Every model it builds carries ``model.torchslim_arch`` so ``torchslim.save``
can record how to rebuild it: ``{"zoo": ...}``, ``{"class": "pkg.mod:factory",
"kwargs": {...}}`` or ``{"hf": {"auto": "AutoModel...", "config": {...}}}``
(``artifact.build_arch`` rebuilds each of them).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from ..core.errors import ModelError

__all__ = ["load_model", "load_hf", "import_factory", "is_hf_dir", "check_hf_dir", "check_auto",
           "hf_example_inputs", "tokenizer_for", "COMMON_AUTO_CLASSES", "HF_WEIGHT_FILES"]

COMMON_AUTO_CLASSES = (
    "AutoModel", "AutoModelForImageClassification", "AutoModelForSequenceClassification", "AutoModelForCausalLM",
    "AutoModelForMaskedLM", "AutoModelForTokenClassification", "AutoModelForQuestionAnswering",
    "AutoModelForSeq2SeqLM", "AutoModelForSemanticSegmentation", "AutoModelForAudioClassification",
)
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")
_SPEC_KEYS = ("zoo", "artifact", "import_path", "hf")


# ---------------------------------------------------------------- Hugging Face folders
def is_hf_dir(path: str | os.PathLike) -> bool:
    """True for a folder holding a ``config.json`` (a ``save_pretrained`` folder)."""
    p = Path(path).expanduser()
    return p.is_dir() and (p / "config.json").is_file()


def check_hf_dir(path: str | os.PathLike, *, where: str = "model") -> Path:
    """The folder as a Path, or a ModelError naming what is missing and what to do."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"{where}: no such folder {str(p)!r}; give the folder written by "
                         "model.save_pretrained(folder)")
    if not p.is_dir():
        raise ModelError(f"{where}: {str(p)!r} is a file, not a Hugging Face model folder; give the folder that "
                         "holds config.json and the weights")
    if not (p / "config.json").is_file():
        raise ModelError(f"{where}: {str(p)!r} has no config.json, so it is not a Hugging Face model folder; "
                         "write one with model.save_pretrained(folder)")
    if not any((p / f).is_file() for f in HF_WEIGHT_FILES):
        raise ModelError(f"{where}: {str(p)!r} has config.json but no weights ({' or '.join(HF_WEIGHT_FILES[::2])}); "
                         "write them with model.save_pretrained(folder)")
    return p


def check_auto(auto: str | None, *, where: str = "auto") -> str:
    """The Auto class name (``AutoModel`` when None), or a ModelError listing the common ones."""
    name = auto or "AutoModel"
    if not isinstance(name, str) or not name.startswith("AutoModel"):
        raise ModelError(f"{where}: unknown Auto class {name!r}; use one of {list(COMMON_AUTO_CLASSES)} "
                         "(any transformers.AutoModel* class)")
    import transformers

    try:
        getattr(transformers, name)
    except (AttributeError, ImportError):
        raise ModelError(f"{where}: transformers has no Auto class {name!r}; use one of "
                         f"{list(COMMON_AUTO_CLASSES)}") from None
    return name


@contextlib.contextmanager
def _hf_offline():
    """HF_HUB_OFFLINE=1 (and the module constant huggingface_hub read at import) while loading."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants, flag = None, None
    try:
        from huggingface_hub import constants

        flag = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
    except Exception:  # an older or newer hub without the constant: the env var is enough
        constants = None
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if constants is not None:
            constants.HF_HUB_OFFLINE = flag


def _json_config(config) -> dict:
    """``config.to_dict()`` as plain JSON data (dtypes and other objects as strings)."""
    return json.loads(json.dumps(config.to_dict(), default=str))


def load_hf(path: str | os.PathLike, *, auto: str | None = None, **kwargs: Any) -> nn.Module:
    """A Hugging Face model from a ``save_pretrained`` folder, offline, in eval
    mode, stamped with ``torchslim_arch = {"hf": {"auto", "config"}}``.
    ``kwargs`` go to ``from_pretrained`` (e.g. ``num_labels``)."""
    where = f"model {str(path)!r}"
    p = check_hf_dir(path, where=where)
    name = check_auto(auto, where=f"{where}: auto")
    import transformers

    cls = getattr(transformers, name)
    try:
        with _hf_offline():
            model = cls.from_pretrained(str(p), **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{where}: transformers.{name} cannot load it ({type(e).__name__}: {e}); check that "
                         "config.json and the weights belong together, or pick another auto class") from None
    archs = list(getattr(model.config, "architectures", None) or [])
    if auto is None and archs and "For" in archs[0] and "For" not in type(model).__name__:
        warnings.warn(f"{where}: config.json names {archs[0]}, but AutoModel loads the bare {type(model).__name__} "
                      f"without its head; pass auto='AutoModelFor...' (e.g. --auto) to keep it", stacklevel=2)
    model.torchslim_arch = {"hf": {"auto": name, "config": _json_config(model.config)}}
    return model.eval()


def hf_example_inputs(model: nn.Module, batch: int = 1, seq: int = 16) -> tuple:
    """Example inputs a Hugging Face model takes: ``(input_ids, attention_mask)``
    of ``batch`` x ``seq`` tokens for text models, ``(pixel_values,)`` of its
    configured image size for vision models."""
    config = getattr(model, "config", None)
    if config is None:
        raise ModelError(f"{type(model).__name__} has no .config; give example inputs yourself")
    main = getattr(model, "main_input_name", "input_ids")
    g = torch.Generator().manual_seed(0)
    if main == "input_ids":
        vocab = int(getattr(config, "vocab_size", 100) or 100)
        limit = getattr(config, "max_position_embeddings", None) or seq
        seq = min(seq, int(limit))
        ids = torch.randint(min(3, vocab - 1), vocab, (batch, seq), generator=g)
        return ids, torch.ones(batch, seq, dtype=torch.long)
    if main == "pixel_values":
        size = getattr(config, "image_size", 224)
        h, w = (size, size) if isinstance(size, int) else tuple(size)[:2]
        return (torch.rand(batch, int(getattr(config, "num_channels", 3)), int(h), int(w), generator=g),)
    raise ModelError(f"{type(model).__name__} takes {main!r}; give example inputs yourself")


def tokenizer_for(source: Any):
    """The tokenizer of a text model source: a Hugging Face folder's own
    (``AutoTokenizer.from_pretrained(folder)``, offline), or MiniLM's for
    ``"minilm"`` and anything else."""
    if isinstance(source, (str, os.PathLike)) and is_hf_dir(source):
        from transformers import AutoTokenizer

        try:
            with _hf_offline():
                return AutoTokenizer.from_pretrained(str(Path(source).expanduser()))
        except (OSError, ValueError, TypeError) as e:
            raise ModelError(f"{source}: has no usable tokenizer ({e}); save one with "
                             "tokenizer.save_pretrained(folder)") from None
    from .minilm import tokenizer

    return tokenizer()


# ---------------------------------------------------------------- import paths
def _import(path: str, where: str):
    mod_name, _, qual = path.partition(":")
    if not mod_name or not qual:
        raise ModelError(f"{where}: {path!r} must look like 'package.module:factory' (a class or a function)")
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as e:
        raise ModelError(f"{where}: cannot import module {mod_name!r} ({e}); install it or add its folder "
                         "to PYTHONPATH") from None
    for part in qual.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ModelError(f"{where}: module {mod_name!r} has no {qual!r}; check the name after ':'") from None
    return obj


def import_factory(path: str, **kwargs: Any) -> nn.Module:
    """Import ``"pkg.module:factory"`` and call it with ``kwargs``; the result
    must be an ``nn.Module``. It is stamped ``{"class": path, "kwargs": kwargs}``
    (a function is recorded like a class: the artifact calls it again)."""
    where = f"model {path!r}"
    obj = _import(path, where)
    if not callable(obj):
        raise ModelError(f"{where}: {type(obj).__name__} is not callable; point at a class or a function "
                         "returning an nn.Module")
    try:
        json.dumps(kwargs)
    except TypeError:
        raise ModelError(f"{where}: kwargs {kwargs!r} are not JSON data, so an artifact could not record them; "
                         "pass numbers, strings, lists and dicts only") from None
    try:
        model = obj(**kwargs)
    except TypeError as e:
        raise ModelError(f"{where}: calling it with {kwargs} failed ({e}); fix the kwargs") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{where}: returned {type(model).__name__}, not a torch.nn.Module")
    model.torchslim_arch = {"class": path, "kwargs": dict(kwargs)}
    return model


# ---------------------------------------------------------------- the resolver
def _spec_fields(source: Any) -> dict | None:
    if isinstance(source, Mapping):
        fields = dict(source)
    elif all(hasattr(source, k) for k in ("zoo", "artifact", "import_path", "kwargs")):  # a recipe ModelSpec
        fields = {k: getattr(source, k, None) for k in (*_SPEC_KEYS, "kwargs", "auto")}
    else:
        return None
    unknown = sorted(set(fields) - {*_SPEC_KEYS, "kwargs", "auto", "train"})
    if unknown:
        raise ModelError(f"model spec: unknown key(s) {unknown}; use one of {list(_SPEC_KEYS)} with kwargs "
                         "(and auto for hf)")
    return fields


def load_model(source: Any, *, dataset: str | None = None, auto: str | None = None, **kwargs: Any) -> nn.Module:
    """A model from ``source`` (see the module doc for every accepted form).
    ``dataset`` sizes a zoo model for that data set; ``auto`` picks the
    Hugging Face Auto class; ``kwargs`` go to the zoo builder, the factory or
    ``from_pretrained``."""
    if isinstance(source, nn.Module):
        return source
    fields = _spec_fields(source)
    if fields is not None:
        given = [k for k in _SPEC_KEYS if fields.get(k) is not None]
        if len(given) != 1:
            raise ModelError(f"model spec: give exactly one of {', '.join(_SPEC_KEYS)} (got {given or 'none'})")
        key = given[0]
        kw = {**dict(fields.get("kwargs") or {}), **kwargs}
        value = fields[key]
        auto = fields.get("auto") or auto
        if fields.get("auto") and key != "hf":
            raise ModelError(f"model spec: auto is only used with hf, not with {key}")
        if key == "zoo":
            from .models import build_model

            return build_model(value, dataset=dataset, **kw)
        if key == "artifact":
            from ..artifact import load

            return load(Path(value).expanduser())
        if key == "import_path":
            return import_factory(value, **kw)
        return load_hf(value, auto=auto, **kw)
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise ModelError(f"cannot make a model from {type(source).__name__}; give a zoo name, a path or "
                         "'pkg.module:factory'")
    return _from_string(source, dataset=dataset, auto=auto, **kwargs)


def _from_string(spec: str, *, dataset: str | None, auto: str | None, **kwargs: Any) -> nn.Module:
    from .models import build_model, model_names

    if spec in model_names():
        if auto:
            raise ModelError(f"auto={auto!r} is only used with a Hugging Face folder, not zoo model {spec!r}")
        return build_model(spec, dataset=dataset, **kwargs)
    p = Path(spec).expanduser()
    if p.is_dir():
        if (p / "report.json").is_file():  # a `torchslim run` output folder
            from ..artifact import load

            try:
                rel = json.loads((p / "report.json").read_text())["artifact"]
            except (ValueError, KeyError):
                raise ModelError(f"{spec}: report.json names no artifact; rerun `torchslim run` into it") from None
            return load(p / rel)
        if (p / "config.json").is_file():
            return load_hf(p, auto=auto, **kwargs)
        if (p / "model.safetensors").is_file():  # a `torchslim train` output folder
            from ..artifact import load

            return load(p / "model.safetensors")
        raise ModelError(f"{spec}: a folder with neither config.json (a Hugging Face model), report.json "
                         "(a `torchslim run` output) nor model.safetensors; give a model file or folder")
    if ":" in spec and not p.exists():
        return import_factory(spec, **kwargs)
    if p.exists() or p.suffix in (".safetensors", ".tslim") or "/" in spec or os.sep in spec:
        from ..artifact import load

        return load(p)
    raise ModelError(f"{spec!r} is neither a zoo model ({', '.join(model_names())}), an artifact file, a Hugging "
                     "Face model folder nor 'pkg.module:factory'")
