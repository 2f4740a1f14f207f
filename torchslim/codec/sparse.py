"""Sparse position formats.

* bitmap: one bit per element (1 = stored), packed MSB first;
* relative indices (Deep Compression, Han et al. 2016, Sec. 2): each stored
  entry keeps the distance to the previous one in ``bits`` bits. A distance
  larger than ``2**bits`` is bridged with filler entries: an entry that
  advances exactly ``2**bits`` positions and stores a zero there. The stored
  symbol is ``distance - 1`` (0 .. 2**bits - 1).
"""
from __future__ import annotations

import numpy as np

from .huffman import CorruptStream

__all__ = ["bitmap_encode", "bitmap_decode", "relative_encode", "relative_decode"]


def bitmap_encode(mask: np.ndarray) -> bytes:
    return np.packbits(np.asarray(mask, dtype=bool).reshape(-1)).tobytes()


def bitmap_decode(data: bytes, numel: int) -> np.ndarray:
    if len(data) != (numel + 7) // 8:
        raise CorruptStream(f"bitmap has {len(data)} bytes, expected {(numel + 7) // 8}")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if bits[numel:].any():
        raise CorruptStream("bitmap padding bits are not zero")
    return bits[:numel].astype(bool)


def relative_encode(positions, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Gap symbols and, per entry, whether it is a filler (stores a zero).
    ``positions`` are the increasing flat indices of the stored values."""
    positions = np.asarray(positions, dtype=np.int64)
    if bits < 1:
        raise ValueError("relative indices need at least 1 bit")
    span = 1 << bits
    d = np.diff(positions, prepend=-1) - 1  # distance - 1 >= 0
    fillers = d // span
    sym_last = d - fillers * span
    count = fillers + 1
    total = int(count.sum())
    syms = np.full(total, span - 1, dtype=np.int64)
    ends = np.cumsum(count) - 1
    syms[ends] = sym_last
    is_filler = np.ones(total, dtype=bool)
    is_filler[ends] = False
    return syms, is_filler


def relative_count(positions, bits: int, *, gaps: np.ndarray | None = None) -> tuple[int, np.ndarray]:
    """(number of entries, counts of each gap symbol) without building them.
    ``gaps`` (distance - 1 per position) may be passed to save recomputing it."""
    d = np.diff(np.asarray(positions, dtype=np.int64), prepend=-1) - 1 if gaps is None else gaps
    span = 1 << bits
    freqs = np.bincount(d & (span - 1), minlength=span)
    n_fill = int((d >> bits).sum())
    freqs[span - 1] += n_fill
    return int(d.size + n_fill), freqs


def relative_decode(syms: np.ndarray, numel: int) -> np.ndarray:
    """Flat positions of every entry (fillers included)."""
    syms = np.asarray(syms, dtype=np.int64)
    if syms.size == 0:
        return syms
    pos = np.cumsum(syms + 1) - 1
    if pos[-1] >= numel:
        raise CorruptStream(f"relative indices run past the end of the tensor ({int(pos[-1])} >= {numel})")
    return pos
