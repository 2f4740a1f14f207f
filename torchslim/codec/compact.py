"""The compact (entropy-coded) artifact: the same rebuild metadata as
``torchslim.save`` (architecture, changed layer structure, user metadata) in a
``container`` whose sections are the tensors, each in its smallest encoding
(sparse layout, codebook, Huffman; see tensorcodec.py).

``torchslim.load`` and ``torchslim eval`` read it: this module registers its
magic bytes with ``torchslim.artifact.register_container`` on import, and
``load`` imports it when it sees a file that is not safetensors.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from ..artifact import format as fmt
from ..artifact import specs
from ..core.errors import ArtifactError
from ..core.layers import by_key
from .container import MAGIC, read_container, write_container
from .huffman import CorruptStream
from .tensorcodec import decode_tensor, encode_tensor

__all__ = ["save_compact", "load_compact", "read_compact", "encode_state", "COMPACT_FORMAT", "COMPACT_SUFFIX"]

COMPACT_FORMAT = "torchslim-compact"
COMPACT_SUFFIX = ".tslim"
_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16, torch.int8,
    torch.uint8, torch.bool, torch.complex64)}


def encode_state(state: dict[str, torch.Tensor], *, index_bits: int | dict[str, int] | None = None,
                 huffman: bool = True, signed_zeros: bool = False) -> tuple[list[tuple[str, bytes]], dict]:
    """Encode a state dict: (sections, per-tensor stats). ``index_bits`` fixes
    the relative sparse-index width for all tensors, or per tensor name (a
    dict; tensors not named choose theirs). Unless ``signed_zeros``, -0.0 is
    stored as 0.0 (an equal value): pruning by multiplying with a mask turns
    every negative pruned weight into -0.0, which would otherwise count as a
    stored non-zero. Everything else round-trips bit for bit."""
    sections, stats = [], {}
    for name, t in state.items():
        if str(t.dtype).removeprefix("torch.") not in _DTYPES:
            raise ArtifactError(f"tensor {name!r}: dtype {t.dtype} is not supported by the compact format; "
                                "convert it or save with torchslim.save")
        if not signed_zeros and t.is_floating_point():
            t = torch.where(t == 0, torch.zeros((), dtype=t.dtype), t.detach())
        bits = index_bits.get(name) if isinstance(index_bits, dict) else index_bits
        payload, s = encode_tensor(t, index_bits=bits, huffman=huffman)
        sections.append((name, payload))
        stats[name] = s
    return sections, stats


def _canonical_order(state: dict[str, torch.Tensor], arch: dict) -> dict[str, torch.Tensor]:
    """``state`` in the order a model rebuilt from ``arch`` lists its tensors
    (names it lacks last, by name), so the file does not depend on the order
    tensors were registered in memory: ``torch.nn.utils.prune`` re-registers
    ``weight`` after ``bias``, a model loaded from disk has it first, and the
    same weights would otherwise give different sections, header and size."""
    try:
        with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the caller's RNG alone
            names = list(fmt.build_arch(arch).state_dict())
    except Exception:
        names = []
    rank = {n: i for i, n in enumerate(names)}
    return dict(sorted(state.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _minimal_structure(model: nn.Module, arch: dict) -> dict:
    """The recorded structure, reduced to what differs from a fresh build of
    the architecture (with everything under a changed module kept), if that
    reduction provably rebuilds the same structure; else the full record."""
    full = specs.record_structure(model)
    try:
        fresh = specs.record_structure(fmt.build_arch(arch))
    except Exception:
        return full
    changed = [n for n, s in full.items() if fresh.get(n) != s]
    keep = {n: s for n, s in full.items()
            if any(n == c or n.startswith(c + ".") for c in changed)}
    try:
        check = fmt.build_arch(arch)
        specs.apply_structure(check, keep)
        if specs.record_structure(check) == full:
            return keep
    except Exception:
        pass
    return full


def _widths(key: str | None) -> tuple[str, str] | None:
    """The (output, input) width attributes of a layer type (its core.layers adapter)."""
    a = by_key(key) if key else None
    return a.widths if a is not None else None


def _resized_spec(fresh: dict | None, weight_shape) -> dict | None:
    """The spec of a fresh Linear/Conv with only its widths taken from its
    stored weight's shape (None if the layer is not such a layer)."""
    if fresh is None or _widths(fresh.get("type")) is None or len(weight_shape) < 2:
        return None
    out_k, in_k = _widths(fresh["type"])
    groups = fresh.get("groups", 1)
    if groups != 1:
        return None
    return {**fresh, out_k: int(weight_shape[0]), in_k: int(weight_shape[1])}


def _split_resized(structure: dict, arch: dict, shapes: dict[str, list[int]]) -> tuple[dict, list[str]]:
    """(structure without the layers that differ from a fresh build only in
    the widths their stored weights show, those layers' names): a layer sliced
    by structured pruning or dead-unit removal then costs its name in the
    header instead of its full spec."""
    if not structure:
        return structure, []
    try:
        fresh = specs.record_structure(fmt.build_arch(arch))
    except Exception:
        return structure, []
    rest, resized = {}, []
    for name, spec in structure.items():
        w = shapes.get(name + ".weight")
        if w is not None and _resized_spec(fresh.get(name), w) == spec:
            resized.append(name)
        else:
            rest[name] = spec
    return rest, resized


