"""Per-row (per-output-channel) uniform quantization: every element of row
``r`` (dim 0) is exactly ``float(level) * scale[r]`` with integer levels, as
per-channel weight-only quantization leaves a weight. Stored as one scale per
row, the set of levels used and one level index per entry, so a per-channel
4-bit layer costs about 4 bits per weight instead of 32.

Detection is exact: a candidate scale is kept only if the decoder's own
arithmetic (``row_affine_values``) reproduces every bit pattern.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .bitpack import Reader, varint, unzigzag, zigzag
from .huffman import CorruptStream

__all__ = ["RowAffine", "find_row_affine", "row_affine_values"]

ROWAFFINE = 3
_FLOATS = {2: np.float16, 4: np.float32, 8: np.float64}
_MAX_LEVELS_PER_ROW = 256
_MAX_SPAN = 1 << 16


@dataclasses.dataclass
class RowAffine:
    scales: np.ndarray  # one scale pattern per row
    levels: np.ndarray  # level of every element, row-major flat order
    present: np.ndarray  # sorted distinct levels of the non-zero elements
    counts: np.ndarray  # how many non-zero elements have each of them

    def alphabet(self, zeros: int) -> tuple[np.ndarray, np.ndarray]:
        """(levels, counts) of the entries when ``zeros`` of them are zero."""
        if not zeros:
            return self.present, self.counts
        levels = np.union1d(self.present, [0])
        counts = np.zeros(levels.size, dtype=np.int64)
        counts[np.searchsorted(levels, self.present)] = self.counts
        counts[np.searchsorted(levels, 0)] += zeros
        return levels, counts

    def nbytes(self, alphabet: np.ndarray, width: int) -> int:
        lo, span = int(alphabet[0]), int(alphabet[-1] - alphabet[0]) + 1
        return self.scales.size * width + len(varint(zigzag(lo))) + len(varint(span)) + (span + 7) // 8


def row_affine_values(levels: np.ndarray, scale_patterns: np.ndarray, width: int) -> np.ndarray:
    """Patterns of ``float(levels) * scale`` elementwise, in the element's float type."""
    ft, udt = _FLOATS[width], np.dtype(f"<u{width}")
    return (levels.astype(ft) * scale_patterns.astype(udt).view(ft)).astype(ft).view(udt)


def _row_scale(u: np.ndarray, ft) -> float | None:
    """A scale reproducing the row's distinct non-zero values ``u`` exactly."""
    srt = np.unique(np.concatenate([u, [0.0]]))
    step = float(np.diff(srt).min())
    a = float(np.abs(u).max())
    cands = [step]
    k = np.rint(u / step)
    j = int(np.argmax(np.abs(k)))
    cands.append(u[j] / k[j])
    cands += [a / q for b in range(1, 9) for q in ((1 << (b - 1)) - 1, (1 << b) - 1) if q > 0]
    target = u.astype(ft)
    for c in cands:
        s = ft(c)
        for s2 in (s, np.nextafter(s, ft(np.inf)), np.nextafter(s, ft(0))):
            if not s2 > 0 or not np.isfinite(s2):
                continue
            lv = np.rint(u / float(s2))
            if np.abs(lv).max() < _MAX_SPAN and np.array_equal((lv.astype(ft) * s2).astype(ft), target):
                return s2
    return None


def find_row_affine(pat: np.ndarray, shape, width: int) -> RowAffine | None:
    if width not in _FLOATS or len(shape) < 2 or pat.size == 0:
        return None
    rows = int(shape[0])
    if rows < 1 or pat.size // rows < 2:
        return None
    ft = _FLOATS[width]
    vals = pat.view(ft).reshape(rows, -1).astype(np.float64)
    if not np.all(np.isfinite(vals)):
        return None
    scales = np.zeros(rows, dtype=ft)
    levels = np.zeros(vals.shape, dtype=np.int64)
    for r in range(rows):
        row = vals[r]
        u = np.unique(row[row != 0])
        if u.size == 0:
            continue
        if u.size > _MAX_LEVELS_PER_ROW:
            return None
        s = _row_scale(u, ft)
        if s is None:
            return None
        scales[r] = s
        levels[r] = np.rint(row / float(s)).astype(np.int64)
    scale_pats = scales.view(np.dtype(f"<u{width}"))
    flat = levels.reshape(-1)
    per_elem = np.repeat(scale_pats, flat.size // rows)
    if not np.array_equal(row_affine_values(flat, per_elem, width), pat):
        return None  # e.g. -0.0 present
    nz = flat[pat != 0]
    if nz.size == 0 or int(flat.max()) - int(flat.min()) >= _MAX_SPAN:
        return None
    present, counts = np.unique(nz, return_counts=True)
    return RowAffine(scale_pats.copy(), flat, present, counts)


def write_row_affine(ra: RowAffine, alphabet: np.ndarray, width: int) -> bytes:
    lo = int(alphabet[0])
    span = int(alphabet[-1]) - lo + 1
    bits = np.zeros(span, dtype=bool)
    bits[alphabet - lo] = True
    return (bytes([ROWAFFINE]) + ra.scales.astype(np.dtype(f"<u{width}")).tobytes() + varint(zigzag(lo))
            + varint(span) + np.packbits(bits).tobytes())


def read_row_affine(r: Reader, width: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale patterns, level alphabet); the kind byte has been read."""
    if width not in _FLOATS:
        raise CorruptStream("per-row scales on a non-float tensor")
    scales = np.frombuffer(r.take(rows * width), dtype=np.dtype(f"<u{width}"))
    lo = unzigzag(r.varint(limit=1 << 20))
    span = r.varint(limit=_MAX_SPAN)
    bits = np.unpackbits(np.frombuffer(r.take((span + 7) // 8), dtype=np.uint8))
    if bits[span:].any():
        raise CorruptStream("level bitmap padding is not zero")
    return scales, lo + np.flatnonzero(bits[:span]).astype(np.int64)
