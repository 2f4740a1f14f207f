"""Canonical Huffman coding of small-alphabet symbol streams (codebook indices,
sparse index gaps), vectorised with numpy.

* ``code_lengths(freqs)`` builds Huffman code lengths (limited to
  ``MAX_CODE_LEN`` bits, so a code length fits a nibble and the decode table
  stays small);
* ``canonical_codes(lengths)`` assigns canonical codes (shorter first, then by
  symbol), so only the lengths need storing;
* ``huffman_encode`` / ``huffman_decode`` turn symbols into an MSB-first bit
  stream and back. The decoder is table driven: it peeks ``max_len`` bits at
  every bit position at once (numpy), then follows the chain of code
  boundaries, so decoding 300k symbols takes a few tens of milliseconds.
"""
from __future__ import annotations

import heapq

import numpy as np

__all__ = ["MAX_CODE_LEN", "code_lengths", "canonical_codes", "huffman_encode", "huffman_decode",
           "huffman_bits", "entropy_bits"]

MAX_CODE_LEN = 15
_CHUNK = 1 << 20  # symbols per encoding block (memory bound only; the stream is continuous)


class CorruptStream(ValueError):
    """Raised by decoders on data that cannot come from the encoder."""


def _plain_lengths(freqs: np.ndarray) -> np.ndarray:
    """Huffman code lengths by merging the two rarest subtrees (heap of node
    ids, parent links, depths read back from the root)."""
    used = np.flatnonzero(freqs > 0)
    lengths = np.zeros(freqs.size, dtype=np.int64)
    if used.size == 0:
        return lengths
    if used.size == 1:
        lengths[used[0]] = 1
        return lengths
    m = used.size
    parent = [0] * (2 * m - 1)
    heap = [(int(freqs[s]), i) for i, s in enumerate(used)]
    heapq.heapify(heap)
    nxt = m
    while len(heap) > 1:
        w1, a = heapq.heappop(heap)
        w2, b = heapq.heappop(heap)
        parent[a] = parent[b] = nxt
        heapq.heappush(heap, (w1 + w2, nxt))
        nxt += 1
    depth = [0] * (2 * m - 1)
    for node in range(2 * m - 3, -1, -1):  # children are created before parents
        depth[node] = depth[parent[node]] + 1
    lengths[used] = depth[:m]
    return lengths


def code_lengths(freqs, max_len: int = MAX_CODE_LEN) -> np.ndarray:
    """Code length per symbol (0 for unused symbols), at most ``max_len``.
    When the optimal code is deeper, the frequencies are flattened (halved,
    keeping every used symbol at least 1) until it fits."""
    f = np.asarray(freqs, dtype=np.int64).copy()
    if f.size and f.min() < 0:
        raise ValueError("frequencies must be non-negative")
    if np.count_nonzero(f) > (1 << max_len):
        raise ValueError(f"{np.count_nonzero(f)} used symbols cannot get codes of at most {max_len} bits")
    while True:
        lengths = _plain_lengths(f)
        if lengths.size == 0 or lengths.max() <= max_len:
            return lengths
        f = np.where(f > 0, np.maximum(1, f >> 1), 0)