def _join_resized(meta: dict, state: dict[str, torch.Tensor], where: str) -> dict:
    """The full structure of a compact artifact (``structure`` plus the layers
    listed under ``resized``, rebuilt from their weights' shapes)."""
    structure = dict(meta.get("structure", {}))
    resized = meta.get("resized") or []
    if not resized:
        return structure
    fresh = specs.record_structure(fmt.build_arch(meta["arch"], where))
    for name in resized:
        w = state.get(name + ".weight")
        spec = None if w is None else _resized_spec(fresh.get(name), list(w.shape))
        if spec is None:
            raise ArtifactError(f"{where}: resized layer {name!r} cannot be rebuilt (no such Linear/Conv or no "
                                "weight); the file is corrupted; re-create it")
        structure[name] = spec
    return structure


def save_compact(model: nn.Module, path: str | os.PathLike, *, index_bits: int | dict[str, int] | None = None,
                 huffman: bool = True, fp16: bool = False, arch: dict | None = None,
                 metadata: dict | None = None, signed_zeros: bool = False) -> dict:
    """Write ``model`` as a compact artifact (atomic) and return its stats:
    ``file_bytes``, ``dense_fp32_bytes`` (4 bytes per parameter),
    ``compression_ratio``, ``header_bytes`` and per-tensor coding figures
    (``tensors``: layout, codebook size, bits per weight and per index
    before/after Huffman and the entropy bound).

    ``index_bits`` fixes the relative sparse-index width (1..12) instead of
    choosing the best per tensor; ``huffman=False`` keeps fixed-width codes;
    ``fp16`` stores float32 tensors as float16 (lossy, like torchslim.save);
    ``signed_zeros`` keeps -0.0 apart from 0.0 (see ``encode_state``).
    The loaded weights equal the saved ones bit for bit (up to the sign of
    zeros unless ``signed_zeros``)."""
    path = Path(path)
    arch_d = fmt.arch_of(model, arch)
    state = _canonical_order(fmt.permanent_state(model), arch_d)
    if fp16:
        state = {k: (v.to(torch.float16) if v.dtype == torch.float32 else v) for k, v in state.items()}
    sections, tstats = encode_state(state, index_bits=index_bits, huffman=huffman, signed_zeros=signed_zeros)
    structure, resized = _split_resized(_minimal_structure(model, arch_d), arch_d,
                                        {n: list(t.shape) for n, t in state.items()})
    meta = {"format": COMPACT_FORMAT, "arch": arch_d, "structure": structure,
            "tensors": [[str(state[n].dtype).removeprefix("torch."), list(state[n].shape)] for n, _ in sections]}
    if resized:
        meta["resized"] = resized  # rebuilt from the weights' shapes (see _join_resized)
    if metadata:
        meta["user"] = metadata
    data = write_container(meta, sections, version=2 if resized else 1)  # v1 readers cannot rebuild "resized"
    fmt.atomic_write_bytes(path, data)
    params = sum(p.numel() for p in model.parameters())
    payload = sum(len(p) for _, p in sections)
    return {"path": str(path), "file_bytes": len(data), "header_bytes": len(data) - payload,
            "params": params, "dense_fp32_bytes": 4 * params,
            "compression_ratio": 4 * params / len(data) if data else 0.0, "tensors": tstats}


def read_compact(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, state dict) of a compact artifact, every section verified."""
    path = Path(path)
    fmt._check_exists(path)
    meta, sections = read_container(path.read_bytes(), str(path))
    if meta.get("format") != COMPACT_FORMAT:
        raise ArtifactError(f"{path}: unknown compact format {meta.get('format')!r}")
    descs = meta.get("tensors")
    if not isinstance(descs, list) or len(descs) != len(sections):
        raise ArtifactError(f"{path}: metadata does not describe every section; the file is corrupted")
    state = {}
    for i, ((name, payload), desc) in enumerate(zip(sections, descs)):
        try:
            dtype_name, shape = desc
            dtype = _DTYPES[dtype_name]
            if not all(isinstance(s, int) and s >= 0 for s in shape):
                raise CorruptStream(f"bad shape {shape!r}")
            state[name] = decode_tensor(payload, dtype, shape)
        except Exception as e:  # CorruptStream, bad descriptors, impossible sizes
            raise ArtifactError(f"{path}: section {i} ({name!r}): cannot decode ({type(e).__name__}: {e}); "
                                "the file is corrupted; re-create it") from None
    return meta, state


def load_compact(path: str | os.PathLike, *, strict: bool = True) -> nn.Module:
    """Rebuild the model stored in a compact artifact (eval mode)."""
    meta, state = read_compact(path)
    if "arch" not in meta:
        raise ArtifactError(f"{path}: compact artifact without an architecture; it holds tensors only")
    return fmt.rebuild(meta["arch"], _join_resized(meta, state, str(path)), state, str(path), strict=strict,
                       user=meta.get("user", {}))


fmt.register_container(MAGIC, lambda p: load_compact(p))
