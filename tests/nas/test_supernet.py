"""The elastic supernet: its largest subnet is the source model; every
extracted subnet computes what the supernet computes in that config (the
oracle); channel sorting; elastic depth."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from torchslim.core.errors import ConfigError, ModelError
from torchslim.nas import DynamicBatchNorm2d, DynamicConv2d, DynamicLinear, ElasticBlock, ElasticSupernet
from torchslim.zoo import build_model

from .conftest import randomize_bn

ELASTIC = (DynamicConv2d, DynamicBatchNorm2d, DynamicLinear, ElasticBlock)


@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_largest_subnet_is_the_source_bit_for_bit(name, request, x28):
    src = request.getfixturevalue(name)
    sn = ElasticSupernet(src, sort_channels=False).eval()
    with torch.no_grad():
        want = src(x28)
        assert torch.equal(sn(x28), want)
        assert torch.equal(sn.extract(sn.max_config())(x28), want)


@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_largest_subnet_with_sorted_channels_is_the_source(name, request, x28):
    src = request.getfixturevalue(name)
    sn = ElasticSupernet(src).eval()  # channels permuted: only the order of sums changes
    with torch.no_grad():
        torch.testing.assert_close(sn(x28), src(x28), rtol=0, atol=1e-5)
        torch.testing.assert_close(sn.extract()(x28), src(x28), rtol=0, atol=1e-5)


def test_source_model_is_not_changed(resnet):
    before = {k: v.clone() for k, v in resnet.state_dict().items()}
    sn = ElasticSupernet(resnet)
    with torch.no_grad():
        for p in sn.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in resnet.state_dict().items())


@pytest.mark.parametrize("name,kw", [("resnet8", {}), ("resnet8", {"blocks": [2, 2, 2]}), ("mobilenetv2", {})])
def test_extracted_subnet_matches_supernet_oracle(name, kw, x28):
    src = randomize_bn(build_model(name, dataset="mnist", **kw))
    sn = ElasticSupernet(src, kernel_sizes=(1, 3, 5) if name == "mobilenetv2" else None).eval()
    if name == "mobilenetv2":  # non-identity kernel transforms, so extraction must apply them
        with torch.no_grad():
            for m in sn.modules():
                if isinstance(m, DynamicConv2d):
                    for t in m.transforms.values():
                        t.add_(0.1 * torch.randn_like(t))
    g = torch.Generator().manual_seed(0)
    for _ in range(6):
        cfg = sn.sample(g)
        with torch.no_grad(), sn.using(cfg):
            want = sn(x28)
        sub = sn.extract(cfg)
        assert not any(isinstance(m, ELASTIC) for m in sub.modules())
        assert type(sub) is type(src)
        with torch.no_grad():
            torch.testing.assert_close(sub(x28), want, rtol=0, atol=1e-6)
        assert sn.config == sn.max_config()  # extract restores the selected config


def test_smallest_subnet_is_smaller_and_skips_blocks(x28):
    src = randomize_bn(build_model("resnet8", dataset="mnist", blocks=[2, 2, 2]))
    sn = ElasticSupernet(src)
    small = sn.extract(sn.min_config())
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small < 0.2 * sum(p.numel() for p in src.parameters())
    assert isinstance(small.layer1[0], nn.Identity) and isinstance(small.layer1[1], nn.Identity)
    assert isinstance(small.layer2[1], nn.Identity) and not isinstance(small.layer2[0], nn.Identity)
    assert small(x28).shape == (4, 10)


def test_space_of_resnet8():
    sn = ElasticSupernet(build_model("resnet8", dataset="mnist"), width_mults=(0.5, 1.0), inner_mults=(0.25, 1.0))
    space = sn.space.to_dict()
    assert space["width.stem"] == [8, 16] and space["width.layer2"] == [16, 32] and space["width.layer3"] == [32, 64]
    assert space["width.layer3.0.mid"] == [16, 64]
    assert space["depth.layer1.0"] == [0, 1]  # the first stage's identity block may go; the others change shape
    assert not any(k.startswith("kernel.") for k in space)
    # a skipped block's middle width is moot: canonical configs give it the largest value
    cfg = {**sn.max_config(), "depth.layer1.0": 0, "width.layer1.0.mid": 4}
    assert sn.space.canonical(cfg)["width.layer1.0.mid"] == 16


def test_round_to_and_no_depth():
    sn = ElasticSupernet(build_model("mobilenetv2", dataset="mnist"), round_to=8, elastic_depth=False)
    space = sn.space.to_dict()
    assert not any(k.startswith("depth.") for k in space)
    for k, v in space.items():
        if k.startswith("width."):
            assert all(c % 8 == 0 for c in v), (k, v)
    assert space["kernel.features.2.conv.3"] == [1, 3]


def test_sorted_channels_put_the_important_first(resnet):
    sn = ElasticSupernet(resnet)
    for group in ("stem", "layer2", "layer3.0.mid"):
        imp = sn.channel_importance(group)
        assert torch.all(imp[:-1] >= imp[1:] - 1e-6), group


def test_config_errors_name_the_dimension(resnet):
    sn = ElasticSupernet(resnet)
    with pytest.raises(ConfigError, match="width.stem"):
        sn.set_config({**sn.max_config(), "width.stem": 7})
    with pytest.raises(ConfigError, match="unknown"):
        sn.set_config({**sn.max_config(), "width.nope": 8})
    with pytest.raises(ConfigError, match="width_mults"):
        ElasticSupernet(resnet, width_mults=(0.0, 1.0))


def test_unsupported_model_names_the_fix():
    with pytest.raises(ModelError, match="register_elastic_plan"):
        ElasticSupernet(build_model("lenet5", dataset="mnist"))


def test_grown_kernels_keep_the_source_function(mobilenet, x28):
    sn = ElasticSupernet(mobilenet, kernel_sizes=(3, 5, 7)).eval()
    assert not sn.largest_is_source
    assert sn.space.to_dict()["kernel.features.3.conv.3"] == [3, 5, 7]
    with torch.no_grad():
        torch.testing.assert_close(sn(x28), mobilenet(x28), rtol=0, atol=1e-5)
        # every depthwise kernel back at 3: the trained weights, cropped out of their zero border
        cfg = {**sn.max_config(), **{k: 3 for k in sn.space.by_name if k.startswith("kernel.")}}
        torch.testing.assert_close(sn.extract(cfg)(x28), mobilenet(x28), rtol=0, atol=1e-5)
