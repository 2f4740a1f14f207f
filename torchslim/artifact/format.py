"""The artifact: one safetensors file holding the weights and, in its header,
JSON metadata saying how to rebuild the model (zoo name or import path of the
class, constructor arguments, the structure of every changed layer), the
format version and a SHA-256 checksum of everything else. No pickle.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save as st_save

from ..core.errors import ArtifactError, ModelError
from ..core.io import atomic_write_bytes  # noqa: F401  (public here too: artifact.atomic_write_bytes)
from . import specs, tensors

FORMAT = "torchslim"
FORMAT_VERSION = 1
_LOADERS: dict[bytes, Any] = {}  # magic prefix -> loader(path), for other containers (codec)


def register_container(magic: bytes, loader) -> None:
    """Let another container format (e.g. the entropy-coded codec) be read by
    ``torchslim.load``; it is recognised by its leading magic bytes."""
    _LOADERS[magic] = loader


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` as a Path, or an ArtifactError when no file can be written
    there: it is a folder, or one of its parents is a file."""
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path}: is a folder; give a file path, e.g. {path / 'model.safetensors'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ArtifactError(f"{path}: {parent} is a file, so nothing can be written under it; choose an "
                                    "output path inside a folder")
            break
    return path




def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return False
    return True


def remove_stale_temp_files(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Delete the temp files ``atomic_write_bytes`` leaves in ``folder`` (and
    its subfolders if ``recursive``) when its process is killed mid-write
    (SIGKILL, OOM, power loss); the files they were replacing are intact.
    Temp files of a live process other than this one are kept (a write in
    progress). Returns the removed paths."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in (folder.rglob if recursive else folder.glob)(".*.tmp*"):
        m = re.fullmatch(r"\..+\.tmp(\d+)", p.name)
        if m is None or not p.is_file():
            continue
        pid = int(m[1])
        if pid != os.getpid() and _pid_alive(pid):
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def arch_of(model: nn.Module, arch: dict | None = None) -> dict:
    if arch is not None:
        return arch
    found = getattr(model, "torchslim_arch", None)
    if found is not None:
        return found
    cls = type(model)
    if cls.__module__.startswith("transformers.") and hasattr(getattr(model, "config", None), "to_dict"):
        # a Hugging Face model: its class and config rebuild it (no weights are fetched)
        return {"hf": {"class": f"{cls.__module__}:{cls.__qualname__}", "config": _json_config(model.config)}}
    if cls.__module__ == "__main__":
        raise ModelError(
            f"{cls.__qualname__} is defined in __main__, so a loader cannot import it; move the class into a "
            "module, or pass arch={'class': 'pkg.module:Class', 'kwargs': {...}} to torchslim.save"
        )
    kwargs = getattr(model, "torchslim_kwargs", {})
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "kwargs": kwargs}


def _json_config(config) -> dict:
    d = config.to_dict()
    return json.loads(json.dumps(d, default=str))


def _build_hf(spec: dict, where: str) -> nn.Module:
    """A Hugging Face model from its config (random init; the artifact's
    weights are loaded afterwards). ``spec``: ``config`` and either ``class``
    (``module:Class``) or ``auto`` (an ``AutoModel*`` name)."""
    try:
        import transformers
        from transformers import AutoConfig
    except ImportError:
        raise ArtifactError(f"{where}: the model is a Hugging Face model; install transformers "
                            "(pip install 'torchslim[minilm]')") from None
    cfg = dict(spec.get("config") or {})
    model_type = cfg.pop("model_type", None)
    if not model_type:
        raise ArtifactError(f"{where}: the Hugging Face config has no model_type; re-save the model")
    try:
        config = AutoConfig.for_model(model_type, **cfg)
    except (ValueError, KeyError) as e:
        raise ArtifactError(f"{where}: transformers {transformers.__version__} cannot build a {model_type!r} "
                            f"config ({e}); install the transformers version the model was saved with") from None
    if "class" in spec:
        mod_name, _, qual = spec["class"].partition(":")
        try:
            cls: Any = getattr(importlib.import_module(mod_name), qual)
        except (ImportError, AttributeError) as e:
            raise ArtifactError(f"{where}: cannot import {spec['class']!r} ({e}); install the transformers version "
                                "the model was saved with") from None
        model = cls._from_config(config) if hasattr(cls, "_from_config") else cls(config)
    else:
        auto = getattr(transformers, spec.get("auto") or "AutoModel", None)
        if auto is None:
            raise ArtifactError(f"{where}: transformers has no {spec.get('auto')!r}")
        model = auto.from_config(config)
    model.torchslim_arch = {"hf": spec}
    return model


def build_arch(arch: dict, where: str = "artifact") -> nn.Module:
    if "hf" in arch:
        return _build_hf(arch["hf"], where)
    kwargs = dict(arch.get("kwargs") or {})
    if "zoo" in arch:
        from ..zoo.models import build_model

        if "pretrained" in kwargs:
            kwargs["pretrained"] = False  # the weights come from the artifact
        return build_model(arch["zoo"], **kwargs)
    if "class" in arch:
        mod_name, _, qual = arch["class"].partition(":")
        try:
            obj: Any = importlib.import_module(mod_name)
            for part in qual.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise ArtifactError(f"{where}: cannot import model class {arch['class']!r} ({e}); install the package that defines it") from None
        try:
            model = obj(**kwargs)
        except TypeError as e:
            raise ArtifactError(
                f"{where}: cannot construct {arch['class']} with {kwargs} ({e}); save with "
                "arch={'class': ..., 'kwargs': {...}} or set model.torchslim_kwargs"
            ) from None
        model.torchslim_arch = arch
        return model
    raise ArtifactError(f"{where}: metadata names no architecture ('zoo', 'class' or 'hf')")


def _plus_zero(t: torch.Tensor) -> torch.Tensor:
    """-0.0 -> +0.0 (numerically equal; a bit-exact container would store it as a non-zero pattern)."""
    return torch.where(t == 0, torch.zeros((), dtype=t.dtype), t) if t.is_floating_point() else t


def _permanent_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with reversible masks made permanent (``weight_orig`` *
    ``weight_mask`` from torch.nn.utils.prune, or a parametrization's value),
    without touching the caller's model."""
    from torch.nn.utils import parametrize

    state: dict[str, torch.Tensor] = {}
    for mname, m in model.named_modules():
        if "parametrizations" in mname.split("."):
            continue  # the originals and the parametrization modules themselves
        prefix = f"{mname}." if mname else ""
        own = m._parameters.items() if not parametrize.is_parametrized(m) else []
        if parametrize.is_parametrized(m):
            for pname in m.parametrizations.keys():
                state[prefix + pname] = _plus_zero(getattr(m, pname).detach())
            own = [(k, v) for k, v in m._parameters.items() if k not in m.parametrizations]
        for pname, p in own:
            if p is None:
                continue
            if pname.endswith("_orig") and hasattr(m, pname[:-5] + "_mask"):
                # orig * mask computed now (the hook's attribute may predate the last optimizer step);
                # masked entries are +0.0, never the -0.0 that orig * 0 gives for negative orig
                mask = getattr(m, pname[:-5] + "_mask")
                state[prefix + pname[:-5]] = _plus_zero(p.detach() * mask)
            else:
                state[prefix + pname] = p.detach()
        for bname, b in m._buffers.items():
            if b is None or bname in m._non_persistent_buffers_set:
                continue
            if bname.endswith("_mask") and hasattr(m, bname[:-5] + "_orig"):
                continue
            state[prefix + bname] = b.detach()
    return state


def _aliases(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """Names whose tensor is the same storage as an earlier name's (tied
    input and output embeddings): stored once, restored under both names."""
    seen: dict[tuple, str] = {}
    out = {}
    for name, t in state.items():
        if t.numel() == 0:
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if key in seen:
            out[name] = seen[key]
        else:
            seen[key] = name
    return out


def _checksum(stored: dict[str, torch.Tensor], meta_json: str) -> str:
    h = hashlib.sha256()
    h.update(meta_json.encode())
    for name in sorted(stored):
        t = stored[name].contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save(model: nn.Module, path: str | os.PathLike, *, arch: dict | None = None, sparse: bool = True,
         fp16: bool = False, metadata: dict | None = None) -> Path:
    """Save ``model`` as one artifact file (atomic write). ``sparse`` stores
    mostly-zero tensors as bitmap + values; ``fp16`` halves float tensors.
    ``metadata`` is any JSON-serialisable dict kept in the header."""
    path = check_writable(path)  # before any work: a folder or a file in the way is a clear error
    arch_d = arch_of(model, arch)
    state = _permanent_state(model)
    aliases = _aliases(state)
    records, stored = {}, {}
    for name, t in state.items():
        if name in aliases:
            continue
        rec, parts = tensors.encode(name, t, sparse=sparse, fp16=fp16)
        records[name] = rec
        stored.update(parts)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "torch": torch.__version__,
        "arch": arch_d, "structure": specs.record_structure(model), "tensors": records,
        "user": metadata or {},
    }
    if aliases:
        meta["aliases"] = aliases
    meta_json = json.dumps(meta, sort_keys=True)
    header = {"torchslim": meta_json, "checksum": _checksum(stored, meta_json)}
    atomic_write_bytes(path, _canonical_header(st_save(stored, metadata=header)))
    return path


def _canonical_header(data: bytes) -> bytes:
    """``data`` (a safetensors file) with its JSON header in a fixed order:
    safetensors writes ``__metadata__`` from a Rust HashMap, whose order
    changes from call to call, so the same model gave different bytes.
    Metadata keys sorted, tensors in data order; the data is untouched."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    out = {} if meta is None else {"__metadata__": dict(sorted(meta.items()))}
    out.update(sorted(header.items(), key=lambda kv: (tuple(kv[1]["data_offsets"]), kv[0])))
    text = json.dumps(out, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads its header to a multiple of 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def _not_safetensors(head: bytes) -> str | None:
    """What a file is when its first bytes are no safetensors header (8-byte
    length, then a JSON object), or None when they look like one."""
    if len(head) >= 9 and head[8:9] == b"{":
        return None
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive, e.g. a torch.save checkpoint (torchslim never unpickles)"
    if head.startswith(b"\x80") and len(head) > 1 and head[1] <= 5:
        return "a pickle (torchslim never unpickles)"
    if not head:
        return "an empty file"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "not in the safetensors format"


def read_metadata(path: str | os.PathLike) -> dict:
    path = Path(path)
    _check_exists(path)
    with open(path, "rb") as f:
        head = f.read(16)
    what = _not_safetensors(head)
    if what is not None:
        raise ArtifactError(f"{path}: not a torchslim artifact ({what}); give a file written by torchslim.save "
                            "or a torchslim command (torchslim.load reads no other format)")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as e:
        raise ArtifactError(f"{path}: not a readable torchslim artifact ({e}); the file is corrupted or truncated, re-create it") from None
    if "torchslim" not in header:
        raise ArtifactError(f"{path}: a safetensors file without torchslim metadata; save models with torchslim.save")
    try:
        meta = json.loads(header["torchslim"])
    except ValueError as e:
        raise ArtifactError(f"{path}: its torchslim metadata is not valid JSON ({e}); the file is corrupted, "
                            "re-create it") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: its torchslim metadata is a {type(meta).__name__}, not a JSON object; the file "
                            "is corrupted, re-create it")
    meta["_checksum"] = header.get("checksum")
    meta["_raw"] = header["torchslim"]
    return meta


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise ArtifactError(f"{path}: no such artifact file; check the path (train one with `torchslim train`)")
    if path.is_dir():
        raise ArtifactError(f"{path}: is a folder; pass the artifact file inside it (e.g. {path}/model.safetensors)")


def load(path: str | os.PathLike, *, strict: bool = True) -> nn.Module:
    """Rebuild the model saved at ``path`` (architecture, changed layer shapes,
    weights) and return it in eval mode. Verifies version and checksum."""
    path = Path(path)
    _check_exists(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if not any(head.startswith(m) for m in _LOADERS) and head[8:9] != b"{":
        importlib.import_module("torchslim.codec")  # not safetensors: let the codec register its container
    for magic, loader in _LOADERS.items():
        if head.startswith(magic):
            return loader(path)
    meta = read_metadata(path)
    version = meta.get("format_version")
    if meta.get("format") != FORMAT or not isinstance(version, int):
        raise ArtifactError(f"{path}: unknown artifact format {meta.get('format')!r}")
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: artifact format version {version} is newer than this torchslim reads ({FORMAT_VERSION}); upgrade torchslim"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise ArtifactError(f"{path}: cannot read tensors ({e}); the file is corrupted or truncated") from None
    if _checksum(stored, meta["_raw"]) != meta["_checksum"]:
        raise ArtifactError(f"{path}: checksum mismatch, the file is corrupted; re-create or re-download it")
    state = {name: tensors.decode(name, rec, stored, str(path)) for name, rec in meta["tensors"].items()}
    for alias, target in (meta.get("aliases") or {}).items():
        state[alias] = state[target]
    return rebuild(meta["arch"], meta.get("structure", {}), state, str(path), strict=strict, user=meta.get("user", {}))


def rebuild(arch: dict, structure: dict, state: dict[str, torch.Tensor], where: str, *, strict: bool = True,
            user: dict | None = None) -> nn.Module:
    """Build the architecture, apply the recorded structure, load the weights
    (shared by every container format); returns the model in eval mode."""
    model = build_arch(arch, where)
    specs.apply_structure(model, structure, where)
    own = model.state_dict()
    for name, t in state.items():
        if name in own and own[name].is_floating_point() and t.dtype != own[name].dtype:
            state[name] = t.to(own[name].dtype)
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        raise ArtifactError(f"{where}: weights do not fit the rebuilt model: {e}") from None
    model.torchslim_arch = arch
    model.torchslim_metadata = user or {}
    return model.eval()


permanent_state = _permanent_state  # public name for other containers (the codec)
