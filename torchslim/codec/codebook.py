"""Codebooks: a tensor with few distinct values (k-means shared weights,
uniformly quantized levels) is stored as a codebook plus one index per entry.

Values are handled as raw bit patterns (unsigned integers as wide as the
element), so a round trip is bit-exact for every dtype, -0.0 and NaN
payloads included.

* plain codebook: the distinct patterns themselves (K x element bytes);
* affine codebook: for float tensors whose values are exactly
  ``float(level) * scale`` (uniform quantization, what fake-quant produces),
  only the scale, the lowest level and a bitmap of the levels present are
  stored; the decoder recomputes the values with the same numpy arithmetic,
  and the encoder keeps this form only if that reproduces every pattern.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .bitpack import Reader, varint, zigzag, unzigzag
from .huffman import CorruptStream

__all__ = ["Codebook", "find_affine", "affine_values", "write_codebook", "read_codebook"]

PLAIN, AFFINE = 1, 2
_FLOATS = {2: np.float16, 4: np.float32, 8: np.float64}
_MAX_SPAN = 1 << 20


@dataclasses.dataclass
class Codebook:
    """Distinct patterns in codebook order; ``kind`` PLAIN or AFFINE (then
    ``scale`` is the scale's pattern and ``levels`` the integer levels)."""
    patterns: np.ndarray
    kind: int = PLAIN
    scale: int = 0
    levels: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.patterns.size)

    def nbytes(self, width: int) -> int:
        if self.kind == PLAIN:
            return len(varint(self.size)) + self.size * width
        span = int(self.levels[-1] - self.levels[0]) + 1
        return width + len(varint(zigzag(int(self.levels[0])))) + len(varint(span)) + (span + 7) // 8


def affine_values(scale_pattern: int, levels: np.ndarray, width: int) -> np.ndarray:
    """Patterns of ``float(levels) * scale`` in the element's float type."""
    ft = _FLOATS[width]
    udt = np.dtype(f"<u{width}")
    scale = np.array([scale_pattern], dtype=udt).view(ft)[0]
    return (levels.astype(ft) * scale).astype(ft).view(udt)


def find_affine(patterns: np.ndarray, width: int) -> Codebook | None:
    """An affine codebook reproducing these distinct float patterns exactly,
    or None. ``patterns`` are sorted distinct patterns of a float tensor."""
    if width not in _FLOATS or patterns.size < 3:
        return None
    ft = _FLOATS[width]
    vals = patterns.view(ft).astype(np.float64)
    if not np.all(np.isfinite(vals)):
        return None
    srt = np.unique(vals)
    diffs = np.diff(srt)
    if srt.size != patterns.size or diffs.size == 0 or diffs.min() <= 0:
        return None  # e.g. +0.0 and -0.0 both present
    step = diffs.min()
    k = np.rint(vals / step)
    if np.abs(k).max() >= {2: 2048, 4: 1 << 24, 8: 1 << 52}[width]:
        return None
    span = int(k.max() - k.min()) + 1
    if span > _MAX_SPAN:
        return None
    udt = np.dtype(f"<u{width}")
    cands = [step]
    for j in (int(np.argmax(np.abs(k))), int(np.argmin(np.where(k == 0, np.inf, np.abs(k))))):
        if k[j] != 0:
            cands.append(vals[j] / k[j])
    for c in cands:
        scale_pattern = int(np.array([c], dtype=ft).view(udt)[0])
        if np.array_equal(affine_values(scale_pattern, k, width), patterns):
            levels = k.astype(np.int64)
            order = np.argsort(levels, kind="stable")
            return Codebook(patterns[order], AFFINE, scale_pattern, levels[order])
    return None


def write_codebook(cb: Codebook, width: int) -> bytes:
    udt = np.dtype(f"<u{width}")
    if cb.kind == PLAIN:
        return bytes([PLAIN]) + varint(cb.size) + cb.patterns.astype(udt).tobytes()
    lo = int(cb.levels[0])
    span = int(cb.levels[-1]) - lo + 1
    present = np.zeros(span, dtype=bool)
    present[cb.levels - lo] = True
    return (bytes([AFFINE]) + np.array([cb.scale], dtype=udt).tobytes() + varint(zigzag(lo)) + varint(span)
            + np.packbits(present).tobytes())


def read_codebook(r: Reader, kind: int, width: int) -> np.ndarray:
    """Codebook patterns (the kind byte has already been read)."""
    udt = np.dtype(f"<u{width}")
    if kind == PLAIN:
        k = r.varint(limit=r.remaining() // max(width, 1))
        return np.frombuffer(r.take(k * width), dtype=udt).copy()
    if kind == AFFINE:
        if width not in _FLOATS:
            raise CorruptStream("an affine codebook on a non-float tensor")
        scale = int(np.frombuffer(r.take(width), dtype=udt)[0])
        lo = unzigzag(r.varint(limit=1 << 54))
        span = r.varint(limit=min(_MAX_SPAN, r.remaining() * 8))
        bits = np.unpackbits(np.frombuffer(r.take((span + 7) // 8), dtype=np.uint8))
        if bits[span:].any():
            raise CorruptStream("codebook level bitmap padding is not zero")
        levels = lo + np.flatnonzero(bits[:span]).astype(np.int64)
        return affine_values(scale, levels, width)
    raise CorruptStream(f"unknown codebook kind {kind}")
