"""Oracle tests for structured pruning (docs/ARCHITECTURE.md): make some internal channels
dead by hand (zero a layer's filters/rows and what reads them), prune, and the
outputs must stay equal. Dead channels have zero weight norm, so the L2
criterion must pick exactly them; the test also checks the pruned shapes, so a
pruner that removed other channels, sliced a coupled tensor at the wrong
positions or left a head count stale fails."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

from torchslim.core.scope import Scope
from torchslim.prune import structured
from torchslim.zoo import build_model


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@torch.no_grad()
def _zero(model, name, tensor, axis, idx):
    t = getattr(model.get_submodule(name), tensor)
    t.index_fill_(axis, torch.as_tensor(idx), 0.0)


def _prune_and_compare(model, x, dead: int, size: int, producers: list[str], atol=1e-5, **kw):
    model.eval()
    with torch.no_grad():
        ref = model(*x)
    pruned = structured(model, x, ratio=dead / size, target="channels", importance="l2",
                        scope=Scope(names=tuple(producers)), **kw)
    with torch.no_grad():
        out = pruned(*x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=atol, rtol=1e-4)
    return pruned


def test_resnet8_internal_channels_dead():
    m = build_model("resnet8", dataset="mnist")
    _randomise_bn(m)
    idx = [1, 5, 9, 12]
    _zero(m, "layer2.0.conv1", "weight", 0, idx)
    for t in ("weight", "bias"):
        _zero(m, "layer2.0.bn1", t, 0, idx)
    _zero(m, "layer2.0.conv2", "weight", 1, idx)
    x = (torch.rand(3, 1, 28, 28),)
    p = _prune_and_compare(m, x, len(idx), 32, ["layer2.0.conv1"])
    assert p.layer2[0].conv1.out_channels == 28 and p.layer2[0].conv2.in_channels == 28
    assert p.layer2[0].bn1.num_features == 28 and p.layer2[0].bn1.running_mean.shape == (28,)


def test_resnet8_residual_channels_dead():
    """The stem and layer1's block output are added: one coupled group, read by
    layer1.conv1, layer2.conv1 and layer2's downsample conv."""
    m = build_model("resnet8", dataset="mnist")
    _randomise_bn(m)
    idx = [0, 7, 11]
    _zero(m, "stem.0", "weight", 0, idx)
    _zero(m, "layer1.0.conv2", "weight", 0, idx)
    for bn in ("stem.1", "layer1.0.bn2"):
        for t in ("weight", "bias"):
            _zero(m, bn, t, 0, idx)
    for reader in ("layer1.0.conv1", "layer2.0.conv1", "layer2.0.downsample.0"):
        _zero(m, reader, "weight", 1, idx)
    x = (torch.rand(3, 1, 28, 28),)
    p = _prune_and_compare(m, x, len(idx), 16, ["stem.0", "layer1.0.conv2"])
    assert p.stem[0].out_channels == 13 and p.layer2[0].downsample[0].in_channels == 13
    assert p.layer1[0].conv1.in_channels == 13 and p.layer1[0].conv1.out_channels == 16


def test_mobilenetv2_depthwise_channels_dead():
    m = build_model("mobilenetv2", dataset="mnist")
    _randomise_bn(m)
    blk = "features.3.conv"  # expand 1x1 (24->96), bn, relu6, depthwise 3x3, bn, relu6, project 1x1, bn
    idx = list(range(0, 96, 7))
    _zero(m, f"{blk}.0", "weight", 0, idx)
    _zero(m, f"{blk}.3", "weight", 0, idx)
    for bn in (f"{blk}.1", f"{blk}.4"):
        for t in ("weight", "bias"):
            _zero(m, bn, t, 0, idx)
    _zero(m, f"{blk}.6", "weight", 1, idx)
    x = (torch.rand(2, 1, 28, 28),)
    p = _prune_and_compare(m, x, len(idx), 96, [f"{blk}.0"])
    dw = p.features[3].conv[3]
    assert dw.in_channels == dw.out_channels == dw.groups == 96 - len(idx)


def test_lenet5_flatten_into_linear():
    m = build_model("lenet5", dataset="mnist")
    idx = [3, 17, 40]
    _zero(m, "conv2", "weight", 0, idx)
    _zero(m, "conv2", "bias", 0, idx)
    # fc1 reads 50 channels x 4 x 4 positions, channel-major
    cols = [c * 16 + j for c in idx for j in range(16)]
    _zero(m, "fc1", "weight", 1, cols)
    x = (torch.rand(3, 1, 28, 28),)
    p = _prune_and_compare(m, x, len(idx), 50, ["conv2"])
    assert p.conv2.out_channels == 47 and p.fc1.in_features == 47 * 16


def test_lenet5_fc_neurons():
    m = build_model("lenet5", dataset="mnist")
    idx = list(range(0, 500, 5))
    _zero(m, "fc1", "weight", 0, idx)
    _zero(m, "fc1", "bias", 0, idx)
    _zero(m, "fc2", "weight", 1, idx)
    p = _prune_and_compare(m, (torch.rand(3, 1, 28, 28),), len(idx), 500, ["fc1"])
    assert p.fc1.out_features == 400 and p.fc2.in_features == 400


