"""Fixed-width bit packing (MSB first) and LEB128 varints, with a bounds-checked
reader used by every decoder."""
from __future__ import annotations

import numpy as np

from .huffman import CorruptStream

__all__ = ["pack_fixed", "unpack_fixed", "varint", "Reader"]


def bit_width(alphabet: int) -> int:
    """Bits needed for symbols 0 .. alphabet-1 (0 when there is one symbol)."""
    return max(0, int(alphabet - 1).bit_length())


def pack_fixed(values, width: int) -> bytes:
    values = np.asarray(values, dtype=np.int64)
    if width == 0 or values.size == 0:
        return b""
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    chunk = 1 << 20  # bounded temporaries on large tensors
    bits = np.concatenate([((values[lo:lo + chunk, None] >> shifts) & 1).astype(np.uint8).reshape(-1)
                           for lo in range(0, values.size, chunk)])
    return np.packbits(bits).tobytes()


def fixed_nbytes(n: int, width: int) -> int:
    return (n * width + 7) // 8


def unpack_fixed(data: bytes, width: int, n: int) -> np.ndarray:
    if width == 0 or n == 0:
        return np.zeros(n, dtype=np.int64)
    if len(data) != fixed_nbytes(n, width):
        raise CorruptStream(f"fixed-width stream has {len(data)} bytes, expected {fixed_nbytes(n, width)}")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: n * width].reshape(n, width)
    out = np.zeros(n, dtype=np.int64)
    for j in range(width):  # one column at a time: no n x width int64 temporary
        out <<= 1
        out |= bits[:, j]
    return out


def varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint takes non-negative integers")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n: int) -> int:
    return (n << 1) if n >= 0 else ((-n << 1) - 1)


def unzigzag(z: int) -> int:
    return (z >> 1) if not z & 1 else -((z + 1) >> 1)


class Reader:
    """Sequential reader over bytes; every read checks bounds."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise CorruptStream("unexpected end of data")
        v = self.data[self.pos]
        self.pos += 1
        return v

    def varint(self, limit: int | None = None) -> int:
        n, shift = 0, 0
        for _ in range(10):
            b = self.u8()
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if limit is not None and n > limit:
                    raise CorruptStream(f"value {n} exceeds its limit {limit}")
                return n
        raise CorruptStream("malformed varint")

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.remaining():
            raise CorruptStream(f"needs {n} more bytes, {self.remaining()} left")
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def done(self) -> None:
        if self.remaining():
            raise CorruptStream(f"{self.remaining()} unexpected trailing bytes")
