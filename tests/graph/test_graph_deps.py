"""Dependency groups: what is coupled, what is frozen, and clear errors for
ops the analysis cannot follow (never a silently wrong model)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from torchslim.core.errors import ModelError
from torchslim.graph import build_dependency_graph, prune_groups, register_rule, register_surgery, slice_tensors
from torchslim.prune import structured
from torchslim.zoo import build_model


def _groups(model, x, **kw):
    return build_dependency_graph(model, x, **kw).groups()


def test_resnet8_groups():
    m = build_model("resnet8", dataset="mnist")
    gs = {tuple(g.producers): g for g in _groups(m, (torch.rand(1, 1, 28, 28),))}
    res = gs[("layer1.0.conv2", "stem.0")]
    readers = {mem.module for mem in res.members if mem.role == "in"}
    assert readers == {"layer1.0.conv1", "layer2.0.conv1", "layer2.0.downsample.0"}
    norms = {mem.module for mem in res.members if mem.role == "norm"}
    assert norms == {"stem.1", "layer1.0.bn2"}
    assert gs[("fc",)].frozen == ["reaches the model output"]
    assert all(g.prunable for k, g in gs.items() if k != ("fc",))


def test_flatten_repeat_and_vit_heads():
    m = build_model("lenet5", dataset="mnist")
    g = next(g for g in _groups(m, (torch.rand(1, 1, 28, 28),)) if g.producers == ["conv2"])
    fc1 = next(mem for mem in g.members if mem.module == "fc1")
    assert (fc1.axis, fc1.repeat, fc1.offset) == (1, 16, 0)
    v = build_model("vit", dataset="mnist")
    heads = [g for g in _groups(v, (torch.rand(1, 1, 28, 28),)) if g.kind == "heads"]
    assert len(heads) == 4 and all(g.size == 4 for g in heads)
    proj = next(mem for mem in heads[0].members if mem.module.endswith("proj"))
    assert (proj.axis, proj.repeat) == (1, 16)
    # the residual stream couples the patch embedding, every block's output and the position
    # embedding (a bare parameter of the model: sliced with the stream, recorded by the artifact)
    stream = next(g for g in _groups(v, (torch.rand(1, 1, 28, 28),)) if "patch_embed" in g.producers)
    assert any(mem.tensor == "pos_embed" and mem.axis == 2 for mem in stream.members)
    assert stream.prunable and not stream.exact  # LayerNorms normalise over the stream
    assert {"blocks.0.attn.proj", "blocks.3.mlp.fc2"} <= set(stream.producers)


class Cumsum(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = torch.cumsum(self.c1(x), dim=1)  # mixes channels: removing one changes the others
        return self.c3(torch.relu(self.c2(y)))


def test_op_that_mixes_channels_freezes_them_naming_it():
    m = Cumsum().eval()
    x = (torch.rand(2, 1, 8, 8),)
    g = next(g for g in _groups(m, x) if g.producers == ["c1"])
    assert any("cumsum" in r for r in g.frozen)
    p = structured(m, x, ratio=0.5)
    assert p.c1.out_channels == 8 and p.c2.in_channels == 8  # frozen behind the op
    assert p.c2.out_channels == 4  # the other group is pruned
    assert p(*x).shape == m(*x).shape


class Shuffle(nn.Module):
    """pixel_shuffle moves channels into space: no rule follows it."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = nn.Conv2d(2, 4, 3, padding=1)
        self.c3 = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.c3(torch.relu(self.c2(nn.functional.pixel_shuffle(self.c1(x), 2))))


def test_unsupported_op_raises_naming_it():
    with pytest.raises(ModelError, match=r"pixel_shuffle.*best_effort"):
        structured(Shuffle(), (torch.rand(1, 1, 8, 8),), ratio=0.5)


def test_best_effort_leaves_group_whole_and_warns():
    m = Shuffle().eval()
    x = (torch.rand(2, 1, 8, 8),)
    with pytest.warns(UserWarning, match="pixel_shuffle"):
        p = structured(m, x, ratio=0.5, best_effort=True)
    assert p.c1.out_channels == 8 and p.c2.in_channels == 2  # frozen behind the op
    assert p.c2.out_channels == 2  # the other group is pruned
    assert p(*x).shape == m(*x).shape


class Upsampler(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.c2 = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.c2(self.up(self.c1(x)))


def test_upsampling_keeps_channels():
    m = Upsampler().eval()
    x = (torch.rand(2, 1, 8, 8),)
    p = structured(m, x, ratio=0.5)
    assert p.c1.out_channels == 4 and p.c2.in_channels == 4
    assert p(*x).shape == m(*x).shape


def test_unknown_layer_error_names_module_and_type_on_fx_path():
    from torchslim.graph.deps import DependencyGraph, _trace_graph

    g = DependencyGraph(Upsampler())
    with pytest.raises(ModelError, match=r"Upsample at 'up'"):
        _trace_graph(Upsampler(), (torch.rand(1, 1, 8, 8),), g)


def test_grouped_conv_prunes_whole_groups_exactly():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2), nn.Conv2d(8, 16, 1),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3)).eval()
    x = (torch.rand(2, 1, 9, 9),)
    gs = _groups(m, x)
    g = next(g for g in gs if "0" in g.producers)
    assert g.size == 2 and g.prunable  # the two conv groups are the units
    # make group 1 (input channels 4..7 and output channels 4..7 of the grouped conv) dead
    with torch.no_grad():
        m[3].weight[:, 4:] = 0
    p = prune_groups(copy.deepcopy(m), [g], {g.id: torch.tensor([1])})
    assert p[0].out_channels == 4 and p[2].groups == 1 and p[2].in_channels == 4 and p[2].out_channels == 4
    assert torch.allclose(p(*x), m(*x), atol=1e-6)


def test_untraceable_model_without_pattern():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return self.fc(x)
            return x

    with pytest.raises(ModelError, match="cannot trace"):
        build_dependency_graph(Branchy(), (torch.rand(1, 4),))


class ChannelScale(nn.Module):
    """A custom per-channel layer: registered with a rule and a surgery."""

    def __init__(self, c):
        super().__init__()
        self.s = nn.Parameter(torch.rand(c) + 0.5)

    def forward(self, x):
        return x * self.s[None, :, None, None]


def _scale_rule(g, name, m, a, shape):
    g.consume(a, name, [("s", 0)], role="norm")
    return a


def test_custom_layer_rule_and_surgery():
    register_rule(ChannelScale, _scale_rule)
    register_surgery(ChannelScale, slice_tensors)
    m = nn.Sequential(nn.Conv2d(1, 6, 3), ChannelScale(6), nn.ReLU(), nn.Conv2d(6, 2, 1)).eval()
    with torch.no_grad():
        m[0].weight[[1, 4]] = 0
        m[0].bias[[1, 4]] = 0
        m[1].s[[1, 4]] = 0
        m[3].weight[:, [1, 4]] = 0
    x = (torch.rand(2, 1, 6, 6),)
    p = structured(m, x, ratio=2 / 6)
    assert p[1].s.shape == (4,) and p[3].in_channels == 4
    torch.testing.assert_close(p(*x), m(*x))


def test_norm_without_parameters_freezes_instead_of_going_stale():
    m = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8, elementwise_affine=False), nn.Linear(8, 6), nn.ReLU(),
                      nn.Linear(6, 2)).eval()
    x = (torch.rand(3, 4),)
    p = structured(m, x, ratio=0.5)
    assert p[0].out_features == 8 and p[2].out_features == 3
    assert p(*x).shape == (3, 2)
