"""Bit-exact round trips of single tensors; the encoder picks the smallest form."""
import numpy as np
import pytest
import torch

from torchslim.codec.tensorcodec import decode_tensor, encode_tensor, tensor_patterns


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(tensor_patterns(a), tensor_patterns(b))


def round_trip(t, **kw):
    payload, stats = encode_tensor(t, **kw)
    out = decode_tensor(payload, t.dtype, list(t.shape))
    assert same_bits(t, out), stats
    assert stats["bytes"] == len(payload)
    return payload, stats


def pruned_clustered(shape, density=0.08, k=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    cb = torch.randn(k, generator=g) * 0.05
    idx = torch.randint(0, k, shape, generator=g)
    keep = torch.rand(shape, generator=g) < density
    return torch.where(keep, cb[idx], torch.zeros(()))


CASES = {
    "empty": torch.zeros(0),
    "empty_2d": torch.zeros(3, 0),
    "one": torch.tensor([1.5]),
    "scalar": torch.tensor(2.25),
    "all_zero": torch.zeros(1000),
    "all_distinct": torch.randn(777),
    "fp16": torch.randn(500).half(),
    "fp16_sparse_codebook": pruned_clustered((40, 50)).half(),
    "bf16": torch.randn(300).bfloat16(),
    "fp64": torch.randn(100, dtype=torch.float64),
    "num_batches_tracked": torch.tensor(12345, dtype=torch.int64),
    "int32": torch.randint(-5, 5, (64,), dtype=torch.int32),
    "bool": torch.rand(100) < 0.5,
    "uint8": torch.randint(0, 255, (10, 10), dtype=torch.uint8),
    "signed_zero_nan": torch.tensor([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 0.0, 1.0] * 20),
    "pruned_clustered": pruned_clustered((300, 784)),
    "dense_clustered": pruned_clustered((100, 100), density=1.0, k=16),
    "very_sparse": pruned_clustered((2000, 100), density=0.0005),
    "constant": torch.full((50, 50), 0.125),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip(name):
    round_trip(CASES[name])


@pytest.mark.parametrize("kw", [dict(index_bits=1), dict(index_bits=5), dict(index_bits=12), dict(huffman=False)])
def test_round_trip_forced_options(kw):
    _, stats = round_trip(pruned_clustered((100, 300)), **kw)
    if "index_bits" in kw and stats["layout"] == "relative":
        assert stats["index_bits"] == kw["index_bits"]
    if kw.get("huffman") is False:
        assert stats["weight"]["coding"] != "huffman" and (stats["index"] or {}).get("coding") != "huffman"


def test_pruned_clustered_uses_sparse_codebook_and_beats_alternatives():
    t = pruned_clustered((300, 784))
    payload, stats = round_trip(t)
    assert stats["layout"] == "relative" and stats["values"] == "codebook" and stats["codebook_size"] == 32
    nnz = int((t != 0).sum())
    # smaller than: bitmap + fp32 values, and than 5-bit fixed relative indices + 5-bit codebook indices
    assert len(payload) < t.numel() / 8 + 4 * nnz
    fixed, _ = encode_tensor(t, index_bits=5, huffman=False)
    assert len(payload) <= len(fixed)
    # within a few percent of the entropy bound of both streams
    bound = (stats["index"]["entropy_bits"] + stats["weight"]["entropy_bits"]) * stats["entries"] / 8
    assert len(payload) < bound * 1.03 + 200


def test_uniform_levels_use_the_affine_codebook():
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor(0.0123)
    q = torch.randint(-127, 128, (200, 200), generator=g).float()
    t = q * scale  # what fake quantization produces
    payload, stats = round_trip(t)
    assert stats["values"] == "affine"
    assert len(payload) < 200 * 200 * 8.2 / 8 + 64  # ~8 bits per weight, no 255 x 4-byte codebook


def test_all_zero_is_tiny_and_raw_fallback_for_random():
    payload, _ = round_trip(torch.zeros(100_000))
    assert len(payload) < 16
    t = torch.randn(1000)
    payload, stats = round_trip(t)
    assert stats["layout"] == "dense" and stats["values"] == "raw" and len(payload) == 4000 + 2


def test_dead_input_columns_use_column_major_order():
    t = pruned_clustered((300, 784), density=0.3)
    t[:, torch.rand(784, generator=torch.Generator().manual_seed(3)) < 0.7] = 0  # dead input pixels
    payload, stats = round_trip(t)
    assert stats["order"] == "column-major"
    row_major, _ = encode_tensor(t.reshape(-1))
    assert len(payload) < len(row_major)  # the flat (1-D) tensor can only be scanned row-major


def test_large_tensors_keep_codebooks_and_skip_hopeless_ones():
    t = pruned_clustered((600, 1000), density=1.0, k=16)
    _, stats = round_trip(t)
    assert stats["values"] == "codebook" and stats["codebook_size"] == 16
    _, stats = round_trip(torch.randn(600, 1000))
    assert stats["values"] == "raw"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_per_channel_quantized_weights_use_per_row_scales(dtype):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 32, 3, 3, generator=g) * torch.rand(64, 1, 1, 1, generator=g)
    scale = (w.abs().amax(dim=(1, 2, 3)) / 7).to(dtype).float()
    q = torch.fake_quantize_per_channel_affine(w, scale, torch.zeros(64, dtype=torch.int32), 0, -8, 7)
    q = q.to(dtype)
    q[:, :16] = 0  # half the input channels pruned
    payload, stats = round_trip(q)
    assert stats["values"] == "row-affine" and stats["codebook_size"] <= 16
    assert len(payload) * 8 / q.numel() < 4.5  # ~4-bit levels plus one scale per row


def test_per_row_detection_rejects_near_misses():
    q = torch.round(torch.randn(16, 40) * 5) * (torch.rand(16, 1) + 0.5)
    q[3, 7] = torch.nextafter(q[3, 7], torch.tensor(float("inf")))  # one value off by an ulp
    _, stats = round_trip(q)
    assert stats["values"] != "row-affine"
