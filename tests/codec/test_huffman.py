"""Huffman coding against plain references and the entropy bound."""
import heapq
import time

import numpy as np
import pytest

from torchslim.codec.huffman import (MAX_CODE_LEN, CorruptStream, canonical_codes, code_lengths, entropy_bits,
                                     huffman_decode, huffman_encode)


def ref_lengths(freqs):
    """Textbook Huffman: merge the two lightest trees, each leaf deepens by one."""
    heap = [(f, i, [i]) for i, f in enumerate(freqs) if f > 0]
    lengths = [0] * len(freqs)
    if len(heap) == 1:
        lengths[heap[0][1]] = 1
        return lengths
    heapq.heapify(heap)
    k = len(freqs)
    while len(heap) > 1:
        fa, _, a = heapq.heappop(heap)
        fb, _, b = heapq.heappop(heap)
        for s in a + b:
            lengths[s] += 1
        heapq.heappush(heap, (fa + fb, k, a + b))
        k += 1
    return lengths


def ref_canonical(lengths):
    """DEFLATE's canonical code assignment (RFC 1951, 3.2.2)."""
    max_len = max(lengths)
    bl_count = [0] * (max_len + 1)
    for ln in lengths:
        if ln:
            bl_count[ln] += 1
    code, next_code = 0, [0] * (max_len + 1)
    for bits in range(1, max_len + 1):
        code = (code + bl_count[bits - 1]) << 1 if bits > 1 else 0
        next_code[bits] = code
    out = [None] * len(lengths)
    for s, ln in enumerate(lengths):
        if ln:
            out[s] = next_code[ln]
            next_code[ln] += 1
    return out


def ref_encode(symbols, lengths):
    codes = ref_canonical(lengths)
    return "".join(format(codes[s], f"0{lengths[s]}b") for s in symbols)


def ref_decode(bitstring, n, lengths):
    codes = ref_canonical(lengths)
    table = {format(c, f"0{lengths[s]}b"): s for s, c in enumerate(codes) if c is not None}
    out, cur = [], ""
    for b in bitstring:
        cur += b
        if cur in table:
            out.append(table[cur])
            cur = ""
            if len(out) == n:
                break
    return out


@pytest.mark.parametrize("seed", range(5))
def test_lengths_optimal_and_canonical_codes_match_reference(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 60))
    freqs = rng.integers(0, 1000, size=k)
    freqs[rng.integers(0, k)] = 5  # at least one used symbol
    ln = code_lengths(freqs)
    ref = ref_lengths(list(freqs))
    # the optimal total cost is unique even if tie-breaking gives other lengths
    assert int(np.dot(freqs, ln)) == int(np.dot(freqs, ref))
    assert (ln[freqs == 0] == 0).all()
    used = ln[ln > 0]
    if used.size > 1:
        assert sum(2.0 ** -used) == pytest.approx(1.0)  # complete prefix code
    codes = canonical_codes(ln)
    refc = ref_canonical(list(ln))
    assert all(refc[s] is None or refc[s] == codes[s] for s in range(k))


@pytest.mark.parametrize("seed", range(4))
def test_bitstream_matches_reference_and_round_trips(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 40))
    p = rng.dirichlet(np.ones(k) * 0.7)
    syms = rng.choice(k, size=int(rng.integers(1, 3000)), p=p)
    freqs = np.bincount(syms, minlength=k)
    ln = code_lengths(freqs)
    data, nbits = huffman_encode(syms, ln)
    bitstring = "".join(format(b, "08b") for b in data)[:nbits]
    assert bitstring == ref_encode(syms, list(ln))
    assert ref_decode(bitstring, len(syms), list(ln)) == list(syms)
    assert (huffman_decode(data, len(syms), ln) == syms).all()


def test_within_one_bit_of_entropy():
    rng = np.random.default_rng(1)
    for alpha in (0.1, 0.5, 3.0):
        p = rng.dirichlet(np.ones(64) * alpha)
        syms = rng.choice(64, size=50_000, p=p)
        freqs = np.bincount(syms, minlength=64)
        h = entropy_bits(freqs)
        _, nbits = huffman_encode(syms, code_lengths(freqs))
        assert h <= nbits / syms.size < h + 1


def test_length_limit_on_fibonacci_frequencies():
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    freqs = np.array(fib)
    assert max(ref_lengths(fib)) > MAX_CODE_LEN
    ln = code_lengths(freqs)
    assert ln.max() <= MAX_CODE_LEN and sum(2.0 ** -ln) <= 1.0
    syms = np.repeat(np.arange(30), np.minimum(freqs, 50))
    data, _ = huffman_encode(syms, ln)
    assert (huffman_decode(data, syms.size, ln) == syms).all()


def test_single_symbol_and_empty():
    ln = code_lengths(np.array([0, 7, 0]))
    assert list(ln) == [0, 1, 0]
    data, nbits = huffman_encode(np.full(7, 1), ln)
    assert nbits == 7 and (huffman_decode(data, 7, ln) == 1).all()
    assert huffman_decode(b"", 0, ln).size == 0


def test_decoder_rejects_bad_streams():
    freqs = np.array([5, 3, 1, 1])
    ln = code_lengths(freqs)
    syms = np.array([0, 1, 2, 3, 0, 0, 1, 0, 1, 0])
    data, _ = huffman_encode(syms, ln)
    with pytest.raises(CorruptStream):
        huffman_decode(data[:-1], syms.size, ln)  # truncated
    with pytest.raises(CorruptStream):
        huffman_decode(data + b"\0", syms.size, ln)  # trailing byte
    with pytest.raises(CorruptStream):
        huffman_decode(data, syms.size, np.array([1, 1, 1, 1]))  # violates Kraft
    with pytest.raises(CorruptStream):
        huffman_decode(b"\xff" * 3, 20, np.array([1, 0]))  # '1' is no codeword


def test_decodes_300k_symbols_fast():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(64) * 0.5)
    syms = rng.choice(64, size=300_000, p=p)
    ln = code_lengths(np.bincount(syms, minlength=64))
    data, _ = huffman_encode(syms, ln)
    t0 = time.perf_counter()
    out = huffman_decode(data, syms.size, ln)
    dt = time.perf_counter() - t0
    assert (out == syms).all()
    assert dt < 1.0, f"decoding 300k symbols took {dt:.2f} s"
