"""Symbol streams: fixed width or Huffman (nibble or delta-coded table)."""
import numpy as np
import pytest

from torchslim.codec.bitpack import Reader
from torchslim.codec.huffman import CorruptStream
from torchslim.codec.streams import FIXED, HUFFMAN, HUFFMAN_DELTA, plan_stream, read_stream, write_stream


def round_trip(syms, alphabet, **kw):
    plan = plan_stream(np.bincount(syms, minlength=alphabet), alphabet, **kw)
    data = write_stream(syms, plan)
    assert len(data) == plan.nbytes
    r = Reader(data + b"tail")
    out = read_stream(r, syms.size, alphabet)
    assert (out == syms).all() and r.remaining() == 4
    return plan


def test_smooth_gap_table_is_delta_coded():
    rng = np.random.default_rng(0)
    syms = np.minimum(rng.geometric(0.02, size=20_000) - 1, 511)
    plan = round_trip(syms, 512)
    assert plan.mode == HUFFMAN_DELTA


def test_skewed_small_alphabet_uses_huffman_and_uniform_uses_fixed():
    rng = np.random.default_rng(1)
    plan = round_trip(rng.choice(16, size=5000, p=rng.dirichlet(np.ones(16) * 0.3)), 16)
    assert plan.mode in (HUFFMAN, HUFFMAN_DELTA) and plan.huffman_bits < plan.fixed_bits
    plan = round_trip(rng.integers(0, 16, size=5000), 16)
    assert plan.mode == FIXED and plan.huffman_bits is not None  # Huffman costed, not chosen
    plan = round_trip(rng.choice(16, size=5000, p=rng.dirichlet(np.ones(16) * 0.3)), 16, huffman=False)
    assert plan.mode == FIXED


@pytest.mark.parametrize("alphabet", [1, 2, 3, 300])
def test_edge_alphabets(alphabet):
    rng = np.random.default_rng(alphabet)
    for n in (0, 1, 2, 1000):
        round_trip(rng.integers(0, alphabet, size=n), alphabet)


def test_corrupt_tables_are_rejected():
    rng = np.random.default_rng(2)
    syms = np.minimum(rng.geometric(0.05, size=3000) - 1, 255)
    plan = plan_stream(np.bincount(syms, minlength=256), 256)
    data = bytearray(write_stream(syms, plan))
    rejected = 0
    for i in range(1, min(len(data), 120)):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            try:
                out = read_stream(Reader(bytes(bad)), syms.size, 256)
                assert out.size == syms.size and (out < 256).all()
            except CorruptStream:
                rejected += 1
    assert rejected > 0
