import json
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.utils.prune as tprune

from torchslim.artifact import load, read_metadata, save
from torchslim.artifact import format as fmt
from torchslim.core import ArtifactError, ModelError
from torchslim.zoo import build_model


def same_outputs(a, b, x):
    a.eval(), b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "resnet8", "mobilenetv2", "vit"])
def test_round_trip_every_zoo_model(tmp_path, name):
    m = build_model(name, dataset="mnist")
    # make BN statistics non-trivial so buffers are really checked
    m.train()
    with torch.no_grad():
        m(torch.rand(8, 1, 28, 28))
    p = save(m, tmp_path / "m.safetensors")
    m2 = load(p)
    same_outputs(m, m2, torch.rand(4, 1, 28, 28))
    meta = read_metadata(p)
    assert meta["arch"]["zoo"] == name and meta["format_version"] == fmt.FORMAT_VERSION


def test_structural_changes_are_rebuilt(tmp_path):
    m = build_model("resnet8", dataset="mnist")
    blk = m.layer1[0]
    blk.conv1 = nn.Conv2d(16, 5, 3, 1, 1, bias=False)
    blk.bn1 = nn.BatchNorm2d(5)
    blk.conv2 = nn.Conv2d(5, 16, 3, 1, 1, bias=False)
    m.fc = nn.Sequential(nn.Linear(64, 3, bias=False), nn.Linear(3, 10))  # a decomposition
    m.layer2[0].downsample[1] = nn.Identity()
    v = build_model("vit", dataset="mnist")
    a = v.blocks[0].attn
    a.q, a.k, a.v, a.proj = nn.Linear(64, 32), nn.Linear(64, 32), nn.Linear(64, 32), nn.Linear(32, 64)  # 2 heads
    for model in (m, v):
        p = save(model, tmp_path / "s.safetensors")
        same_outputs(model, load(p), torch.rand(2, 1, 28, 28))
    assert load(p).blocks[0].attn.num_heads == 2


def test_masks_are_made_permanent_and_file_shrinks(tmp_path):
    m = build_model("lenet300", dataset="mnist")
    dense = os.path.getsize(save(m, tmp_path / "dense.safetensors"))
    for layer in (m.fc1, m.fc2, m.fc3):
        tprune.l1_unstructured(layer, "weight", amount=0.9)
    p = save(m, tmp_path / "sparse.safetensors")
    assert hasattr(m.fc1, "weight_mask")  # the caller's model keeps its masks
    sparse = os.path.getsize(p)
    # 10% fp32 values + 1 bit per weight ~ 0.525 bytes/weight of 4
    assert sparse < dense / 4
    m2 = load(p)
    same_outputs(m, m2, torch.rand(3, 784))
    assert float((m2.fc1.weight == 0).float().mean()) == pytest.approx(0.9, abs=1e-3)
    meta = read_metadata(p)
    assert meta["tensors"]["fc1.weight"]["encoding"] == "bitmap"


def test_parametrized_masks(tmp_path):
    from torch.nn.utils import parametrize

    class Mask(nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, w):
            return w * self.mask

    m = build_model("lenet300", dataset="mnist")
    parametrize.register_parametrization(m.fc2, "weight", Mask((torch.rand(100, 300) > 0.5).float()))
    m2 = load(save(m, tmp_path / "p.safetensors"))
    same_outputs(m, m2, torch.rand(2, 784))
    assert not parametrize.is_parametrized(m2.fc2)


def test_fp16_storage(tmp_path):
    m = build_model("lenet5", dataset="mnist")
    p32 = os.path.getsize(save(m, tmp_path / "a.safetensors"))
    p16 = save(m, tmp_path / "b.safetensors", fp16=True)
    assert os.path.getsize(p16) < 0.55 * p32
    m2 = load(p16)
    assert m2.fc1.weight.dtype == torch.float32
    torch.testing.assert_close(m2.fc1.weight, m.fc1.weight.half().float())


class UserNet(nn.Module):  # importable as tests.artifact.test_artifact:UserNet
    def __init__(self, width: int = 7):
        super().__init__()
        self.a = nn.Linear(4, width)
        self.b = nn.Linear(width, 2)
        self.torchslim_kwargs = {"width": width}

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def test_user_module(tmp_path):
    m = UserNet(width=5)
    m2 = load(save(m, tmp_path / "u.safetensors"))
    assert isinstance(m2, UserNet) and m2.a.out_features == 5
    same_outputs(m, m2, torch.rand(3, 4))


def test_main_module_class_is_refused(tmp_path):
    cls = type("Local", (nn.Module,), {"__module__": "__main__"})
    with pytest.raises(ModelError, match="__main__"):
        save(cls(), tmp_path / "x.safetensors")


def test_corruption_truncation_version_missing(tmp_path):
    p = save(build_model("lenet300", dataset="mnist"), tmp_path / "m.safetensors")
    data = p.read_bytes()
    # missing
    with pytest.raises(ArtifactError, match="no such artifact"):
        load(tmp_path / "nope.safetensors")
    # truncated
    t = tmp_path / "trunc.safetensors"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="trunc.safetensors"):
        load(t)
    # a flipped byte in the weights
    c = tmp_path / "corrupt.safetensors"
    b = bytearray(data)
    b[-100] ^= 0xFF
    c.write_bytes(bytes(b))
    with pytest.raises(ArtifactError, match="checksum"):
        load(c)
    # a newer format version
    meta = read_metadata(p)
    raw = json.loads(meta["_raw"])
    raw["format_version"] = 99
    from safetensors.torch import load_file
    from safetensors.torch import save_file

    v = tmp_path / "v99.safetensors"
    save_file(load_file(str(p)), str(v), metadata={"torchslim": json.dumps(raw, sort_keys=True), "checksum": "x"})
    with pytest.raises(ArtifactError, match="upgrade torchslim"):
        load(v)
    # a folder
    with pytest.raises(ArtifactError, match="folder"):
        load(tmp_path)


def test_write_is_atomic(tmp_path, monkeypatch):
    p = save(build_model("lenet300", dataset="mnist"), tmp_path / "m.safetensors")
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(fmt.os, "replace", boom)
    with pytest.raises(OSError):
        save(build_model("lenet5", dataset="mnist"), p)
    assert p.read_bytes() == before  # the old file is intact