class ConcatNet(nn.Module):
    """Two branches concatenated along channels, then a 1x1 conv and a head."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 6, 3, padding=1)
        self.b = nn.Conv2d(1, 10, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.mix = nn.Conv2d(16, 8, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = torch.cat([self.a(x), torch.relu(self.b(x))], dim=1)
        y = self.mix(torch.relu(self.bn(y)))
        return self.fc(torch.flatten(self.pool(y), 1))


def test_concat_channels_dead():
    m = ConcatNet()
    _randomise_bn(m)
    ib = [2, 7]  # channels of branch b, at positions 6 + i after the concatenation
    _zero(m, "b", "weight", 0, ib)
    _zero(m, "b", "bias", 0, ib)
    pos = [6 + i for i in ib]
    for t in ("weight", "bias"):
        _zero(m, "bn", t, 0, pos)
    _zero(m, "mix", "weight", 1, pos)
    p = _prune_and_compare(m, (torch.rand(2, 1, 8, 8),), len(ib), 10, ["b"])
    assert p.b.out_channels == 8 and p.bn.num_features == 14 and p.mix.in_channels == 14 and p.a.out_channels == 6


def test_vit_head_and_mlp_units_dead():
    m = build_model("vit", dataset="mnist")
    hd = m.blocks[1].attn.head_dim
    head = 2
    rows = list(range(head * hd, (head + 1) * hd))
    for lin in ("q", "k", "v"):
        _zero(m, f"blocks.1.attn.{lin}", "weight", 0, rows)
        _zero(m, f"blocks.1.attn.{lin}", "bias", 0, rows)
    _zero(m, "blocks.1.attn.proj", "weight", 1, rows)
    units = list(range(0, 128, 4))
    _zero(m, "blocks.2.mlp.fc1", "weight", 0, units)
    _zero(m, "blocks.2.mlp.fc1", "bias", 0, units)
    _zero(m, "blocks.2.mlp.fc2", "weight", 1, units)
    x = (torch.rand(2, 1, 28, 28),)
    p = _prune_and_compare(m, x, 1, 4, ["blocks.1.attn.q", "blocks.1.attn.k", "blocks.1.attn.v"])
    assert p.blocks[1].attn.num_heads == 3 and p.blocks[1].attn.proj.in_features == 3 * hd
    p = _prune_and_compare(m, x, len(units), 128, ["blocks.2.mlp.fc1"])
    assert p.blocks[2].mlp.fc1.out_features == 96


def test_vit_stale_head_count_would_fail():
    """The oracle has teeth: removing a head that is alive changes the output."""
    m = build_model("vit", dataset="mnist").eval()
    x = (torch.rand(2, 1, 28, 28),)
    with torch.no_grad():
        ref = m(*x)
    p = structured(m, x, ratio=0.25, target="channels", scope=Scope(patterns=(r"blocks\.1\.attn\.[qkv]",)))
    with torch.no_grad():
        assert not torch.allclose(p(*x), ref, atol=1e-4)


@pytest.fixture(scope="module")
def minilm2():
    try:
        m = build_model("minilm", num_layers=2)
    except Exception as e:  # pragma: no cover - the offline package is part of the dev install
        pytest.skip(f"minilm unavailable: {e}")
    return m.eval()


def test_minilm_head_and_intermediate_dead(minilm2):
    import copy

    m = copy.deepcopy(minilm2)
    att = m.bert.encoder.layer[0].attention.self
    hd = att.attention_head_size
    heads = [3, 8]
    rows = [h * hd + j for h in heads for j in range(hd)]
    base = "bert.encoder.layer.0"
    for lin in ("query", "key", "value"):
        _zero(m, f"{base}.attention.self.{lin}", "weight", 0, rows)
        _zero(m, f"{base}.attention.self.{lin}", "bias", 0, rows)
    _zero(m, f"{base}.attention.output.dense", "weight", 1, rows)
    units = list(range(0, 1536, 3))
    _zero(m, "bert.encoder.layer.1.intermediate.dense", "weight", 0, units)
    _zero(m, "bert.encoder.layer.1.intermediate.dense", "bias", 0, units)
    _zero(m, "bert.encoder.layer.1.output.dense", "weight", 1, units)
    x = m.example_inputs(2, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.fx could not trace ...; used module-pattern rules"
        p = _prune_and_compare(m, x, len(heads), 12, [f"{base}.attention.self.{n}" for n in ("query", "key", "value")])
        a = p.bert.encoder.layer[0].attention.self
        assert a.num_attention_heads == 10 and a.all_head_size == 10 * hd and a.query.out_features == 10 * hd
        p = _prune_and_compare(m, x, len(units), 1536, ["bert.encoder.layer.1.intermediate.dense"])
        assert p.bert.encoder.layer[1].intermediate.dense.out_features == 1024
