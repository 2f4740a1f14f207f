"""A symbol stream (codebook indices or sparse index gaps, symbols
0 .. alphabet-1) stored either with a fixed bit width or Huffman coded,
whichever is smaller. The alphabet and the symbol count come from the
enclosing section, so the stream stores only what it must:

* ``0`` fixed:   ceil(n * width / 8) bytes, width = ceil(log2(alphabet));
* ``1`` Huffman: varint t, t code lengths as nibbles (symbols >= t unused),
  varint byte count, the canonical-Huffman bit stream;
* ``2`` the same with the code lengths delta-coded (smaller for smooth tables).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .bitpack import Reader, bit_width, fixed_nbytes, pack_fixed, unpack_fixed, varint
from .huffman import MAX_CODE_LEN, CorruptStream, code_lengths, entropy_bits, huffman_decode, huffman_encode

__all__ = ["StreamPlan", "plan_stream", "write_stream", "read_stream"]

FIXED, HUFFMAN, HUFFMAN_DELTA = 0, 1, 2  # Huffman with a nibble or a delta-coded length table
HUFFMAN_MAX_ALPHABET = 1 << 12


@dataclasses.dataclass
class StreamPlan:
    n: int  # symbols
    alphabet: int
    mode: int  # FIXED or HUFFMAN
    nbytes: int  # stored bytes, mode byte included
    fixed_bits: float  # bits per symbol with the fixed width
    huffman_bits: float | None  # bits per symbol with Huffman (payload only), None if not computed
    entropy_bits: float  # empirical entropy, bits per symbol
    lengths: np.ndarray | None = None

    def summary(self) -> dict:
        return {"symbols": self.n, "alphabet": self.alphabet, "coding": "fixed" if self.mode == FIXED else "huffman",
                "bytes": self.nbytes, "fixed_bits": self.fixed_bits, "huffman_bits": self.huffman_bits,
                "entropy_bits": self.entropy_bits,
                "coded_bits": (self.nbytes - 1) * 8 / self.n if self.n else 0.0}


def _nibble_table(lengths: np.ndarray) -> bytes:
    nib = np.zeros(lengths.size + (lengths.size & 1), dtype=np.uint8)
    nib[:lengths.size] = lengths
    return ((nib[0::2] << 4) | nib[1::2]).astype(np.uint8).tobytes()


def _delta_table(lengths: np.ndarray) -> bytes:
    """Code lengths as changes from the previous one: '0' same, '10' +1,
    '110' -1, '111' + 4-bit literal. Smooth tables (sparse-index gaps) cost
    one or two bits per symbol instead of four."""
    bits, prev = [], 0
    for ln in lengths.tolist():
        d = ln - prev
        if d == 0:
            bits.append("0")
        elif d == 1:
            bits.append("10")
        elif d == -1:
            bits.append("110")
        else:
            bits.append("111" + format(ln, "04b"))
        prev = ln
    s = "".join(bits)
    s += "0" * (-len(s) % 8)
    return bytes(int(s[i:i + 8], 2) for i in range(0, len(s), 8))


def _read_delta_table(r: Reader, t: int) -> np.ndarray:
    out, prev, byte, left = [], 0, 0, 0

    def bit() -> int:
        nonlocal byte, left
        if not left:
            byte, left = r.u8(), 8
        left -= 1
        return (byte >> left) & 1

    for _ in range(t):
        if not bit():
            ln = prev
        elif not bit():
            ln = prev + 1
        elif not bit():
            ln = prev - 1
        else:
            ln = (bit() << 3) | (bit() << 2) | (bit() << 1) | bit()
        if not 0 <= ln <= MAX_CODE_LEN:
            raise CorruptStream(f"Huffman code length {ln} out of range")
        out.append(ln)
        prev = ln
    if left and byte & ((1 << left) - 1):
        raise CorruptStream("Huffman table padding is not zero")
    return np.asarray(out, dtype=np.int64)


def _table(lengths: np.ndarray) -> tuple[int, bytes]:
    """The smaller table form: (mode, bytes)."""
    nib, delta = _nibble_table(lengths), _delta_table(lengths)
    return (HUFFMAN_DELTA, delta) if len(delta) < len(nib) else (HUFFMAN, nib)


def plan_stream(freqs, alphabet: int, *, huffman: bool = True) -> StreamPlan:
    """Choose fixed or Huffman coding for a stream with these symbol counts."""
    freqs = np.asarray(freqs, dtype=np.int64)
    n = int(freqs.sum())
    width = bit_width(alphabet)
    fixed = 1 + fixed_nbytes(n, width)
    plan = StreamPlan(n, alphabet, FIXED, fixed, float(width), None, entropy_bits(freqs))
    used = np.flatnonzero(freqs)
    if n == 0 or used.size == 0:
        return plan
    t = int(used[-1]) + 1
    if t > HUFFMAN_MAX_ALPHABET:
        return plan
    lengths = code_lengths(freqs[:t], MAX_CODE_LEN)
    bits = int(np.dot(freqs[:t], lengths))
    plan.huffman_bits = bits / n
    payload = (bits + 7) // 8
    if not huffman or 1 + len(varint(t)) + (t + 7) // 8 + len(varint(payload)) + payload >= fixed:
        return plan  # cannot win even with a one-bit-per-symbol table: skip building tables
    mode, table = _table(lengths)
    total = 1 + len(varint(t)) + len(table) + len(varint(payload)) + payload
    if total < fixed:
        plan.mode, plan.nbytes, plan.lengths = mode, total, lengths
    return plan


def write_stream(symbols, plan: StreamPlan) -> bytes:
    symbols = np.asarray(symbols, dtype=np.int64)
    if plan.mode == FIXED:
        return bytes([FIXED]) + pack_fixed(symbols, bit_width(plan.alphabet))
    lengths = plan.lengths
    mode, table = _table(lengths)
    data, _ = huffman_encode(symbols, lengths)
    out = bytes([mode]) + varint(lengths.size) + table + varint(len(data)) + data
    if len(out) != plan.nbytes:  # the size model must match the writer
        raise AssertionError(f"stream size {len(out)} != planned {plan.nbytes}")
    return out


def read_stream(r: Reader, n: int, alphabet: int) -> np.ndarray:
    mode = r.u8()
    if mode == FIXED:
        width = bit_width(alphabet)
        syms = unpack_fixed(r.take(fixed_nbytes(n, width)), width, n)
        if syms.size and syms.max() >= alphabet:
            raise CorruptStream(f"symbol {int(syms.max())} outside the alphabet of {alphabet}")
        return syms
    if mode in (HUFFMAN, HUFFMAN_DELTA):
        t = r.varint(limit=min(alphabet, HUFFMAN_MAX_ALPHABET))
        if mode == HUFFMAN_DELTA:
            lengths = _read_delta_table(r, t)
        else:
            raw = np.frombuffer(r.take((t + 1) // 2), dtype=np.uint8)
            lengths = np.empty(raw.size * 2, dtype=np.int64)
            lengths[0::2], lengths[1::2] = raw >> 4, raw & 15
            if lengths.size > t and lengths[t:].any():
                raise CorruptStream("Huffman table padding is not zero")
            lengths = lengths[:t]
        nbytes = r.varint(limit=r.remaining())
        return huffman_decode(r.take(nbytes), n, lengths)
    raise CorruptStream(f"unknown stream coding {mode}")
