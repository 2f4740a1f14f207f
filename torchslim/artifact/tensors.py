"""Tensor encodings inside a safetensors artifact.

* ``dense``  the tensor as is.
* ``bitmap`` a packed bit per element (1 = non-zero) plus the non-zero values in
  row-major order; chosen automatically when it is smaller than dense, so the
  file on disk shrinks with sparsity.
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.errors import ArtifactError

VALUES, BITMAP = "::values", "::bitmap"


def encode(name: str, t: torch.Tensor, *, sparse: bool = True, fp16: bool = False) -> tuple[dict, dict[str, torch.Tensor]]:
    """Return (record, stored tensors) for one state-dict entry."""
    t = t.detach().cpu().contiguous()
    if fp16 and t.is_floating_point():
        t = t.to(torch.float16)
    record = {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
    if sparse and t.is_floating_point() and t.numel() >= 64:
        nnz = int(torch.count_nonzero(t))
        dense_bytes = t.numel() * t.element_size()
        bitmap_bytes = (t.numel() + 7) // 8 + nnz * t.element_size()
        if bitmap_bytes < dense_bytes:
            flat = t.reshape(-1)
            mask = flat != 0
            bits = np.packbits(mask.numpy().astype(np.uint8))
            record["encoding"] = "bitmap"
            return record, {name + VALUES: flat[mask].clone(), name + BITMAP: torch.from_numpy(bits)}
    record["encoding"] = "dense"
    return record, {name: t}


def decode(name: str, record: dict, stored: dict[str, torch.Tensor], where: str) -> torch.Tensor:
    enc = record.get("encoding")
    shape = tuple(record["shape"])
    numel = int(np.prod(shape)) if shape else 1
    if enc == "dense":
        t = stored.get(name)
        if t is None or tuple(t.shape) != shape:
            raise ArtifactError(f"{where}: tensor {name!r} is missing or has the wrong shape")
        return t
    if enc == "bitmap":
        values, bits = stored.get(name + VALUES), stored.get(name + BITMAP)
        if values is None or bits is None or bits.numel() != (numel + 7) // 8:
            raise ArtifactError(f"{where}: sparse tensor {name!r} is incomplete")
        mask = torch.from_numpy(np.unpackbits(bits.numpy())[:numel].astype(bool))
        if int(mask.sum()) != values.numel():
            raise ArtifactError(f"{where}: sparse tensor {name!r}: bitmap and values disagree")
        out = torch.zeros(numel, dtype=values.dtype)
        out[mask] = values
        return out.reshape(shape)
    raise ArtifactError(f"{where}: tensor {name!r} has unknown encoding {enc!r}; upgrade torchslim to read it")
