"""One tensor <-> one section payload, choosing the smallest encoding.

Elements are handled as raw bit patterns (``<u1/<u2/<u4/<u8``), so every dtype
(fp32, fp16, bf16, int64 buffers, bool) round-trips bit-exactly; the zero
pattern is what sparse layouts leave out.

Payload::

    u8 layout            0 dense | 1 bitmap | 2 relative indices; +0x80: column-major
                         order over (shape[0], rest)
    [bitmap]             ceil(numel / 8) bytes                     (layout 1)
    [u8 bits, varint entries, gap stream]                          (layout 2)
    u8 values            0 raw | 1 plain codebook | 2 affine codebook
    raw:                 entries x element bytes
    codebook:            codebook (see codebook.py), index stream

Streams (gaps, codebook indices) are fixed width or Huffman (streams.py).
Every combination of layout (relative index widths 1..12 bits), value form and
stream coding is costed exactly and the smallest is written.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .bitpack import Reader, varint
from .codebook import AFFINE, PLAIN, Codebook, find_affine, read_codebook, write_codebook
from .huffman import CorruptStream
from .rowscale import ROWAFFINE, RowAffine, find_row_affine, read_row_affine, row_affine_values, write_row_affine
from .sparse import bitmap_decode, bitmap_encode, relative_count, relative_decode, relative_encode
from .streams import StreamPlan, plan_stream, read_stream, write_stream

__all__ = ["encode_tensor", "decode_tensor", "tensor_patterns", "MAX_INDEX_BITS"]

DENSE, BITMAP, RELATIVE = 0, 1, 2
TRANSPOSED = 0x80  # flag on the layout byte: column-major scan order
RAW = 0
LAYOUTS = {DENSE: "dense", BITMAP: "bitmap", RELATIVE: "relative"}
VALUE_KINDS = {RAW: "raw", PLAIN: "codebook", AFFINE: "affine", ROWAFFINE: "row-affine"}
MAX_INDEX_BITS = 12
MAX_CODEBOOK = 1 << 16


def tensor_patterns(t: torch.Tensor) -> np.ndarray:
    """The elements' bit patterns as a flat little-endian unsigned array."""
    t = t.detach().cpu().contiguous()
    w = t.element_size()
    raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else np.zeros(0, dtype=np.uint8)
    return raw.view(np.dtype(f"<u{w}"))


def patterns_to_tensor(p: np.ndarray, dtype: torch.dtype, shape) -> torch.Tensor:
    w = torch.empty(0, dtype=dtype).element_size()
    data = np.ascontiguousarray(p.astype(np.dtype(f"<u{w}"), copy=False)).view(np.uint8)
    if data.size == 0:
        return torch.zeros(shape, dtype=dtype)
    return torch.from_numpy(data.copy()).view(dtype).reshape(shape)


@dataclasses.dataclass
class _ValuePlan:
    kind: int
    nbytes: int
    codebook: Codebook | None = None
    stream: StreamPlan | None = None
    levels: np.ndarray | None = None  # ROWAFFINE: the level alphabet


@dataclasses.dataclass
class _Plan:
    layout: int
    nbytes: int
    values: _ValuePlan
    bits: int = 0
    entries: int = 0
    fillers: int = 0
    index: StreamPlan | None = None


class _Values:
    """Distinct non-zero values and their counts, with codebooks cached, so
    costing a value form for a given number of zero entries is cheap."""

    def __init__(self, nz: np.ndarray, width: int, *, huffman: bool, row: RowAffine | None = None):
        self.width, self.huffman, self.nnz, self.row = width, huffman, int(nz.size), row
        self._cb: dict[bool, list[Codebook]] = {}
        self.uniq = self.counts = None  # None: too many distinct values for a codebook
        if nz.size > 4 * MAX_CODEBOOK and np.unique(nz[: 4 * MAX_CODEBOOK]).size > MAX_CODEBOOK:
            return  # a prefix already has too many: skip sorting the whole tensor
        self.uniq, self.counts = np.unique(nz, return_counts=True)

    def codebooks(self, with_zero: bool) -> list[Codebook]:
        if with_zero not in self._cb:
            pats = np.concatenate([np.zeros(1, self.uniq.dtype), self.uniq]) if with_zero else self.uniq
            cands = [Codebook(pats)]
            aff = find_affine(pats, self.width)
            if aff is not None:
                cands.append(aff)
            self._cb[with_zero] = cands
        return self._cb[with_zero]

    def freqs(self, cb: Codebook, zeros: int) -> np.ndarray:
        """Count of each codebook entry, in codebook order."""
        src = np.concatenate([np.zeros(1, self.uniq.dtype), self.uniq]) if zeros else self.uniq
        cnt = np.concatenate([[zeros], self.counts]) if zeros else self.counts
        return cnt[np.searchsorted(src, cb.patterns)] if cb.kind == AFFINE else cnt

    def plan(self, entries: int, zeros: int) -> _ValuePlan:
        best = _ValuePlan(RAW, 1 + entries * self.width)
        if self.row is not None and entries:
            levels, freqs = self.row.alphabet(zeros)
            stream = plan_stream(freqs, levels.size, huffman=self.huffman)
            cost = 1 + self.row.nbytes(levels, self.width) + stream.nbytes
            if cost < best.nbytes:
                best = _ValuePlan(ROWAFFINE, cost, None, stream, levels)
        if self.uniq is None:
            return best
        k = self.uniq.size + (1 if zeros else 0)
        if entries == 0 or k > MAX_CODEBOOK or k >= entries:
            return best
        for cb in self.codebooks(bool(zeros)):
            stream = plan_stream(self.freqs(cb, zeros), cb.size, huffman=self.huffman)
            cost = 1 + cb.nbytes(self.width) + stream.nbytes
            if cost < best.nbytes:
                best = _ValuePlan(cb.kind, cost, cb, stream)
        return best