def canonical_codes(lengths) -> np.ndarray:
    """Canonical code value per symbol (MSB-first, ``lengths[s]`` bits)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(lengths.size, dtype=np.int64)
    if lengths.size == 0 or lengths.max() == 0:
        return codes
    order = np.lexsort((np.arange(lengths.size), lengths))
    order = order[lengths[order] > 0]
    code, prev_len = 0, int(lengths[order[0]])
    for i, s in enumerate(order):
        ln = int(lengths[s])
        if i:
            code = (code + 1) << (ln - prev_len)
        codes[s] = code
        prev_len = ln
    return codes


def kraft_ok(lengths: np.ndarray) -> bool:
    lengths = np.asarray(lengths, dtype=np.int64)
    used = lengths[lengths > 0]
    if used.size == 0:
        return True
    if used.max() > MAX_CODE_LEN:
        return False
    return int(np.sum(1 << (MAX_CODE_LEN - used))) <= (1 << MAX_CODE_LEN)


def huffman_bits(freqs, lengths) -> int:
    """Total payload bits of a stream with these symbol counts."""
    return int(np.dot(np.asarray(freqs, dtype=np.int64), np.asarray(lengths, dtype=np.int64)))


def entropy_bits(freqs) -> float:
    """Empirical entropy (bits per symbol) of a stream with these counts."""
    f = np.asarray(freqs, dtype=np.float64)
    f = f[f > 0]
    if f.size <= 1:
        return 0.0
    p = f / f.sum()
    return float(-(p * np.log2(p)).sum())


def huffman_encode(symbols, lengths) -> tuple[bytes, int]:
    """MSB-first bit stream of ``symbols`` under the canonical code with
    these lengths. Returns (bytes, number of bits)."""
    symbols = np.asarray(symbols, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if symbols.size == 0:
        return b"", 0
    codes = canonical_codes(lengths)
    ln = lengths[symbols]
    if ln.min() <= 0:
        raise ValueError("a symbol has no code (its frequency was zero)")
    width = int(ln.max())
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    parts = []
    for lo in range(0, symbols.size, _CHUNK):  # bounded temporaries on large tensors
        s, n = symbols[lo:lo + _CHUNK], ln[lo:lo + _CHUNK]
        aligned = codes[s] << (width - n)  # left-aligned in `width` bits
        bits = ((aligned[:, None] >> shifts) & 1).astype(np.uint8)
        parts.append(bits[np.arange(width)[None, :] < n[:, None]])
    flat = np.concatenate(parts)
    return np.packbits(flat).tobytes(), int(flat.size)


def _decode_table(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Tables indexed by the next ``width`` bits: symbol and code length
    (0 where no code starts with those bits)."""
    width = int(lengths.max())
    codes = canonical_codes(lengths)
    sym = np.zeros(1 << width, dtype=np.int64)
    ln = np.zeros(1 << width, dtype=np.int64)
    for s in np.flatnonzero(lengths):
        L = int(lengths[s])
        lo = int(codes[s]) << (width - L)
        hi = lo + (1 << (width - L))
        sym[lo:hi] = s
        ln[lo:hi] = L
    return sym, ln, width


def _windows(data: bytes, width: int) -> np.ndarray:
    """The ``width`` bits starting at every bit position (zero-padded)."""
    buf = np.concatenate([np.frombuffer(data, dtype=np.uint8), np.zeros(4, dtype=np.uint8)]).astype(np.uint32)
    v32 = (buf[:-4] << 24) | (buf[1:-3] << 16) | (buf[2:-2] << 8) | buf[3:-1]
    shifts = (32 - width - np.arange(8, dtype=np.uint32)).astype(np.uint32)
    return ((v32[:, None] >> shifts[None, :]) & np.uint32((1 << width) - 1)).astype(np.uint16).reshape(-1)


def huffman_decode(data: bytes, n_symbols: int, lengths) -> np.ndarray:
    """Decode ``n_symbols`` symbols; raise ``CorruptStream`` if the bytes do
    not hold exactly that many codewords (an invalid code, running out, or
    more than 7 bits left over)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n_bits = len(data) * 8
    if n_symbols == 0:
        if data:
            raise CorruptStream("the Huffman bit stream has trailing data")
        return np.zeros(0, dtype=np.int64)
    if lengths.size == 0 or lengths.max() <= 0 or not kraft_ok(lengths):
        raise CorruptStream("invalid Huffman code lengths")
    if n_symbols > n_bits:
        raise CorruptStream(f"{n_symbols} symbols cannot fit in {n_bits} bits")
    sym_t, len_t, width = _decode_table(lengths)
    win = _windows(data, width)
    step = len_t.astype(np.uint8)[win]
    # chain[p]: where the codeword starting at bit p ends. Sentinels: n_bits is
    # "the end"; n_bits + 1 means "invalid or past the end" and is sticky.
    idx = np.int32 if n_bits + 2 < (1 << 31) else np.int64
    chain = np.empty(n_bits + 2, dtype=idx)
    chain[:n_bits] = np.arange(n_bits, dtype=idx)
    chain[:n_bits] += step
    chain[:n_bits][step == 0] = n_bits + 1
    np.minimum(chain, n_bits + 1, out=chain)
    chain[n_bits:] = n_bits + 1
    # Follow every `stride`-th codeword boundary with jump pointers in a short
    # Python loop, then fill the boundaries in between with vectorised steps.
    jump, stride = chain, 1
    while stride < 16 and stride * 2 <= n_symbols:
        jump, stride = jump[jump], stride * 2
    rows = -(-n_symbols // stride)
    starts = np.empty(rows, dtype=np.int64)
    p = 0
    for i in range(rows):
        starts[i] = p
        p = jump[p]
    pos = np.empty((rows, stride), dtype=np.int64)
    pos[:, 0] = starts
    for j in range(1, stride):
        pos[:, j] = chain[pos[:, j - 1]]
    pos = pos.reshape(-1)[:n_symbols]
    end = int(chain[pos[-1]])
    if end > n_bits:
        raise CorruptStream("the Huffman bit stream is invalid or truncated")
    if n_bits - end >= 8:
        raise CorruptStream("the Huffman bit stream has trailing data")
    return sym_t[win[pos]]
