"""Sparse formats and fixed-width packing against plain references."""
import numpy as np
import pytest

from torchslim.codec.bitpack import Reader, pack_fixed, unpack_fixed, unzigzag, varint, zigzag
from torchslim.codec.huffman import CorruptStream
from torchslim.codec.sparse import (bitmap_decode, bitmap_encode, relative_count, relative_decode,
                                    relative_encode)


def ref_relative(positions, bits):
    """Deep Compression, Fig. 2: store the distance to the previous entry;
    when it exceeds 2**bits, emit a filler zero 2**bits further on."""
    span, syms, filler, prev = 1 << bits, [], [], -1
    for p in positions:
        while p - prev > span:
            syms.append(span - 1)
            filler.append(True)
            prev += span
        syms.append(p - prev - 1)
        filler.append(False)
        prev = p
    return syms, filler


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
def test_relative_indices_match_reference(bits):
    rng = np.random.default_rng(bits)
    n = 5000
    positions = np.sort(rng.choice(n, size=300, replace=False))
    positions[0] = 0
    syms, filler = relative_encode(positions, bits)
    rs, rf = ref_relative(positions.tolist(), bits)
    assert syms.tolist() == rs and filler.tolist() == rf
    count, freqs = relative_count(positions, bits)
    assert count == len(rs) and (freqs == np.bincount(rs, minlength=1 << bits)).all()
    pos = relative_decode(syms, n)
    assert (pos[~filler] == positions).all()
    with pytest.raises(CorruptStream):
        relative_decode(syms, int(positions[-1]))  # runs past the end


def test_paper_example():
    # Fig. 2 of the paper: 3-bit indices, a gap of 8 would need a filler
    syms, filler = relative_encode(np.array([1, 4, 15]), 3)
    assert syms.tolist() == [1, 2, 7, 2] and filler.tolist() == [False, False, True, False]


def test_bitmap_round_trip_and_padding_check():
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 8, 9, 1001):
        mask = rng.random(n) < 0.3
        assert (bitmap_decode(bitmap_encode(mask), n) == mask).all()
    with pytest.raises(CorruptStream):
        bitmap_decode(b"\xff", 3)


@pytest.mark.parametrize("width", [0, 1, 3, 8, 13, 20])
def test_fixed_width_against_reference(width):
    rng = np.random.default_rng(width)
    vals = rng.integers(0, 1 << width, size=123) if width else np.zeros(123, dtype=np.int64)
    data = pack_fixed(vals, width)
    bitstring = "".join(format(int(v), f"0{width}b") for v in vals) if width else ""
    padded = bitstring + "0" * (-len(bitstring) % 8)
    assert data == bytes(int(padded[i:i + 8], 2) for i in range(0, len(padded), 8))
    assert (unpack_fixed(data, width, vals.size) == vals).all()


def test_varints():
    for n in (0, 1, 127, 128, 300, 2**40):
        r = Reader(varint(n))
        assert r.varint() == n and r.remaining() == 0
    for n in (-5, -1, 0, 1, 7):
        assert unzigzag(zigzag(n)) == n
    with pytest.raises(CorruptStream):
        Reader(b"\x80\x80").varint()
    with pytest.raises(CorruptStream):
        Reader(b"\xff" * 11).varint()
    with pytest.raises(CorruptStream):
        Reader(varint(500)).varint(limit=100)
