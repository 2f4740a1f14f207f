"""Damaged compact artifacts: truncation, flipped bits, garbage and even
re-checksummed mutations give an ArtifactError naming the file (and the
section), never a crash, a hang or a wrong model."""
import numpy as np
import pytest
import torch

import torchslim
from torchslim.codec import read_compact, save_compact
from torchslim.codec.container import read_container, write_container
from torchslim.codec.tensorcodec import decode_tensor, encode_tensor
from torchslim.core.errors import ArtifactError
from torchslim.zoo import build_model


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    torch.manual_seed(0)
    m = build_model("lenet300", dataset="digits", hidden=(40, 20))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for i, p in enumerate(m.parameters()):
            cb = torch.randn(8, generator=g)
            keep = torch.rand(p.shape, generator=g) < (0.1 if i % 2 == 0 else 0.9)
            p.copy_(torch.where(keep, cb[torch.randint(0, 8, p.shape, generator=g)], torch.zeros(())))
    path = tmp_path_factory.mktemp("fuzz") / "m.tslim"
    save_compact(m, path)
    return path, path.read_bytes(), m


def expect_error(path, data, *needles):
    path.write_bytes(data)
    with pytest.raises(ArtifactError) as e:
        torchslim.load(path)
    msg = str(e.value)
    assert str(path) in msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_every_truncation(artifact, tmp_path):
    _, data, _ = artifact
    p = tmp_path / "t.tslim"
    cuts = sorted(set(range(0, 64)) | set(range(64, len(data), max(1, len(data) // 150))))
    for cut in cuts:
        expect_error(p, data[:cut])


def test_every_single_bit_flip_in_a_sample(artifact, tmp_path):
    _, data, _ = artifact
    p = tmp_path / "f.tslim"
    rng = np.random.default_rng(0)
    sections = 0
    for pos in rng.choice(len(data), size=250, replace=False):
        bad = bytearray(data)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        msg = expect_error(p, bytes(bad))
        sections += "section" in msg
    assert sections > 100  # most flips land in a section and the message says which


def test_garbage_and_appended_bytes(artifact, tmp_path):
    _, data, _ = artifact
    p = tmp_path / "g.tslim"
    rng = np.random.default_rng(1)
    for n in (1, 10, 1000):
        expect_error(p, b"TSLZ" + rng.bytes(n))
    expect_error(p, rng.bytes(5000))
    expect_error(p, data + b"\x00", "unexpected bytes")
    expect_error(p, b"")


def test_rechecksummed_mutations_never_crash(artifact, tmp_path):
    """Mutate a payload and fix its checksum: the decoders alone must reject
    it (ArtifactError) or decode something well-formed; never crash or hang."""
    _, data, _ = artifact
    meta, sections = read_container(data)
    rng = np.random.default_rng(2)
    rejected = 0
    for trial in range(300):
        i = int(rng.integers(len(sections)))
        name, payload = sections[i]
        b = bytearray(payload)
        kind = trial % 3
        if kind == 0 and b:
            b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            b = b[: int(rng.integers(len(b) + 1))]
        else:
            b = bytearray(rng.bytes(int(rng.integers(0, 40))))
        mutated = sections[:i] + [(name, bytes(b))] + sections[i + 1:]
        blob = write_container({k: v for k, v in meta.items() if k != "sections"}, mutated)
        dtype_name, shape = meta["tensors"][i]
        try:
            t = decode_tensor(bytes(b), getattr(torch, dtype_name), shape)
            assert list(t.shape) == shape
        except Exception as e:  # the decoder's own error type only
            assert type(e).__name__ == "CorruptStream", repr(e)
            rejected += 1
            p = tmp_path / "x.tslim"
            p.write_bytes(blob)
            with pytest.raises(ArtifactError, match=f"section {i} "):
                read_compact(p)
    assert rejected > 100


def test_decoder_checks_payload_against_shape():
    payload, stats = encode_tensor(torch.randn(10))
    assert stats["values"] == "raw"
    for shape in ([5], [11], [2, 6]):
        with pytest.raises(Exception) as e:
            decode_tensor(payload, torch.float32, shape)  # the payload holds 10 elements
        assert type(e.value).__name__ == "CorruptStream"