def _plan(pat: np.ndarray, width: int, vals: "_Values", *, index_bits: int | None) -> tuple[_Plan, np.ndarray]:
    n = pat.size
    nzpos = np.flatnonzero(pat)
    nnz = nzpos.size
    best = _Plan(DENSE, 1 + (v := vals.plan(n, n - nnz)).nbytes, v, entries=n)
    if n == 0 or nnz == n:  # nothing to leave out: a sparse layout only adds index bytes
        return best, nzpos
    v = vals.plan(nnz, 0)
    cost = 1 + (n + 7) // 8 + v.nbytes
    if cost < best.nbytes:
        best = _Plan(BITMAP, cost, v, entries=nnz)
    gaps = np.diff(nzpos, prepend=-1) - 1
    widths = [index_bits] if index_bits else range(1, min(MAX_INDEX_BITS, max(1, (n - 1).bit_length())) + 1)
    for b in widths:
        entries, gap_freqs = relative_count(nzpos, b, gaps=gaps)
        if entries > n:
            continue
        index = plan_stream(gap_freqs, 1 << b, huffman=vals.huffman)
        v = vals.plan(entries, entries - nnz)
        cost = 2 + len(varint(entries)) + index.nbytes + v.nbytes
        if cost < best.nbytes:
            best = _Plan(RELATIVE, cost, v, b, entries, entries - nnz, index)
    return best, nzpos


def _write_values(entries: np.ndarray, entry_levels, vp: _ValuePlan, row: RowAffine | None, width: int) -> bytes:
    if vp.kind == RAW:
        return bytes([RAW]) + entries.astype(np.dtype(f"<u{width}")).tobytes()
    if vp.kind == ROWAFFINE:
        return write_row_affine(row, vp.levels, width) + write_stream(np.searchsorted(vp.levels, entry_levels), vp.stream)
    cb = vp.codebook
    order = np.argsort(cb.patterns, kind="stable")
    idx = order[np.searchsorted(cb.patterns[order], entries)]
    return write_codebook(cb, width) + write_stream(idx, vp.stream)


def _scan(pat: np.ndarray, shape, transposed: bool) -> np.ndarray:
    """Element order: row-major, or column-major over (shape[0], rest), which
    turns pruned input features (a dead pixel's weights in every neuron) into
    long zero runs."""
    if not transposed:
        return pat
    rows = int(shape[0])
    return pat.reshape(rows, -1).T.reshape(-1)


def encode_tensor(t: torch.Tensor, *, index_bits: int | None = None, huffman: bool = True) -> tuple[bytes, dict]:
    """(payload, stats) of the smallest encoding of ``t``. ``index_bits``
    fixes the relative-index width (None: try 1..12 bits). Both scan orders
    (row-major and column-major) are tried for matrices."""
    if index_bits is not None and not 1 <= index_bits <= MAX_INDEX_BITS:
        raise ValueError(f"index_bits must be in 1..{MAX_INDEX_BITS}, got {index_bits}")
    pat0 = tensor_patterns(t)
    width = t.element_size()
    best = None
    row = find_row_affine(pat0, tuple(t.shape), width) if t.is_floating_point() else None
    vals = _Values(pat0[pat0 != 0], width, huffman=huffman, row=row)  # the same for every scan order
    sparse = 0 < vals.nnz < pat0.size
    orders = (False, True) if sparse and t.dim() >= 2 and t.shape[0] > 1 and t.numel() > t.shape[0] else (False,)
    for transposed in orders:
        pat = _scan(pat0, t.shape, transposed)
        plan, nzpos = _plan(pat, width, vals, index_bits=index_bits)
        if best is None or plan.nbytes < best[0].nbytes:
            best = (plan, nzpos, pat, transposed)
    plan, nzpos, pat, transposed = best
    out = bytearray([plan.layout | (TRANSPOSED if transposed else 0)])
    lev = _scan(row.levels, t.shape, transposed) if plan.values.kind == ROWAFFINE else None
    entry_levels = None
    if plan.layout == DENSE:
        entries, entry_levels = pat, lev
    elif plan.layout == BITMAP:
        out += bitmap_encode(pat != 0)
        entries = pat[nzpos]
        entry_levels = None if lev is None else lev[nzpos]
    else:
        syms, is_filler = relative_encode(nzpos, plan.bits)
        out += bytes([plan.bits]) + varint(syms.size) + write_stream(syms, plan.index)
        entries = np.zeros(syms.size, dtype=pat.dtype)
        entries[~is_filler] = pat[nzpos]
        if lev is not None:
            entry_levels = np.zeros(syms.size, dtype=np.int64)
            entry_levels[~is_filler] = lev[nzpos]
    out += _write_values(entries, entry_levels, plan.values, row, width)
    if len(out) != plan.nbytes:
        raise AssertionError(f"encoded {len(out)} bytes, planned {plan.nbytes}")
    stats = _stats(t, pat, plan, width)
    stats["order"] = "column-major" if transposed else "row-major"
    return bytes(out), stats


def _stats(t: torch.Tensor, pat: np.ndarray, plan: _Plan, width: int) -> dict:
    from .stats import tensor_stats

    return tensor_stats(t, pat, plan, width)


def decode_tensor(payload: bytes, dtype: torch.dtype, shape) -> torch.Tensor:
    """Rebuild the tensor; raise CorruptStream on anything the encoder cannot
    have written."""
    width = torch.empty(0, dtype=dtype).element_size()
    udt = np.dtype(f"<u{width}")
    numel = 1
    for s in shape:
        numel *= int(s)
    r = Reader(payload)
    layout = r.u8()
    transposed = bool(layout & TRANSPOSED)
    layout &= ~TRANSPOSED
    if transposed and (len(shape) < 2 or int(shape[0]) < 1):
        raise CorruptStream("column-major order for a tensor that is not a matrix")
    if layout == DENSE:
        n_entries, where = numel, None
    elif layout == BITMAP:
        mask = bitmap_decode(r.take((numel + 7) // 8), numel)
        n_entries, where = int(mask.sum()), mask
    elif layout == RELATIVE:
        bits = r.u8()
        if not 1 <= bits <= MAX_INDEX_BITS:
            raise CorruptStream(f"relative index width {bits} outside 1..{MAX_INDEX_BITS}")
        n_entries = r.varint(limit=numel)
        where = relative_decode(read_stream(r, n_entries, 1 << bits), numel)
    else:
        raise CorruptStream(f"unknown layout {layout}")
    kind = r.u8()
    if kind == RAW:
        values = np.frombuffer(r.take(n_entries * width), dtype=udt)
    elif kind in (PLAIN, AFFINE):
        cb = read_codebook(r, kind, width)
        if n_entries and cb.size == 0:
            raise CorruptStream("an empty codebook for a non-empty tensor")
        values = cb[read_stream(r, n_entries, max(cb.size, 1))] if n_entries else np.zeros(0, udt)
    elif kind == ROWAFFINE:
        rows = int(shape[0]) if len(shape) >= 2 else 0
        if rows < 1:
            raise CorruptStream("per-row scales for a tensor that is not a matrix")
        scales, levels = read_row_affine(r, width, rows)
        if n_entries and levels.size == 0:
            raise CorruptStream("an empty level set for a non-empty tensor")
        lv = levels[read_stream(r, n_entries, max(levels.size, 1))] if n_entries else np.zeros(0, np.int64)
        pos = np.arange(numel) if where is None else (np.flatnonzero(where) if where.dtype == bool else where)
        row_of = pos % rows if transposed else pos // (numel // rows)
        values = row_affine_values(lv, scales[row_of], width)
    else:
        raise CorruptStream(f"unknown value form {kind}")
    r.done()
    if where is None:
        flat = values
    else:
        flat = np.zeros(numel, dtype=udt)
        flat[where] = values
    if transposed:
        rows = int(shape[0])
        flat = flat.reshape(-1, rows).T.reshape(-1)
    return patterns_to_tensor(flat, dtype, tuple(int(s) for s in shape))
